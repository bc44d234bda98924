"""The worker and the database schema: a fresh SQLite file is migrated at start; on Postgres a
schema that is not the migrations' head is never claimed from: the worker logs what to run and
waits for it (``--once``: exits non-zero instead)."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

pytest.importorskip("torch")  # the worker module imports the compression pipeline

from service.db import make_engine, make_session_factory
from service.db.migrate import head_revision, upgrade
from service.jobs import queue
from service.store import ModelStore

from .job_runs import worker

BEHIND = "0005"
"""The revision that made the jobs table: a worker could claim from it, and must not."""
ON_POSTGRES = pytest.mark.parametrize("fresh_database_url", ["postgres"], indirect=True)


def _enqueue(url: str) -> uuid.UUID:
    """A job whose request no worker can run: once claimed, it fails at once."""
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            job = queue.enqueue(
                session,
                request={},
                model_name="probe",
                source_version=1,
                max_attempts=1,
                now=datetime.now(UTC),
            )
            return job.id
    finally:
        engine.dispose()


def _state(url: str, job_id: uuid.UUID) -> str:
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            job = queue.get_job(session, job_id=job_id)
            assert job is not None
            return job.state
    finally:
        engine.dispose()


def _worker_command(url: str, tmp_path: Path, *options: str) -> list[str]:
    return [
        sys.executable, "-m", "service", "worker", "--database-url", url,
        "--store", str(tmp_path / "store"), "--data-root", str(tmp_path / "data"),
        "--jobs-dir", str(tmp_path / "jobs"), "--poll-interval", "0.1", *options,
    ]  # fmt: skip


@ON_POSTGRES
def test_a_worker_waits_for_the_schema_and_claims_once_it_is_migrated(
    fresh_database_url: str,
    model_store: ModelStore,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    upgrade(fresh_database_url, BEHIND)
    job_id = _enqueue(fresh_database_url)
    engine = make_engine(fresh_database_url)
    waiting = worker(
        make_session_factory(engine), model_store, jobs_dir=tmp_path / "jobs", data_root=tmp_path
    )
    thread = threading.Thread(target=waiting.run, daemon=True)
    caplog.set_level(logging.ERROR, logger="service.jobs.worker")
    thread.start()
    try:
        time.sleep(1.0)  # ten polls
        assert _state(fresh_database_url, job_id) == "queued"
        assert "python -m service migrate" in caplog.text
        upgrade(fresh_database_url)
        deadline = time.monotonic() + 20
        while _state(fresh_database_url, job_id) == "queued":
            assert time.monotonic() < deadline, "the worker never claimed the job"
            time.sleep(0.05)
    finally:
        waiting.stop()
        thread.join(timeout=30)
        engine.dispose()
    assert _state(fresh_database_url, job_id) == "failed"  # its empty request cannot run


@pytest.mark.subprocess
@ON_POSTGRES
def test_a_worker_run_once_on_a_schema_behind_head_exits_non_zero_and_claims_nothing(
    fresh_database_url: str, tmp_path: Path
) -> None:
    upgrade(fresh_database_url, BEHIND)
    job_id = _enqueue(fresh_database_url)
    run = subprocess.run(
        _worker_command(fresh_database_url, tmp_path, "--once"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0, run.stderr
    assert "python -m service migrate" in run.stderr
    assert _state(fresh_database_url, job_id) == "queued"


@pytest.mark.subprocess
def test_a_worker_migrates_a_fresh_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    run = subprocess.run(
        _worker_command(url, tmp_path, "--once"), capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    engine = make_engine(url)
    with engine.connect() as connection:
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    assert revision == head_revision()
