"""Job metrics for Prometheus, read from the database: workers are other processes (often other
machines), so the API's /metrics can only show what the jobs table says."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import Job
from service.jobs.queue import FINISHED_STATES, JOB_STATES
from service.metrics import set_job_stats

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobStats:
    counts: dict[str, int]
    running: list[tuple[str, str, int, float]] = field(default_factory=list)
    """(model, worker, step, share of steps completed) of every running job."""
    durations: list[tuple[str, float]] = field(default_factory=list)
    """(final state, seconds from first claim to end) of every finished job."""


def job_stats(session: Session) -> JobStats:
    counts = dict.fromkeys(JOB_STATES, 0)
    states = session.execute(select(Job.state, func.count()).group_by(Job.state))
    counts.update((state, count) for state, count in states)
    running = [
        _running(model, worker or "", progress or {})
        for model, worker, progress in session.execute(
            select(Job.model_name, Job.lease_owner, Job.progress).where(Job.state == "running")
        ).all()
    ]
    durations = [
        (state, (finished - started).total_seconds())
        for state, started, finished in session.execute(
            select(Job.state, Job.started_at, Job.finished_at).where(
                Job.state.in_(FINISHED_STATES),
                Job.started_at.is_not(None),
                Job.finished_at.is_not(None),
            )
        ).all()
        if started is not None and finished is not None
    ]
    return JobStats(counts, running, durations)


def _running(model: str, worker: str, progress: dict[str, Any]) -> tuple[str, str, int, float]:
    return model, worker, int(progress.get("step") or 0), float(progress.get("fraction") or 0.0)


def refresh_job_metrics(sessions: sessionmaker[Session]) -> None:
    """Set the job metrics from the database; while it cannot answer they keep their values
    (the scrape itself must not fail)."""
    try:
        with sessions() as session:
            stats = job_stats(session)
    except SQLAlchemyError as error:
        logger.warning("job metrics not refreshed: %s", str(error).splitlines()[0])
        return
    set_job_stats(stats.counts, stats.running, stats.durations)
