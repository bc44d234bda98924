"""Every Prometheus metric of the service, defined once (prefix ``strip_inspection_``).

Labels are bounded (route template, method, status, model, version, defect class), never ids,
and name no host unless ``METRICS_WORKER_NAMES`` asks for workers' own ids.
One uvicorn process serves, so the default registry is enough; several worker processes would
need prometheus-client's multiprocess mode.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

REQUESTS = Counter(
    "strip_inspection_http_requests_total",
    "HTTP requests by route template, method and status code.",
    ["route", "method", "status"],
)
REQUEST_DURATION = Histogram(
    "strip_inspection_http_request_duration_seconds",
    "Wall time from request to response, by route template and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0),
)
INFERENCE_DURATION = Histogram(
    "strip_inspection_inference_duration_seconds",
    "One batched session run (stacking the strips, ONNX Runtime), by model and version.",
    ["model", "version"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0),
)
QUEUE_WAIT = Histogram(
    "strip_inspection_queue_wait_seconds",
    "From a strip joining the batcher's queue to the start of its batch's run.",
    ["model", "version"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
)
QUEUE_DEPTH = Gauge(
    "strip_inspection_queue_depth",
    "Strips waiting in the batcher's queue for a session run, by model and version.",
    ["model", "version"],
)
BATCH_SIZE = Histogram(
    "strip_inspection_batch_size",
    "Strips per session run, by model and version.",
    ["model", "version"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64),
)
SESSION_RUNS = Counter(
    "strip_inspection_session_runs_total",
    "Batched session runs, by model, version and session: every_thread (a lone batch) or lane "
    "(a batch with company, on the cores' share of one run).",
    ["model", "version", "session"],
)
IMAGES_INSPECTED = Counter(
    "strip_inspection_images_inspected_total",
    "Strips run through the model (idempotent replays are not counted), by model and version.",
    ["model", "version"],
)
DEFECTS = Counter(
    "strip_inspection_defects_total",
    "Defect masks reported, by defect class.",
    ["defect_class"],
)
LIVE_MODEL = Gauge(
    "strip_inspection_live_model_info",
    "The model version being served (value 1); no series while none is loaded.",
    ["model", "version", "alias"],
)
MODEL_SWAP_FAILURES = Counter(
    "strip_inspection_model_swap_failures_total",
    "Versions the served alias pointed at that this process could not load and warm (at start, "
    "or when another process moved the alias), by model and version: it goes on serving the "
    "version it had, if any, and tries that one again only after the alias has moved.",
    ["model", "version"],
)

SPOOL_RECORDS = Gauge(
    "strip_inspection_spool_records",
    "Inspection results in the local spool, waiting to be written to the database.",
)
DATABASE_WRITE_FAILURES = Counter(
    "strip_inspection_database_write_failures_total",
    "Inspection results not written to the database, by stage: 'request' (the result went "
    "to the spool: its write failed, or the database was already known to be down) or "
    "'replay' (a replayed write failed; the result stays in the spool for the next try).",
    ["stage"],
)
for _stage in ("request", "replay"):  # both series exist from the start, so rate() sees 0
    DATABASE_WRITE_FAILURES.labels(_stage)
RESULTS_REFUSED = Counter(
    "strip_inspection_results_refused_total",
    "Results the database refused for a reason of its own (a value, a constraint), not an "
    "outage: answered with an error, logged, not spooled.",
)
SPOOL_REJECTED = Counter(
    "strip_inspection_spool_rejected_total",
    "Spooled results the database refused for good, set aside in the spool's rejected.jsonl.",
)
STRIPS_NOT_KEPT = Counter(
    "strip_inspection_strips_not_kept_total",
    "Received strips the keep policy wanted but the archive did not keep: 'behind' (too many "
    "were waiting for the disk) or 'failed' (the write failed).",
    ["reason"],
)

MQTT_MESSAGES = Counter(
    "strip_inspection_mqtt_messages_total",
    "Line-event messages by outcome: 'sent' (the broker acknowledged it), 'refused' (the broker "
    "answered with an error), 'dropped' (the outbox was full: the oldest went), 'lost' (sent but "
    "never acknowledged before a disconnect, or left in the outbox at shutdown).",
    ["outcome"],
)
for _outcome in ("sent", "refused", "dropped", "lost"):
    MQTT_MESSAGES.labels(_outcome)
MQTT_OUTBOX = Gauge(
    "strip_inspection_mqtt_outbox_messages", "Line-event messages waiting for the broker."
)
MQTT_CONNECTED = Gauge(
    "strip_inspection_mqtt_connected", "1 while connected to the MQTT broker, else 0."
)
ALARMS = Counter("strip_inspection_alarms_total", "Defect alarms fired, by rule name.", ["rule"])


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    REQUESTS.labels(route, method, str(status)).inc()
    REQUEST_DURATION.labels(route, method).observe(seconds)


def observe_batch(
    model: str, version: int, seconds: float, queue_waits: Iterable[float], *, in_lane: bool
) -> None:
    """One session run, whether it ran in a lane, and how long each of its strips waited."""
    labels = (model, str(version))
    INFERENCE_DURATION.labels(*labels).observe(seconds)
    SESSION_RUNS.labels(*labels, "lane" if in_lane else "every_thread").inc()
    waits = list(queue_waits)
    BATCH_SIZE.labels(*labels).observe(len(waits))
    for wait in waits:
        QUEUE_WAIT.labels(*labels).observe(wait)


def set_queue_depth(model: str, version: int, depth: int | None) -> None:
    """Strips waiting; ``None`` drops the series of a version that is no longer served."""
    if depth is None:
        with contextlib.suppress(KeyError):  # never set: nothing to drop
            QUEUE_DEPTH.remove(model, str(version))
    else:
        QUEUE_DEPTH.labels(model, str(version)).set(depth)


def observe_inspection(model: str, version: int, defect_classes: Iterable[str]) -> None:
    IMAGES_INSPECTED.labels(model, str(version)).inc()
    for name in defect_classes:
        DEFECTS.labels(name).inc()


def set_live_model(model: str, version: int, alias: str) -> None:
    LIVE_MODEL.clear()
    LIVE_MODEL.labels(model, str(version), alias).set(1)


def count_model_swap_failure(model: str, version: int) -> None:
    MODEL_SWAP_FAILURES.labels(model, str(version)).inc()


def set_spool_depth(records: int) -> None:
    SPOOL_RECORDS.set(records)


def count_database_write_failure(stage: str) -> None:
    DATABASE_WRITE_FAILURES.labels(stage).inc()


def count_spool_rejected() -> None:
    SPOOL_REJECTED.inc()


def count_strip_not_kept(reason: str) -> None:
    STRIPS_NOT_KEPT.labels(reason).inc()


JOBS = Gauge(
    "strip_inspection_jobs",
    "Compression jobs in the database by state, read from the jobs table at scrape time.",
    ["state"],
)
JOB_STEP = Gauge(
    "strip_inspection_job_step",
    "The pruning step a running compression job is at (1..steps; 0 while it measures the "
    "source), by model and the worker that holds it.",
    ["model", "worker"],
)
JOB_PROGRESS = Gauge(
    "strip_inspection_job_progress_ratio",
    "Share of a running compression job's pruning steps completed, by model and worker.",
    ["model", "worker"],
)


@dataclass
class JobLabels:
    """How the job gauges name the worker that holds a job."""

    worker_names: bool = False
    """Label a worker by its id as given (by default ``<host>-<pid>``), not by a hash of it."""

    def worker(self, worker_id: str) -> str:
        """The ``worker`` label: stable for one worker, and naming no host unless asked to."""
        if self.worker_names:
            return worker_id
        return "worker-" + hashlib.sha256(worker_id.encode()).hexdigest()[:8]


JOB_LABELS = JobLabels()
"""Set once by ``create_app`` from the settings, like the registry, one per process."""

JOB_DURATION_BUCKETS = (60, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400)
"""Seconds: one minute to a day, for prune-and-finetune jobs."""


class _JobDurations(Collector):
    """``strip_inspection_job_duration_seconds``: from a job's first claim to its end, by final
    state. The worker is another process, so the histogram is rebuilt from the jobs table at
    each scrape (``set_job_stats``) rather than observed here."""

    name = "strip_inspection_job_duration_seconds"

    def __init__(self) -> None:
        self.durations: list[tuple[str, float]] = []

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(
            self.name,
            "Compression job wall time from its first claim to its end, by final state.",
            labels=["state"],
        )
        for state in sorted({state for state, _ in self.durations}):
            seconds = [value for label, value in self.durations if label == state]
            buckets = [
                (floatToGoString(le), sum(value <= le for value in seconds))
                for le in JOB_DURATION_BUCKETS
            ]
            family.add_metric([state], [*buckets, ("+Inf", len(seconds))], sum(seconds))
        yield family


JOB_DURATION = _JobDurations()
REGISTRY.register(JOB_DURATION)


def set_job_stats(
    counts: Mapping[str, int],
    running: Iterable[tuple[str, str, int, float]],
    durations: Iterable[tuple[str, float]],
) -> None:
    """Jobs by state, each running job's (model, worker, step, completed share) and finished
    jobs' (state, seconds), as just read from the database."""
    for state, count in counts.items():
        JOBS.labels(state).set(count)
    JOB_STEP.clear()
    JOB_PROGRESS.clear()
    for model, worker_id, step, fraction in running:
        worker = JOB_LABELS.worker(worker_id)
        JOB_STEP.labels(model, worker).set(step)
        JOB_PROGRESS.labels(model, worker).set(fraction)
    JOB_DURATION.durations = list(durations)


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
