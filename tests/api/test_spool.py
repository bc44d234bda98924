"""The spool on its own: durable appends, order, torn lines, one record per frame, restarts."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.db import Inspection, new_inspection
from service.defects import DefectValues
from service.spool import Spool, SpoolUnavailable
from service.spool import spool as spool_module
from service.spool.records import RecordError, decode, encode, key_of


def _row(frame_id: str | None = "f1", camera_id: str = "cam-1") -> Inspection:
    return new_inspection(
        camera_id=camera_id,
        frame_id=frame_id,
        line_id="line-1",
        coil_id=None,
        captured_at=datetime(2025, 3, 1, 10, 30, tzinfo=UTC),
        received_at=datetime.now(UTC),
        model_name="probe",
        model_version=1,
        image_height=256,
        image_width=1600,
        timings={"decode": 1.5, "total": 9.25},
        defects=[DefectValues(1, "pits", "17 16 273 16", 32, 0.97, (64, 16, 95, 31))],
    )


def _record(frame_id: str | None, camera_id: str = "cam-1") -> bytes:
    return encode(_row(frame_id, camera_id))


@pytest.fixture()
def spool(tmp_path: Path) -> Iterator[Spool]:
    spool = Spool(tmp_path / "spool", key_of)
    spool.open()
    yield spool
    spool.close()


def _reopen(spool: Spool) -> Spool:
    spool.close()
    again = Spool(spool.folder, key_of)
    again.open()
    return again


def _all_records(spool: Spool) -> list[bytes]:
    return [line for segment in spool.seal() for _, line in spool.read(segment)]


def test_a_record_round_trips_through_json() -> None:
    row = _row()
    back = decode(encode(row))
    assert (back.id, back.camera_id, back.frame_id, back.coil_id) == (row.id, "cam-1", "f1", None)
    assert back.captured_at == row.captured_at and back.received_at == row.received_at
    assert back.timings == row.timings and back.has_defect
    assert [(d.class_name, d.bbox, d.score) for d in back.defects] == [
        ("pits", (64, 16, 95, 31), 0.97)
    ]
    for bad in (b"{", b"[]", b'{"format": 99}', b'{"format": 1, "camera_id": "c"}'):
        with pytest.raises(RecordError):
            decode(bad)


def test_append_is_on_disk_and_fsyncd_before_it_returns(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[bytes] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        real_fsync(descriptor)
        segments = sorted(spool.folder.glob("*.jsonl"))
        synced.append(segments[-1].read_bytes() if segments else b"")

    monkeypatch.setattr(spool_module.os, "fsync", fsync)
    record = _record("f1")
    assert spool.append(record, ("cam-1", "f1")) is None
    # The new segment's name (folder fsync), then the record itself, both before returning.
    assert synced[-1] == record and len(synced) == 2
    assert spool.pending == 1 and spool.find(("cam-1", "f1")) == record


def test_replay_reads_every_segment_in_append_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, key_of, segment_bytes=1)  # a new segment for every record
    spool.open()
    records = [_record(f"f{i}") for i in range(5)] + [_record(None)]
    for record in records:
        spool.append(record, key_of(record))
    assert len(spool.seal()) == 6
    assert _all_records(spool) == records
    spool.close()


def test_one_record_per_frame(spool: Spool) -> None:
    first = _record("f1")
    assert spool.append(first, ("cam-1", "f1")) is None
    assert spool.append(_record("f1"), ("cam-1", "f1")) == first
    assert spool.append(_record("f1", "cam-2"), ("cam-2", "f1")) is None
    for _ in range(2):  # frames without an id are each kept
        spool.append(_record(None), None)
    assert spool.pending == 4


def test_a_restart_rebuilds_the_index_and_never_appends_to_an_old_segment(spool: Spool) -> None:
    one, two = _record("f1"), _record("f2")
    spool.append(one, ("cam-1", "f1"))
    spool.append(two, ("cam-1", "f2"))
    spool = _reopen(spool)
    assert spool.pending == 2
    assert spool.find(("cam-1", "f2")) == two
    assert spool.append(_record("f2"), ("cam-1", "f2")) == two  # still one per frame
    three = _record("f3")
    spool.append(three, ("cam-1", "f3"))
    assert len(spool.seal()) == 2
    assert _all_records(spool) == [one, two, three]


def test_a_torn_last_line_is_ignored(spool: Spool) -> None:
    whole = _record("f1")
    spool.append(whole, ("cam-1", "f1"))
    (segment,) = spool.seal()
    with (spool.folder / f"{segment:012d}.jsonl").open("ab") as file:
        file.write(_record("f2")[:40])  # a crash in the middle of a write
    spool = _reopen(spool)
    assert spool.pending == 1 and spool.find(("cam-1", "f2")) is None
    later = _record("f3")
    spool.append(later, ("cam-1", "f3"))
    assert _all_records(spool) == [whole, later]


def test_a_failed_write_leaves_no_torn_line(spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    kept = _record("f1")
    spool.append(kept, ("cam-1", "f1"))

    def half_then_full(file: object, data: bytes) -> None:
        file.write(data[: len(data) // 2])  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(spool_module, "_write_all", half_then_full)
        with pytest.raises(OSError, match="No space"):
            spool.append(_record("f2"), ("cam-1", "f2"))
        assert "No space" in (spool.problem() or "")
    assert spool.find(("cam-1", "f2")) is None and spool.pending == 1
    after = _record("f3")
    spool.append(after, ("cam-1", "f3"))
    assert spool.problem() is None
    assert _all_records(spool) == [kept, after]


def test_removing_a_replayed_segment(spool: Spool) -> None:
    spool.append(_record("f1"), ("cam-1", "f1"))
    (segment,) = spool.seal()
    newer = _record("f2")
    spool.append(newer, ("cam-1", "f2"))
    spool.remove(segment)
    assert spool.pending == 1
    assert spool.find(("cam-1", "f1")) is None and spool.find(("cam-1", "f2")) == newer
    assert _reopen(spool).pending == 1


def test_rejected_records_are_kept_aside(spool: Spool) -> None:
    spool.reject(b"not json", "undecodable")
    assert (spool.folder / "rejected.jsonl").read_bytes() == b"not json\n"


def test_one_process_per_folder(spool: Spool) -> None:
    with pytest.raises(SpoolUnavailable, match="another process"):
        Spool(spool.folder, key_of).open()


def test_an_unusable_folder_is_reported(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    spool = Spool(tmp_path / "file" / "spool", key_of)
    with pytest.raises(OSError):
        spool.open()
    assert "cannot open the spool" in (spool.problem() or "")
    with pytest.raises(SpoolUnavailable):
        spool.append(_record(uuid.uuid4().hex), None)
