"""The compression job queue, kept in the database (DESIGN.md, "The compression job").

Every change of a job's state is one conditional UPDATE (``WHERE state = ... AND lease_owner =
...``), the first statement of its transaction, so two processes can never both make it:

- Postgres: a claim picks the oldest queued job with ``FOR UPDATE SKIP LOCKED``, so concurrent
  workers pass over each other's rows instead of waiting on them or taking them twice.
- SQLite: a writing statement takes the database's single write lock before it reads, so a claim
  sees the queue as the last writer left it (one writer at a time).

A worker holds a job by a lease that it renews with heartbeats. A lease that runs out puts the
job back in the queue (a later claim resumes it from its work folder), or fails it once it has
been claimed ``max_attempts`` times. Times come from the callers (``now``): workers' clocks are
assumed to agree to well within a lease.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from sqlalchemy import ColumnElement, Update, and_, case, func, literal, select, update
from sqlalchemy.orm import Session

from service.db.models import Job, JobEvent, UTCDateTime

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JOB_STATES: tuple[JobState, ...] = get_args(JobState)
Outcome = Literal["succeeded", "failed", "cancelled"]
FINISHED_STATES: tuple[Outcome, ...] = get_args(Outcome)
LEASE_EXPIRED_ERROR = "the worker's lease ran out on the last allowed attempt"


class JobNotFound(LookupError):
    """No job has this id."""


class JobFinished(Exception):
    """The job has already ended: it cannot be cancelled."""

    def __init__(self, job_id: uuid.UUID, state: str) -> None:
        super().__init__(
            f"job {job_id} has already {state}; only a queued or running job can be cancelled"
        )
        self.state = state


class LeaseLost(Exception):
    """This worker no longer holds the job (its lease ran out and the job went back to the
    queue, or the job was taken up by another worker)."""


@dataclass(frozen=True)
class ClaimedJob:
    """What a worker needs from the job it just claimed."""

    id: uuid.UUID
    request: dict[str, Any]
    source_version: int
    attempt: int
    progress: dict[str, Any] | None


def enqueue(
    session: Session,
    *,
    request: dict[str, Any],
    model_name: str,
    source_version: int,
    max_attempts: int,
    now: datetime,
) -> Job:
    job = Job(
        id=uuid.uuid4(),
        state="queued",
        model_name=model_name,
        source_version=source_version,
        request=request,
        attempts=0,
        max_attempts=max_attempts,
        cancel_requested=False,
        created_at=now,
    )
    session.add(job)
    session.add(_event(job.id, now, 0, "queued", {"source_version": source_version}))
    session.commit()
    return job


def get_job(session: Session, *, job_id: uuid.UUID) -> Job | None:
    return session.get(Job, job_id, populate_existing=True)


def list_jobs(session: Session, *, state: JobState | None = None, limit: int = 50) -> list[Job]:
    """Newest first."""
    query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    if state is not None:
        query = query.where(Job.state == state)
    return list(session.scalars(query))


def list_events(session: Session, *, job_id: uuid.UUID) -> list[JobEvent]:
    """Oldest first."""
    return list(
        session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
    )


def request_cancel(session: Session, *, job_id: uuid.UUID, now: datetime) -> Job:
    """A queued job is cancelled at once; a running one is flagged and its worker stops it
    before its next batch. Raises JobNotFound, or JobFinished for a job that already ended."""
    changed = None
    for state, values, kind in (
        ("queued", {"state": "cancelled", "finished_at": now}, "cancelled"),
        ("running", {}, "cancel_requested"),
    ):
        changed = session.execute(
            _job_update()
            .where(Job.id == job_id, Job.state == state)
            .values(cancel_requested=True, **values)
            .returning(Job.attempts)
        ).first()
        if changed is not None:
            session.add(_event(job_id, now, changed.attempts, kind, {"while": state}))
            break
    session.commit()
    job = get_job(session, job_id=job_id)
    if job is None:
        raise JobNotFound(f"there is no job {job_id}")
    if changed is None:
        raise JobFinished(job_id, job.state)
    return job


def expire_leases(session: Session, *, now: datetime) -> int:
    """Running jobs whose lease ran out go back to the queue; those with a cancel request are
    cancelled, those claimed ``max_attempts`` times fail. Returns how many."""
    exhausted = Job.attempts >= Job.max_attempts
    ended = Job.cancel_requested | exhausted
    rows = session.execute(
        _job_update()
        .where(Job.state == "running", Job.lease_expires_at < now)
        .values(
            state=case((Job.cancel_requested, "cancelled"), (exhausted, "failed"), else_="queued"),
            error=case((~Job.cancel_requested & exhausted, LEASE_EXPIRED_ERROR), else_=Job.error),
            finished_at=case((ended, _time(now)), else_=None),
            lease_owner=None,
            lease_expires_at=None,
        )
        .returning(Job.id, Job.state, Job.attempts)
    ).all()
    for row in rows:
        session.add(_event(row.id, now, row.attempts, "lease_expired", {"state": row.state}))
    session.commit()
    return len(rows)


def claim(session: Session, *, worker_id: str, lease_s: float, now: datetime) -> ClaimedJob | None:
    """Take the oldest queued job for ``worker_id``, or None when the queue is empty."""
    oldest = (
        select(Job.id)
        .where(Job.state == "queued")
        .order_by(Job.created_at, Job.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    row = session.execute(
        _job_update()
        .where(Job.id == oldest, Job.state == "queued")
        .values(
            state="running",
            attempts=Job.attempts + 1,
            lease_owner=worker_id,
            lease_expires_at=now + timedelta(seconds=lease_s),
            started_at=func.coalesce(Job.started_at, _time(now)),
        )
        .returning(Job.id, Job.request, Job.source_version, Job.attempts, Job.progress)
    ).first()
    if row is None:
        session.rollback()
        return None
    session.add(_event(row.id, now, row.attempts, "claimed", {"worker": worker_id}))
    session.commit()
    return ClaimedJob(row.id, row.request, row.source_version, row.attempts, row.progress)


def renew_lease(
    session: Session, *, job_id: uuid.UUID, worker_id: str, lease_s: float, now: datetime
) -> bool:
    """Extend the lease; returns whether a cancel was requested. Raises LeaseLost."""
    row = session.execute(
        _job_update()
        .where(_held(job_id, worker_id))
        .values(lease_expires_at=now + timedelta(seconds=lease_s))
        .returning(Job.cancel_requested)
    ).first()
    session.commit()
    if row is None:
        raise LeaseLost(f"job {job_id} is no longer held by {worker_id}")
    return bool(row.cancel_requested)


def cancel_requested(session: Session, *, job_id: uuid.UUID, worker_id: str) -> bool:
    """Whether an admin asked to cancel the job ``worker_id`` holds. Raises LeaseLost."""
    row = session.execute(select(Job.cancel_requested).where(_held(job_id, worker_id))).first()
    if row is None:
        raise LeaseLost(f"job {job_id} is no longer held by {worker_id}")
    return bool(row.cancel_requested)


def record_progress(
    session: Session,
    *,
    job_id: uuid.UUID,
    worker_id: str,
    progress: dict[str, Any],
    kind: str,
    data: dict[str, Any],
    now: datetime,
) -> None:
    """Replace the job's progress and log the event. Raises LeaseLost."""
    row = _update_held(session, job_id, worker_id, progress=progress)
    session.add(_event(job_id, now, row.attempts, kind, data))
    session.commit()


def finish(
    session: Session,
    *,
    job_id: uuid.UUID,
    worker_id: str,
    state: Outcome,
    now: datetime,
    result_version: int | None = None,
    error: str | None = None,
    report: dict[str, Any] | None = None,
    report_png: bytes | None = None,
) -> None:
    """End the job this worker holds. Raises LeaseLost."""
    row = _update_held(
        session,
        job_id,
        worker_id,
        state=state,
        result_version=result_version,
        error=error,
        report=report,
        report_png=report_png,
        finished_at=now,
        lease_owner=None,
        lease_expires_at=None,
    )
    data: dict[str, Any] = {"version": result_version} if state == "succeeded" else {}
    if error is not None:
        data["error"] = error
    session.add(_event(job_id, now, row.attempts, state, data))
    session.commit()


def retry_or_fail(
    session: Session, *, job_id: uuid.UUID, worker_id: str, error: str, now: datetime
) -> str:
    """After an unexpected error: back to the queue while attempts remain, else failed.
    Returns the new state. Raises LeaseLost."""
    exhausted = Job.attempts >= Job.max_attempts
    row = _update_held(
        session,
        job_id,
        worker_id,
        returning=(Job.attempts, Job.state),
        state=case((exhausted, "failed"), else_="queued"),
        error=error,
        finished_at=case((exhausted, _time(now)), else_=None),
        lease_owner=None,
        lease_expires_at=None,
    )
    session.add(_event(job_id, now, row.attempts, "error", {"error": error, "state": row.state}))
    session.commit()
    return str(row.state)


def release(session: Session, *, job_id: uuid.UUID, worker_id: str, now: datetime) -> None:
    """Give the job back to the queue when its worker is asked to stop (SIGTERM): the attempt
    is not counted, the next claim resumes after the last completed step. Raises LeaseLost."""
    row = _update_held(
        session,
        job_id,
        worker_id,
        state="queued",
        attempts=Job.attempts - 1,
        lease_owner=None,
        lease_expires_at=None,
    )
    session.add(_event(job_id, now, row.attempts + 1, "released", {"worker": worker_id}))
    session.commit()


def _job_update() -> Update:
    """An UPDATE of jobs; no ORM objects are synchronised (callers re-read what they show)."""
    return update(Job).execution_options(synchronize_session=False)


def _held(job_id: uuid.UUID, worker_id: str) -> ColumnElement[bool]:
    return and_(Job.id == job_id, Job.state == "running", Job.lease_owner == worker_id)


def _update_held(
    session: Session,
    job_id: uuid.UUID,
    worker_id: str,
    returning: tuple[Any, ...] = (Job.attempts,),
    **values: Any,
) -> Any:
    row = session.execute(
        _job_update().where(_held(job_id, worker_id)).values(**values).returning(*returning)
    ).first()
    if row is None:
        session.rollback()
        raise LeaseLost(f"job {job_id} is no longer held by {worker_id}")
    return row


def _time(now: datetime) -> ColumnElement[datetime]:
    """``now`` as a SQL value of the column type (stored as UTC on both databases)."""
    return literal(now, UTCDateTime())


def _event(
    job_id: uuid.UUID, now: datetime, attempt: int, kind: str, data: dict[str, Any]
) -> JobEvent:
    return JobEvent(job_id=job_id, at=now, attempt=attempt, kind=kind, data=data)
