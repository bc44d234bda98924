"""The worker: claim a job, run the compression pipeline on it, record what happens.

Each job runs in its own folder under ``jobs_dir`` (named by the job id), where the pipeline
keeps every completed step: a job taken up again, by this worker or another that sees the same
folder, resumes after its last completed step. While a job runs, a heartbeat thread renews the
lease; progress goes to the database as it comes; the cancel flag is read before every batch
(at most every ``cancel_poll_s``). ``stop()`` (SIGTERM) ends the current job at its next batch
and gives it back to the queue without counting the attempt.

A worker claims nothing from a database whose schema is not the migrations' head: it logs what
to run and looks again at every poll. Waiting, rather than exiting, lets workers deployed
before the migration of an upgrade start on their own once it has run, without a crash loop.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.compression.pipeline import (
    CompressionCancelled,
    CompressionError,
    CompressionResult,
    run_compression,
)
from service.compression.report import REPORT_JSON, REPORT_PNG
from service.db.migrate import current_revision, schema_problem
from service.jobs import queue
from service.jobs.queue import ClaimedJob, LeaseLost, Outcome
from service.jobs.request import JobRequest, compression_config
from service.store import ModelStore, StoreError

logger = logging.getLogger(__name__)

PERMANENT_ERRORS = (CompressionError, ValueError, StoreError)
"""Errors that another attempt would meet again (bad settings, unreadable data, a source that
loses too much Dice): the job fails at once. Anything else is retried up to max attempts."""


@dataclass(frozen=True)
class WorkerOptions:
    worker_id: str
    jobs_dir: Path
    data_root: Path
    lease_s: float = 60.0
    heartbeat_s: float = 10.0
    poll_interval_s: float = 2.0
    cancel_poll_s: float = 0.5
    latency_repeats: int = 20

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_s < self.lease_s:
            raise ValueError(
                f"the heartbeat ({self.heartbeat_s} s) must come well within the lease "
                f"({self.lease_s} s)"
            )


def utcnow() -> datetime:
    return datetime.now(UTC)


class Worker:
    def __init__(
        self, sessions: sessionmaker[Session], store: ModelStore, options: WorkerOptions
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.options = options
        self.stopping = threading.Event()
        self.schema_problem: str | None = None
        """Why the database's schema is not one to claim jobs from, as last seen."""
        self._schema_at_head = False

    def stop(self) -> None:
        """Finish at the current job's next batch (it goes back to the queue), then return."""
        self.stopping.set()

    def run(self, *, max_jobs: int | None = None, exit_when_idle: bool = False) -> int:
        """Take up jobs until stopped, ``max_jobs`` are done, or (``exit_when_idle``) the queue
        is empty; returns how many were taken up. A database that does not answer, or whose
        schema is not at head, is waited for."""
        taken = 0
        while not self.stopping.is_set() and (max_jobs is None or taken < max_jobs):
            try:
                if self._schema_ready() and self.run_one():
                    taken += 1
                    continue
            except SQLAlchemyError as error:
                logger.error("database unavailable: %s", str(error).splitlines()[0])
            if exit_when_idle:
                break
            self.stopping.wait(self.options.poll_interval_s)
        return taken

    def _schema_ready(self) -> bool:
        """Whether the schema is at the migrations' head (looked at until it is once)."""
        if self._schema_at_head:
            return True
        with self.sessions() as session:
            problem = schema_problem(current_revision(session.connection()))
        if problem is not None and problem != self.schema_problem:
            logger.error("%s claims no jobs: %s", self.options.worker_id, problem)
        self.schema_problem, self._schema_at_head = problem, problem is None
        return self._schema_at_head

    def run_one(self) -> bool:
        """Expire dead workers' leases, claim the oldest queued job and run it; False when
        there was none."""
        with self.sessions() as session:
            queue.expire_leases(session, now=utcnow())
        with self.sessions() as session:
            job = queue.claim(
                session,
                worker_id=self.options.worker_id,
                lease_s=self.options.lease_s,
                now=utcnow(),
            )
        if job is None:
            return False
        logger.info("job %s: attempt %d by %s", job.id, job.attempt, self.options.worker_id)
        _Attempt(self, job).run()
        return True


class _Attempt:
    """One attempt at one claimed job: heartbeats, progress, cancellation and the outcome."""

    def __init__(self, worker: Worker, job: ClaimedJob) -> None:
        self.worker = worker
        self.options = worker.options
        self.job = job
        self.work_dir = self.options.jobs_dir / str(job.id)
        self.progress: dict[str, Any] = dict(job.progress or {})
        self.lost = threading.Event()
        self.cancel_seen = threading.Event()
        self.done = threading.Event()
        self.next_cancel_read = 0.0

    def run(self) -> None:
        heartbeat = threading.Thread(
            target=self._beat, name=f"heartbeat-{self.job.id}", daemon=True
        )
        heartbeat.start()
        try:
            self._run_and_write_outcome()
        except LeaseLost:
            logger.warning("job %s: lease lost; its new holder finishes it", self.job.id)
        finally:
            self.done.set()
            heartbeat.join()

    def _compress(self) -> CompressionResult:
        request = JobRequest.model_validate(self.job.request)
        self.progress.setdefault("steps", request.steps)
        self.progress["epochs"] = request.finetune_epochs_per_step
        self.progress["finetune_epochs"] = request.finetune_epochs
        config = compression_config(
            request,
            source_version=self.job.source_version,
            data_root=self.options.data_root,
            job_id=str(self.job.id),
            latency_repeats=self.options.latency_repeats,
        )
        return run_compression(
            config,
            self.worker.store,
            work_dir=self.work_dir,
            progress=self._on_progress,
            should_cancel=self._should_cancel,
        )

    def _run_and_write_outcome(self) -> None:
        """Run the job and write its outcome; raises LeaseLost when the job is no longer ours
        to write to."""
        try:
            result = self._compress()
        except CompressionCancelled:
            self._stopped()
        except PERMANENT_ERRORS as error:
            logger.warning("job %s failed: %s", self.job.id, error)
            self._finish("failed", error=str(error))
        except Exception as error:
            logger.exception("job %s: attempt %d crashed", self.job.id, self.job.attempt)
            with self.worker.sessions() as session:
                queue.retry_or_fail(
                    session,
                    job_id=self.job.id,
                    worker_id=self.options.worker_id,
                    error=f"{type(error).__name__}: {error}",
                    now=utcnow(),
                )
        else:
            self._finish("succeeded", result_version=result.version)

    def _stopped(self) -> None:
        """The pipeline stopped at a batch because we asked it to: say why in the database."""
        if self.lost.is_set():
            raise LeaseLost(f"job {self.job.id}")
        if self.cancel_seen.is_set():
            self._finish("cancelled")
            return
        with self.worker.sessions() as session:
            queue.release(
                session, job_id=self.job.id, worker_id=self.options.worker_id, now=utcnow()
            )

    def _finish(self, state: Outcome, **outcome: Any) -> None:
        report = self.work_dir / REPORT_JSON
        plot = self.work_dir / REPORT_PNG
        with self.worker.sessions() as session:
            queue.finish(
                session,
                job_id=self.job.id,
                worker_id=self.options.worker_id,
                state=state,
                now=utcnow(),
                report=_read_report(report) if report.is_file() else None,
                report_png=plot.read_bytes() if plot.is_file() else None,
                **outcome,
            )

    def _on_progress(self, event: dict[str, Any]) -> None:
        """Merge the pipeline's event into the job's progress (fields it leaves out keep their
        last values: MACs stay shown while a step fine-tunes) and log it."""
        kind = event["event"]
        fields = {key: value for key, value in event.items() if _shown(value) and key != "event"}
        if kind == "baseline":
            self.progress["source"] = {k: fields.get(k) for k in ("val_dice", "macs", "params")}
        self.progress.update(fields, stage=kind)
        if kind == "step":
            self.progress["fraction"] = fields["step"] / fields["steps"]
        elif kind == "published":
            self.progress["fraction"] = 1.0
        self.progress.setdefault("fraction", 0.0)
        try:
            with self.worker.sessions() as session:
                queue.record_progress(
                    session,
                    job_id=self.job.id,
                    worker_id=self.options.worker_id,
                    progress=self.progress,
                    kind=kind,
                    data=fields,
                    now=utcnow(),
                )
        except LeaseLost:
            self.lost.set()
        except SQLAlchemyError as error:  # progress is best effort; the lease decides
            logger.warning("job %s: progress not recorded: %s", self.job.id, error)

    def _should_cancel(self) -> bool:
        """Called before every batch: stop for a lost lease, a stopping worker, or a cancel."""
        now = time.monotonic()
        if now >= self.next_cancel_read and not self._stopping():
            self.next_cancel_read = now + self.options.cancel_poll_s
            try:
                with self.worker.sessions() as session:
                    if queue.cancel_requested(
                        session, job_id=self.job.id, worker_id=self.options.worker_id
                    ):
                        self.cancel_seen.set()
            except LeaseLost:
                self.lost.set()
            except SQLAlchemyError as error:
                logger.warning("job %s: cancel flag not read: %s", self.job.id, error)
        return self._stopping()

    def _stopping(self) -> bool:
        return self.lost.is_set() or self.cancel_seen.is_set() or self.worker.stopping.is_set()

    def _beat(self) -> None:
        while not self.done.wait(self.options.heartbeat_s):
            try:
                with self.worker.sessions() as session:
                    if queue.renew_lease(
                        session,
                        job_id=self.job.id,
                        worker_id=self.options.worker_id,
                        lease_s=self.options.lease_s,
                        now=utcnow(),
                    ):
                        self.cancel_seen.set()
            except LeaseLost:
                self.lost.set()
                return
            except SQLAlchemyError as error:
                logger.warning("job %s: lease not renewed: %s", self.job.id, error)


def _shown(value: object) -> bool:
    """Whether a progress value is worth storing: not missing, and no NaN or infinity (a
    diverging fine-tune), which Postgres refuses in JSON."""
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


def _read_report(path: Path) -> dict[str, Any]:
    """report.json with NaN and infinities (a diverging fine-tune's losses) as null."""
    return json.loads(path.read_text(), parse_constant=lambda _: None)
