"""The result recorder on SQLite and Postgres: spool fallback and idempotent, crash-safe replay."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError

from service.db import Defect, Inspection, insert_inspection, make_engine, make_session_factory
from service.db.migrate import upgrade
from service.spool import ResultRecorder, Spool
from service.spool import recorder as recorder_module
from service.spool.records import encode, key_of

from .test_spool import _row


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    upgrade(database_url)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def _recorder(engine: Engine, folder: Path) -> ResultRecorder:
    recorder = ResultRecorder(
        engine, make_session_factory(engine), Spool(folder, key_of), replay_interval_s=3600
    )
    recorder.spool.open()  # no background thread: the tests run each pass themselves
    return recorder


def _stored(engine: Engine, camera_id: str) -> list[uuid.UUID]:
    """Ids of a camera's inspections in the order they were inserted (each has one defect,
    whose autoincrement id tells that order)."""
    with make_session_factory(engine)() as session:
        query = select(Defect.inspection_id).join(Inspection)
        return list(
            session.scalars(query.where(Inspection.camera_id == camera_id).order_by(Defect.id))
        )


def _count(engine: Engine, camera_id: str) -> int:
    with make_session_factory(engine)() as session:
        query = select(func.count()).select_from(Inspection)
        return session.scalar(query.where(Inspection.camera_id == camera_id)) or 0


def _fail_writes(monkeypatch: pytest.MonkeyPatch, after: int) -> None:
    """The database takes ``after`` more inserts, then fails as a server that went away."""
    real, calls = recorder_module.insert_inspection, [0]

    def insert(connection, row):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] > after:
            raise OperationalError("INSERT", {}, ConnectionError("server closed the connection"))
        return real(connection, row)

    monkeypatch.setattr(recorder_module, "insert_inspection", insert)
    monkeypatch.setattr(recorder_module, "ping", lambda engine: None)


def test_results_go_to_the_spool_while_the_database_fails(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, camera = _recorder(engine, tmp_path), uuid.uuid4().hex
    with monkeypatch.context() as patch:
        _fail_writes(patch, after=0)
        rows = [_row(f"f{i}", camera) for i in range(4)]
        assert all(recorder.record(row) == (row, True) for row in rows)
        again, created = recorder.record(_row("f1", camera))
        assert not created and again.id == rows[1].id  # the spooled result, not a new one
        assert recorder.find(camera_id=camera, frame_id="f2").id == rows[2].id  # type: ignore[union-attr]
        assert recorder.spool.pending == 4 and recorder.database_problem() is not None
        assert recorder.replay() == 0  # the database still fails: nothing is lost
    assert recorder.spool.pending == 4
    assert recorder.replay() == 4
    assert _stored(engine, camera) == [row.id for row in rows]  # in order, each once
    assert recorder.spool.pending == 0 and recorder.database_problem() is None
    assert not list(tmp_path.glob("*.jsonl"))


def test_replay_skips_what_the_database_already_has(engine: Engine, tmp_path: Path) -> None:
    recorder, camera = _recorder(engine, tmp_path), uuid.uuid4().hex
    reached, other_replica = _row("f1", camera), _row("f2", camera)
    for row in (reached, other_replica):  # e.g. the commit went through but its answer did not
        with engine.connect() as connection:
            insert_inspection(connection, row)
    spooled = [_row("f0", camera), _row("f1", camera), _row("f2", camera), _row(None, camera)]
    spooled[1] = dataclasses.replace(spooled[1], id=reached.id)
    for row in spooled:
        recorder.spool.append(encode(row), key_of(encode(row)))
    recorder.spool.append(b'{"format": 1, "camera_id": "garbage"}\n', None)
    assert recorder.replay() == 2
    assert _stored(engine, camera) == [reached.id, other_replica.id, spooled[0].id, spooled[3].id]
    assert b"garbage" in (tmp_path / "rejected.jsonl").read_bytes()
    assert recorder.spool.pending == 0


def test_a_replay_cut_short_is_resumed_without_duplicates(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, camera = _recorder(engine, tmp_path), uuid.uuid4().hex
    rows = [_row(f"f{i}", camera) for i in range(6)] + [_row(None, camera)]
    for row in rows:
        recorder.spool.append(encode(row), key_of(encode(row)))
    with monkeypatch.context() as patch:
        _fail_writes(patch, after=3)
        assert recorder.replay() == 3  # the database went away after three commits
    assert _count(engine, camera) == 3 and recorder.spool.pending == len(rows)
    recorder.spool.close()  # the process dies: the spool keeps every record
    restarted = _recorder(engine, tmp_path)
    assert restarted.spool.pending == len(rows)
    assert restarted.replay() == len(rows) - 3
    assert _stored(engine, camera) == [row.id for row in rows]
    assert restarted.spool.pending == 0


def test_frames_recorded_lately_are_remembered_up_to_a_bound(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorder_module, "RECENT_FRAMES", 3)
    recorder, camera = _recorder(engine, tmp_path), uuid.uuid4().hex
    assert not recorder.recorded_lately(camera_id=camera, frame_id="f0")
    for i in range(4):
        recorder.record(_row(f"f{i}", camera))
    lately = [recorder.recorded_lately(camera_id=camera, frame_id=f"f{i}") for i in range(4)]
    assert lately == [False, True, True, True]  # the oldest was forgotten
    assert recorder.find(camera_id=camera, frame_id="f0") is not None  # still in the database
    with monkeypatch.context() as patch:
        _fail_writes(patch, after=0)
        recorder.record(_row("f4", camera))  # into the spool: remembered all the same
    assert recorder.recorded_lately(camera_id=camera, frame_id="f4")


def test_a_frame_recorded_by_another_recorder_is_refused_and_remembered(
    engine: Engine, tmp_path: Path
) -> None:
    camera = uuid.uuid4().hex
    first = _recorder(engine, tmp_path / "one").record(_row("f1", camera))[0]
    other = _recorder(engine, tmp_path / "two")
    assert not other.recorded_lately(camera_id=camera, frame_id="f1")
    again, created = other.record(_row("f1", camera))
    assert not created and again.id == first.id
    assert other.recorded_lately(camera_id=camera, frame_id="f1")


def test_a_retry_after_a_restart_gets_the_spooled_result_not_a_second_id(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame spooled while the database was down, then retried by its gateway once the
    database is back but before the spool was replayed, by a process that does not remember it
    (restarted): the retry must get the spooled result, not a second inspection id."""
    camera = uuid.uuid4().hex
    first = _recorder(engine, tmp_path)
    with monkeypatch.context() as patch:
        _fail_writes(patch, after=0)
        spooled = _row("f1", camera)
        assert first.record(spooled) == (spooled, True)
    first.spool.close()
    restarted = _recorder(engine, tmp_path)  # the database answers again; no replay yet
    retry = _row("f1", camera)
    answer, created = restarted.record(retry)
    assert (answer.id, created) == (spooled.id, False)
    assert restarted.replay() == 1
    assert _stored(engine, camera) == [spooled.id]
