"""Alarm rules fire when enough strips with their defect fall in the window, and again only
after clearing; roll marks are found at a constant pitch; the coil map draws the defects."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from PIL import Image

from service.config import Settings
from service.events.alarms import AlarmEngine, AlarmRule, StripSeen
from service.events.coil_map import MappedDefect, MappedStrip, render_coil_map
from service.events.roll_marks import find_roll_marks
from service.images.overlay import class_colour

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def strip(index: int, *classes: int, line: str = "L1", seconds: float | None = None) -> StripSeen:
    return StripSeen(
        inspection_id=uuid.UUID(int=index),
        line_id=line,
        captured_at=T0 + timedelta(seconds=index if seconds is None else seconds),
        class_ids=frozenset(classes),
    )


def fired(engine: AlarmEngine, strips: list[StripSeen]) -> list[tuple[int, str]]:
    return [(s.inspection_id.int, a.rule) for s in strips for a in engine.observe(s)]


def test_a_strip_window_fires_once_then_again_after_clearing() -> None:
    rule = AlarmRule(name="scale", class_id=3, count=3, window_strips=5)
    engine = AlarmEngine([rule])
    pattern = [3, 0, 3, 3, 3, 0, 0, 0, 0, 0, 3, 3, 3]  # 0: no defect
    strips = [strip(i, *([c] if c else [])) for i, c in enumerate(pattern)]
    assert fired(engine, strips) == [(3, "scale"), (12, "scale")]
    alarm = AlarmEngine([rule]).observe  # a fresh engine, to read the first alarm's fields
    for s in strips[:3]:
        alarm(s)
    first = alarm(strips[3])[0]
    assert (first.count, first.window, first.class_id, first.line_id) == (3, {"strips": 5}, 3, "L1")
    assert (first.first_inspection_id.int, first.last_inspection_id.int) == (0, 3)


def test_a_time_window_counts_only_recent_strips() -> None:
    engine = AlarmEngine([AlarmRule(name="burst", count=2, window_s=10)])
    strips = [strip(0, 1, seconds=0), strip(1, 2, seconds=11), strip(2, 1, seconds=15)]
    assert fired(engine, strips) == [(2, "burst")]  # 0 and 1 are 11 s apart: never together


def test_rules_count_each_line_apart_and_respect_their_line_and_class() -> None:
    engine = AlarmEngine(
        [
            AlarmRule(name="any", count=2, window_strips=2),
            AlarmRule(name="l2-pits", line_id="L2", class_id=1, count=1, window_strips=1),
        ]
    )
    strips = [strip(0, 1, line="L1"), strip(1, 1, line="L2"), strip(2, 2, line="L1")]
    assert fired(engine, strips) == [(1, "l2-pits"), (2, "any")]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[{"name": "a", "count": 2}]', "exactly one of window_strips, window_s"),
        ('[{"name": "a", "count": 2, "window_strips": 2, "window_s": 5}]', "exactly one"),
        ('[{"name": "a", "count": 3, "window_strips": 2}]', "count exceeds window_strips"),
        ('[{"name": "a", "count": 1, "window_s": 1}, {"name": "a", "count": 1, "window_s": 2}]',
         "unique"),
        ('[{"name": "a", "count": 1, "window_s": 1, "colour": "red"}]', "colour"),
    ],
)  # fmt: skip
def test_bad_rules_are_refused_saying_why(
    text: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALARM_RULES", text)
    with pytest.raises(ValueError, match=says):
        Settings()


def test_rules_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().alarm_rules == []
    monkeypatch.setenv(
        "ALARM_RULES", '[{"name": "pits", "class_id": 1, "count": 2, "window_s": 60}]'
    )
    assert Settings().alarm_rules == [AlarmRule(name="pits", class_id=1, count=2, window_s=60)]


def test_defects_recurring_at_a_constant_pitch_are_a_roll_mark() -> None:
    pitch = 2.35
    marks_of_class_3 = [(3, 10.0 + k * pitch + (0.01 if k % 2 else -0.01)) for k in range(5)]
    noise = [(3, 11.1), (3, 30.0), (1, 12.0), (1, 13.0), (1, 40.0)]
    marks = find_roll_marks(marks_of_class_3 + noise)
    assert len(marks) == 1
    mark = marks[0]
    assert mark.class_id == 3 and len(mark.positions_m) == 5
    assert mark.pitch_m == pytest.approx(pitch, abs=0.01)
    assert mark.to_json()["occurrences"] == 5


def test_two_occurrences_or_a_broken_pitch_are_not_a_roll_mark() -> None:
    assert find_roll_marks([(2, 1.0), (2, 3.0)]) == []
    assert find_roll_marks([(2, 1.0), (2, 3.0), (2, 5.5), (2, 9.0)]) == []
    assert find_roll_marks([(2, 1.0), (2, 1.05), (2, 1.1)]) == []  # one long defect, not a roll


def test_the_coil_map_draws_each_defect_in_its_class_colour() -> None:
    strips = [
        MappedStrip(along=0.0, defects=[MappedDefect(1, (0.1, 0.3))]),
        MappedStrip(along=5.0, defects=[]),
        MappedStrip(along=10.0, defects=[MappedDefect(3, (0.5, 0.9))]),
    ]
    png = render_coil_map("C1", strips, {1: "pits", 3: "scale"}, in_metres=True)
    with Image.open(io.BytesIO(png)) as image:
        pixels = np.asarray(image.convert("RGB"))
    plot_area = pixels[60:300, 60:1170]
    for class_id in (1, 3):
        colour = np.array(class_colour(class_id))
        assert (plot_area == colour).all(axis=2).sum() >= 20, class_id
    assert not (plot_area == np.array(class_colour(2))).all(axis=2).any()
