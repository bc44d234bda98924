"""The worker: a real ``python -m service worker`` killed mid-job (its job resumes elsewhere),
stopped by SIGTERM (its job goes back to the queue), and the failures it must not retry or must."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

pytest.importorskip("torch")  # the workers it runs prune and fine-tune with torch

from service.db import make_engine, make_session_factory
from service.db.migrate import upgrade
from service.db.models import Job, JobEvent
from service.jobs import queue
from service.jobs import worker as worker_module
from service.jobs.request import JobRequest, check_request
from service.store import ModelStore

from .job_runs import DATASET, FAST, TINY_JOB, job_data_root, job_store, wait_for, worker

pytestmark = pytest.mark.subprocess

Sessions = sessionmaker[Session]


@pytest.fixture()
def place(tmp_path: Path, source_store: ModelStore, synthetic_root: Path) -> dict[str, Any]:
    """A private store, DATA_ROOT and jobs folder."""
    return {
        "store": job_store(tmp_path / "store", source_store),
        "data_root": job_data_root(tmp_path / "data", synthetic_root),
        "jobs_dir": tmp_path / "jobs",
    }


@contextmanager
def _sessions(url: str) -> Iterator[Sessions]:
    """Sessions on the migrated database, emptied of other tests' jobs (the Postgres schema is
    shared by the session)."""
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(delete(JobEvent))
        connection.execute(delete(Job))
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def _enqueue(sessions: Sessions, place: dict[str, Any], max_attempts: int = 3) -> uuid.UUID:
    request = JobRequest.model_validate(TINY_JOB)
    version = check_request(request, store=place["store"], data_root=place["data_root"])
    with sessions() as session:
        job = queue.enqueue(
            session,
            request=request.model_dump(mode="json"),
            model_name="tiny",
            source_version=version,
            max_attempts=max_attempts,
            now=datetime.now(UTC),
        )
        return job.id


def _job(sessions: Sessions, job_id: uuid.UUID) -> Job:
    with sessions() as session:
        job = queue.get_job(session, job_id=job_id)
        assert job is not None
        return job


def _events(sessions: Sessions, job_id: uuid.UUID) -> list[tuple[int, str, dict[str, Any]]]:
    with sessions() as session:
        return [(e.attempt, e.kind, e.data) for e in queue.list_events(session, job_id=job_id)]


def _spawn(url: str, place: dict[str, Any], worker_id: str, log: Path) -> subprocess.Popen[bytes]:
    """``python -m service worker`` for one job, with a 3 s lease."""
    command = [
        sys.executable, "-m", "service", "worker", "--database-url", url,
        "--store", str(place["store"].root), "--data-root", str(place["data_root"]),
        "--jobs-dir", str(place["jobs_dir"]), "--worker-id", worker_id,
        "--lease", str(FAST["lease_s"]), "--heartbeat", str(FAST["heartbeat_s"]),
        "--poll-interval", str(FAST["poll_interval_s"]), "--max-jobs", "1",
    ]  # fmt: skip
    env = {**os.environ, "JOB_LATENCY_REPEATS": "1", "JOB_CANCEL_POLL_S": "0"}
    with log.open("wb") as output:
        return subprocess.Popen(
            command, env=env, cwd=log.parent, stdout=output, stderr=subprocess.STDOUT
        )


def _has_event(sessions: Sessions, job_id: uuid.UUID, kind: str, step: int) -> bool:
    return any(k == kind and data.get("step") == step for _, k, data in _events(sessions, job_id))


def test_a_killed_worker_loses_its_lease_and_the_next_one_resumes_the_job(
    postgres_url: str, place: dict[str, Any], tmp_path: Path
) -> None:
    with _sessions(postgres_url) as sessions:
        job_id = _enqueue(sessions, place)
        doomed = _spawn(postgres_url, place, "doomed", tmp_path / "doomed.log")
        try:
            wait_for(
                lambda: _has_event(sessions, job_id, "step", 1) or doomed.poll() is not None,
                timeout=240,
                what="the first worker to complete step 1",
            )
        finally:
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=30)
        assert doomed.returncode == -signal.SIGKILL, (tmp_path / "doomed.log").read_text()
        left = _job(sessions, job_id)
        assert (left.state, left.lease_owner, left.attempts) == ("running", "doomed", 1)

        heir = worker(sessions, place["store"], worker_id="heir", **_folders(place))
        thread = threading.Thread(target=heir.run, kwargs={"max_jobs": 1}, daemon=True)
        thread.start()  # it waits for the dead worker's lease to run out, then takes the job
        thread.join(timeout=240)
        heir.stop()
        assert not thread.is_alive()

        done = _job(sessions, job_id)
        assert (done.state, done.attempts, done.result_version) == ("succeeded", 2, 2), done.error
        events = _events(sessions, job_id)
    assert (1, "lease_expired", {"state": "queued"}) in events
    assert (2, "claimed", {"worker": "heir"}) in events
    pruned = [(attempt, data["step"]) for attempt, kind, data in events if kind == "pruned"]
    assert pruned[0] == (1, 1)
    assert [step for attempt, step in pruned if attempt == 2] == [2], "resumed after step 1"
    manifest = place["store"].manifest("tiny", 2)
    assert manifest.lineage.job_id == str(job_id)
    assert place["store"].versions("tiny") == [1, 2]


def test_sigterm_gives_the_running_job_back_without_counting_the_attempt(
    place: dict[str, Any], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with _sessions(url) as sessions:
        job_id = _enqueue(sessions, place)
        stopping = _spawn(url, place, "stopping", tmp_path / "stopping.log")
        try:
            wait_for(
                lambda: _has_event(sessions, job_id, "baseline", 0) or stopping.poll() is not None,
                timeout=240,
                what="the worker to start the job",
            )
            stopping.send_signal(signal.SIGTERM)
            assert stopping.wait(timeout=60) == 0, (tmp_path / "stopping.log").read_text()
        finally:
            stopping.kill()
        job = _job(sessions, job_id)
        assert (job.state, job.attempts, job.lease_owner) == ("queued", 0, None)
        assert _events(sessions, job_id)[-1] == (1, "released", {"worker": "stopping"})


def test_a_job_whose_dataset_is_gone_fails_without_retrying(
    place: dict[str, Any], tmp_path: Path
) -> None:
    with _sessions(f"sqlite:///{tmp_path / 'jobs.db'}") as sessions:
        job_id = _enqueue(sessions, place)
        shutil.rmtree(place["data_root"] / DATASET)
        assert worker(sessions, place["store"], **_folders(place)).run_one()
        job = _job(sessions, job_id)
        assert (job.state, job.attempts) == ("failed", 1)
        assert f"no dataset '{DATASET}'" in (job.error or "")
        assert _events(sessions, job_id)[-1][1] == "failed"


def test_a_crash_is_retried_until_the_attempts_run_out(
    place: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(worker_module, "run_compression", crash)
    with _sessions(f"sqlite:///{tmp_path / 'jobs.db'}") as sessions:
        job_id = _enqueue(sessions, place, max_attempts=2)
        crashing = worker(sessions, place["store"], **_folders(place))
        assert crashing.run(exit_when_idle=True) == 2
        job = _job(sessions, job_id)
        assert (job.state, job.attempts) == ("failed", 2)
        assert job.error == "RuntimeError: CUDA error: an illegal memory access was encountered"
        errors = [
            (a, data["state"]) for a, kind, data in _events(sessions, job_id) if kind == "error"
        ]
        assert errors == [(1, "queued"), (2, "failed")]


def _folders(place: dict[str, Any]) -> dict[str, Path]:
    return {"jobs_dir": place["jobs_dir"], "data_root": place["data_root"]}
