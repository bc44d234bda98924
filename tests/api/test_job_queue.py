"""The compression job queue on SQLite and Postgres: claims, leases, retries, cancel, stats."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from service.db import make_engine, make_session_factory
from service.db.migrate import upgrade
from service.db.models import Job, JobEvent
from service.jobs import queue
from service.jobs.queue import LEASE_EXPIRED_ERROR, JobFinished, JobNotFound, LeaseLost
from service.jobs.stats import job_stats

T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
LEASE_S = 60.0
Sessions = sessionmaker[Session]


@pytest.fixture()
def sessions(database_url: str) -> Iterator[Sessions]:
    """Sessions on the migrated database, its jobs table emptied first."""
    upgrade(database_url)
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(delete(JobEvent))
        connection.execute(delete(Job))
    yield make_session_factory(engine)
    engine.dispose()


def _enqueue(sessions: Sessions, at: datetime = T0, max_attempts: int = 2) -> uuid.UUID:
    with sessions() as session:
        job = queue.enqueue(
            session,
            request={"steps": 2},
            model_name="tiny",
            source_version=1,
            max_attempts=max_attempts,
            now=at,
        )
        return job.id


def _claim(sessions: Sessions, worker: str, at: datetime) -> queue.ClaimedJob | None:
    with sessions() as session:
        return queue.claim(session, worker_id=worker, lease_s=LEASE_S, now=at)


def _expire(sessions: Sessions, at: datetime) -> int:
    with sessions() as session:
        return queue.expire_leases(session, now=at)


def _job(sessions: Sessions, job_id: uuid.UUID) -> Job:
    with sessions() as session:
        job = queue.get_job(session, job_id=job_id)
        assert job is not None
        return job


def _kinds(sessions: Sessions, job_id: uuid.UUID) -> list[tuple[str, int]]:
    with sessions() as session:
        return [(e.kind, e.attempt) for e in queue.list_events(session, job_id=job_id)]


def test_a_claim_takes_the_oldest_queued_job_and_only_once(sessions: Sessions) -> None:
    newer = _enqueue(sessions, T0 + timedelta(seconds=1))
    older = _enqueue(sessions, T0)
    first = _claim(sessions, "w1", T0 + timedelta(seconds=5))
    second = _claim(sessions, "w2", T0 + timedelta(seconds=5))
    assert first is not None and second is not None
    assert (first.id, first.attempt, first.source_version) == (older, 1, 1)
    assert first.request == {"steps": 2}
    assert second.id == newer
    assert _claim(sessions, "w3", T0 + timedelta(seconds=5)) is None
    job = _job(sessions, older)
    assert (job.state, job.lease_owner, job.attempts) == ("running", "w1", 1)
    assert job.lease_expires_at == T0 + timedelta(seconds=5 + LEASE_S)
    assert job.started_at == T0 + timedelta(seconds=5)
    assert _kinds(sessions, older) == [("queued", 0), ("claimed", 1)]


def test_only_the_holder_renews_reports_and_finishes(sessions: Sessions) -> None:
    job_id = _enqueue(sessions)
    _claim(sessions, "w1", T0)
    later = T0 + timedelta(seconds=30)
    with sessions() as session:
        assert not queue.renew_lease(
            session, job_id=job_id, worker_id="w1", lease_s=LEASE_S, now=later
        )
        for stranger in (
            lambda: queue.renew_lease(
                session, job_id=job_id, worker_id="w2", lease_s=LEASE_S, now=later
            ),
            lambda: queue.cancel_requested(session, job_id=job_id, worker_id="w2"),
            lambda: queue.record_progress(
                session, job_id=job_id, worker_id="w2", progress={}, kind="step", data={}, now=later
            ),
            lambda: queue.finish(
                session, job_id=job_id, worker_id="w2", state="succeeded", now=later
            ),
        ):
            with pytest.raises(LeaseLost):
                stranger()
        queue.record_progress(
            session,
            job_id=job_id,
            worker_id="w1",
            progress={"step": 1, "steps": 2, "fraction": 0.5},
            kind="step",
            data={"step": 1},
            now=later,
        )
    job = _job(sessions, job_id)
    assert job.lease_expires_at == later + timedelta(seconds=LEASE_S)
    assert job.progress == {"step": 1, "steps": 2, "fraction": 0.5}
    assert _expire(sessions, T0 + timedelta(seconds=LEASE_S + 1)) == 0  # renewed in time
    with sessions() as session:
        queue.finish(
            session,
            job_id=job_id,
            worker_id="w1",
            state="succeeded",
            now=later,
            result_version=2,
            report={"kept_step": 2},
            report_png=b"\x89PNG",
        )
    job = _job(sessions, job_id)
    assert (job.state, job.result_version, job.lease_owner, job.finished_at) == (
        "succeeded",
        2,
        None,
        later,
    )
    with sessions() as session:
        job = queue.get_job(session, job_id=job_id)
        assert job is not None
        assert (job.report, job.report_png) == ({"kept_step": 2}, b"\x89PNG")  # deferred
    assert _kinds(sessions, job_id)[-2:] == [("step", 1), ("succeeded", 1)]


def test_an_expired_lease_requeues_the_job_until_its_attempts_run_out(sessions: Sessions) -> None:
    job_id = _enqueue(sessions, max_attempts=2)
    _claim(sessions, "dies-first", T0)
    assert _expire(sessions, T0 + timedelta(seconds=LEASE_S - 1)) == 0
    assert _expire(sessions, T0 + timedelta(seconds=LEASE_S + 1)) == 1
    job = _job(sessions, job_id)
    assert (job.state, job.attempts, job.lease_owner, job.finished_at) == ("queued", 1, None, None)

    retaken = _claim(sessions, "dies-too", T0 + timedelta(seconds=100))
    assert retaken is not None and retaken.attempt == 2
    assert _job(sessions, job_id).started_at == T0  # the first claim's time is kept
    end = T0 + timedelta(seconds=200)
    assert _expire(sessions, end) == 1
    job = _job(sessions, job_id)
    assert (job.state, job.attempts, job.error, job.finished_at) == (
        "failed",
        2,
        LEASE_EXPIRED_ERROR,
        end,
    )
    assert _claim(sessions, "w3", end) is None
    assert _kinds(sessions, job_id) == [
        ("queued", 0),
        ("claimed", 1),
        ("lease_expired", 1),
        ("claimed", 2),
        ("lease_expired", 2),
    ]


def test_a_crash_is_retried_and_a_release_does_not_count(sessions: Sessions) -> None:
    job_id = _enqueue(sessions, max_attempts=2)
    _claim(sessions, "w1", T0)
    with sessions() as session:
        state = queue.retry_or_fail(
            session, job_id=job_id, worker_id="w1", error="RuntimeError: boom", now=T0
        )
    assert state == "queued"
    _claim(sessions, "w2", T0)
    with sessions() as session:
        queue.release(session, job_id=job_id, worker_id="w2", now=T0)
    job = _job(sessions, job_id)
    assert (job.state, job.attempts, job.error) == ("queued", 1, "RuntimeError: boom")
    assert _claim(sessions, "w3", T0).attempt == 2  # type: ignore[union-attr]
    with sessions() as session:
        state = queue.retry_or_fail(
            session, job_id=job_id, worker_id="w3", error="RuntimeError: again", now=T0
        )
    assert state == "failed"
    assert _job(sessions, job_id).finished_at == T0
    assert [kind for kind, _ in _kinds(sessions, job_id)] == [
        "queued",
        "claimed",
        "error",
        "claimed",
        "released",
        "claimed",
        "error",
    ]


def test_cancel_is_at_once_when_queued_and_a_flag_when_running(sessions: Sessions) -> None:
    queued, running = _enqueue(sessions), _enqueue(sessions, T0 + timedelta(seconds=1))
    with sessions() as session:
        assert queue.request_cancel(session, job_id=queued, now=T0).state == "cancelled"
    assert _claim(sessions, "w1", T0).id == running  # type: ignore[union-attr]
    with sessions() as session:
        flagged = queue.request_cancel(session, job_id=running, now=T0)
        assert (flagged.state, flagged.cancel_requested) == ("running", True)
        assert queue.cancel_requested(session, job_id=running, worker_id="w1")
        assert queue.renew_lease(session, job_id=running, worker_id="w1", lease_s=LEASE_S, now=T0)
        queue.finish(session, job_id=running, worker_id="w1", state="cancelled", now=T0)
        with pytest.raises(JobFinished, match="already cancelled"):
            queue.request_cancel(session, job_id=running, now=T0)
        with pytest.raises(JobNotFound):
            queue.request_cancel(session, job_id=uuid.uuid4(), now=T0)
    assert _kinds(sessions, queued) == [("queued", 0), ("cancelled", 0)]
    assert [kind for kind, _ in _kinds(sessions, running)] == [
        "queued",
        "claimed",
        "cancel_requested",
        "cancelled",
    ]


def test_a_dead_worker_with_a_cancel_request_ends_cancelled(sessions: Sessions) -> None:
    job_id = _enqueue(sessions)
    _claim(sessions, "w1", T0)
    with sessions() as session:
        queue.request_cancel(session, job_id=job_id, now=T0)
    assert _expire(sessions, T0 + timedelta(seconds=LEASE_S + 1)) == 1
    job = _job(sessions, job_id)
    assert (job.state, job.error) == ("cancelled", None)


def test_concurrent_claims_never_hand_one_job_to_two_workers(sessions: Sessions) -> None:
    jobs = {_enqueue(sessions, T0 + timedelta(milliseconds=k)) for k in range(24)}
    workers = 6
    start = threading.Barrier(workers)
    taken: list[tuple[uuid.UUID, str]] = []
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            start.wait()
            while (job := _claim(sessions, name, T0 + timedelta(seconds=1))) is not None:
                taken.append((job.id, name))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(f"w{k}",)) for k in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sorted(job for job, _ in taken) == sorted(jobs)  # every job once, none twice
    with sessions() as session:
        owners = {job.id: job.lease_owner for job in queue.list_jobs(session, limit=100)}
    assert owners == dict(taken)


def test_listing_and_stats(sessions: Sessions) -> None:
    first, second, third = (_enqueue(sessions, T0 + timedelta(seconds=k)) for k in range(3))
    _claim(sessions, "w1", T0 + timedelta(seconds=10))  # first
    with sessions() as session:
        queue.record_progress(
            session,
            job_id=first,
            worker_id="w1",
            progress={"step": 1, "steps": 4, "fraction": 0.25},
            kind="step",
            data={},
            now=T0,
        )
        queue.request_cancel(session, job_id=third, now=T0 + timedelta(seconds=20))
        assert [job.id for job in queue.list_jobs(session)] == [third, second, first]
        assert [job.id for job in queue.list_jobs(session, state="queued")] == [second]
        assert [job.id for job in queue.list_jobs(session, limit=1)] == [third]
        stats = job_stats(session)
    assert stats.counts == {
        "queued": 1,
        "running": 1,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 1,
    }
    assert stats.running == [("tiny", "w1", 1, 0.25)]
    assert stats.durations == []  # the cancelled job never started
