"""Defect alarms: a rule fires when at least ``count`` strips with its defect fall within its
window (the line's last ``window_strips`` strips, or the last ``window_s`` seconds), and fires
again only after it has cleared (fewer than ``count`` in the window).

The engine is plain logic over the strips it is shown, line by line; whoever records results
feeds it and stores and publishes what fires.
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator

ANY_LINE = "_"
"""Where strips without a line id are counted, and the topic segment they publish under."""


class AlarmRule(BaseModel):
    """One entry of ``ALARM_RULES``; ``class_id`` None means any defect, ``line_id`` None every
    line (each line counted on its own)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    line_id: str | None = Field(default=None, min_length=1, max_length=64)
    class_id: int | None = Field(default=None, ge=1)
    count: int = Field(ge=1, le=10_000)
    window_strips: int | None = Field(default=None, ge=1, le=100_000)
    window_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)

    @model_validator(mode="after")
    def _one_window(self) -> AlarmRule:
        if (self.window_strips is None) == (self.window_s is None):
            raise ValueError(f"rule {self.name!r}: give exactly one of window_strips, window_s")
        if self.window_strips is not None and self.count > self.window_strips:
            raise ValueError(f"rule {self.name!r}: count exceeds window_strips")
        return self

    def window(self) -> dict[str, float | int]:
        if self.window_strips is not None:
            return {"strips": self.window_strips}
        return {"seconds": self.window_s or 0.0}

    def applies_to(self, line_id: str) -> bool:
        return self.line_id is None or self.line_id == line_id

    def matches(self, class_ids: Iterable[int]) -> bool:
        class_ids = set(class_ids)
        return bool(class_ids) if self.class_id is None else self.class_id in class_ids


def unique_names(rules: list[AlarmRule]) -> list[AlarmRule]:
    """``rules`` if no two share a name (a fired alarm is stored and counted by its rule)."""
    names = [rule.name for rule in rules]
    if len(names) != len(set(names)):
        raise ValueError("ALARM_RULES: rule names must be unique")
    return rules


@dataclass(frozen=True)
class StripSeen:
    """What the engine needs of one recorded inspection."""

    inspection_id: uuid.UUID
    line_id: str
    captured_at: datetime
    class_ids: frozenset[int]


@dataclass(frozen=True)
class Alarm:
    """A rule that fired: its window held ``count`` matching strips, first to last."""

    alarm_id: uuid.UUID
    rule: str
    line_id: str
    class_id: int | None
    count: int
    window: dict[str, float | int]
    first_inspection_id: uuid.UUID
    last_inspection_id: uuid.UUID
    fired_at: datetime

    def to_json(self) -> dict[str, object]:
        return {
            "alarm_id": str(self.alarm_id),
            "rule": self.rule,
            "line_id": self.line_id,
            "class_id": self.class_id,
            "count": self.count,
            "window": self.window,
            "first_inspection_id": str(self.first_inspection_id),
            "last_inspection_id": str(self.last_inspection_id),
            "fired_at": self.fired_at.isoformat(),
        }


@dataclass
class _Window:
    """One rule's view of one line: the strips inside its window, and whether it has fired."""

    rule: AlarmRule
    strips: collections.deque[tuple[StripSeen, bool]] = field(default_factory=collections.deque)
    matching: int = 0
    active: bool = False

    def add(self, strip: StripSeen) -> Alarm | None:
        matched = self.rule.matches(strip.class_ids)
        if self.rule.window_strips is not None or matched:
            self.strips.append((strip, matched))
            self.matching += matched
        self._expire(strip)
        if self.matching < self.rule.count:
            self.active = False
            return None
        if self.active:
            return None
        self.active = True
        matched_strips = [seen for seen, hit in self.strips if hit]
        return Alarm(
            alarm_id=uuid.uuid4(),
            rule=self.rule.name,
            line_id=strip.line_id,
            class_id=self.rule.class_id,
            count=self.matching,
            window=self.rule.window(),
            first_inspection_id=matched_strips[0].inspection_id,
            last_inspection_id=matched_strips[-1].inspection_id,
            fired_at=strip.captured_at,
        )

    def _expire(self, newest: StripSeen) -> None:
        if self.rule.window_strips is not None:
            while len(self.strips) > self.rule.window_strips:
                self.matching -= self.strips.popleft()[1]
            return
        oldest_kept = newest.captured_at - timedelta(seconds=self.rule.window_s or 0.0)
        while self.strips and self.strips[0][0].captured_at <= oldest_kept:
            self.matching -= self.strips.popleft()[1]


class AlarmEngine:
    """Feeds each strip to the windows of the rules for its line; returns what fires."""

    def __init__(self, rules: Sequence[AlarmRule]) -> None:
        self.rules = list(rules)
        self._windows: dict[tuple[str, str], _Window] = {}

    def observe(self, strip: StripSeen) -> list[Alarm]:
        fired = []
        for rule in self.rules:
            if not rule.applies_to(strip.line_id):
                continue
            key = (rule.name, strip.line_id)
            window = self._windows.setdefault(key, _Window(rule))
            alarm = window.add(strip)
            if alarm is not None:
                fired.append(alarm)
        return fired
