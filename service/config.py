"""Settings: one class, built once, the only reader of the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.events.alarms import AlarmRule, unique_names
from service.inference.spinning import SpinMode

Role = Literal["inspect", "read", "admin"]
KeepImages = Literal["all", "defects", "none"]
"""What an API key may do: ``inspect`` (gateways), ``read`` (QA), ``admin`` (everything)."""


class ApiKey(BaseModel):
    """One configured API key: the SHA-256 of the key, never the key (see service.api.auth)."""

    name: str = Field(min_length=1, max_length=64, description="who holds it, for logs")
    role: Role
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the key")


_SPINNING_BOOLEANS = {"true": "on", "1": "on", "false": "off", "0": "off"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", protected_namespaces=())

    model_store: Path = Path("model_store")
    model_name: str = "strip-defects"
    model_alias: str = "production"
    model_alias_poll_s: float = Field(
        default=2.0,
        gt=0,
        description="how often each API process re-reads the served alias in the model store; "
        "when another process moved it, the version is loaded and warmed here, then swapped in",
    )
    data_root: Path = Path("../shared/data")

    # Serving.
    database_url: str = Field(
        default="sqlite:///var/inspections.db",
        description="SQLAlchemy URL: sqlite:///PATH or postgresql+psycopg://USER:PASS@HOST/DB",
    )
    migrate_on_start: bool = Field(
        default=False,
        description="bring a Postgres schema to the migrations' head when serve or a worker "
        "starts (SQLite always is); without it, a schema not at head keeps serve not ready "
        "and workers from claiming jobs until someone runs `python -m service migrate`",
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, gt=0, description="largest request body accepted, in bytes"
    )
    onnx_providers: tuple[str, ...] = Field(
        default=("CPUExecutionProvider",),
        description="ONNX Runtime providers in order of preference (JSON list); CPU is always "
        "appended, providers this onnxruntime build lacks are skipped",
    )
    onnx_threads: int = Field(
        default=0, ge=0, description="intra-op threads of the session; 0 = one per core"
    )
    onnx_spinning: SpinMode = Field(
        default="during_runs",
        description="when the session's threads busy-wait for work: off; during_runs (inside "
        "a run, not between runs: the cores stay free for the rest of the request); on (also "
        "after each run, ONNX Runtime's default); true/false mean on/off",
    )
    warmup_runs: int = Field(
        default=1,
        ge=1,
        description="runs of every batch size through each session before the model is ready; "
        "only the first run of a shape is slow",
    )
    max_batch: int = Field(
        default=8, ge=1, le=64, description="most strips the batcher puts in one session run"
    )
    session_runs: int = Field(
        default=2,
        ge=1,
        le=8,
        description="batches that may run at the same time, each on its own thread: a lone "
        "batch runs on every intra-op thread, batches with company run in lanes (on CPU, a second "
        "session of the model with ONNX_THREADS / SESSION_RUNS threads), so that concurrent runs "
        "split the cores instead of preempting each other; 1: one run at a time, no lanes",
    )
    postprocess_threads: int = Field(
        default=0,
        ge=0,
        le=64,
        description="strips post-processed and recorded at the same time; 0 = half the cores "
        "(at least one): the rest go to the session, and fewer Python threads fighting for the "
        "GIL and the cores cost less CPU per strip",
    )
    max_wait_ms: float = Field(
        default=2.0,
        ge=0.0,
        le=1000.0,
        description="longest a strip waits for strips of other requests to join its batch",
    )
    api_keys: tuple[ApiKey, ...] = Field(
        default=(),
        description="JSON list of {name, role, sha256} (`python -m service hash-key` prints "
        "one); with none the API is open and serves on loopback addresses only",
    )
    spool_dir: Path = Field(
        default=Path("var/spool"),
        description="where results wait, fsync'd, while the database cannot take them; "
        "one folder per API process",
    )
    spool_replay_interval_s: float = Field(
        default=2.0, gt=0, description="how often the spool is replayed while it holds results"
    )

    keep_images: KeepImages = Field(
        default="all",
        description="which received strips are kept for overlays and review datasets: all, "
        "only those with defects, or none",
    )
    image_dir: Path = Field(default=Path("var/images"), description="where kept strips go")
    image_max_age_days: float = Field(
        default=7.0, gt=0, description="kept strips older than this are deleted"
    )
    image_max_bytes: int = Field(
        default=20 * 1024**3, gt=0, description="the oldest kept strips go beyond this total"
    )

    # Compression jobs: the queue is the database, workers hold jobs by leases.
    jobs_dir: Path = Field(
        default=Path("var/jobs"),
        description="the workers' job folders (one per job, completed steps kept): a job taken "
        "up again resumes after its last completed step when its new worker sees this folder",
    )
    job_max_attempts: int = Field(
        default=3, ge=1, description="claims of one job before a lost lease or crash fails it"
    )
    metrics_worker_names: bool = Field(
        default=False,
        description="label the job metrics with each worker's id as given (by default its "
        "host name and pid); else with a short hash of it, so that /metrics names no host",
    )
    job_lease_s: float = Field(
        default=60.0, gt=0, description="how long a worker holds a job without a heartbeat"
    )
    job_heartbeat_s: float = Field(
        default=10.0, gt=0, description="how often a worker renews its lease (below the lease)"
    )
    job_poll_interval_s: float = Field(
        default=2.0, gt=0, description="how often an idle worker looks for queued jobs"
    )
    job_cancel_poll_s: float = Field(
        default=0.5,
        ge=0,
        description="shortest time between two reads of a running job's cancel flag; it is "
        "read before every batch, so a cancel is honoured within one batch or this",
    )
    job_latency_repeats: int = Field(
        default=20, ge=1, description="timed ONNX Runtime runs per model when a job publishes"
    )

    # Line events: every recorded inspection and every alarm published to an MQTT broker.
    mqtt_url: str | None = Field(
        default=None,
        description="mqtt://[user:password@]host[:port] or mqtts://...; unset: no line events",
    )
    mqtt_username: str | None = Field(default=None, description="overrides the URL's user")
    mqtt_password: str | None = Field(default=None, description="overrides the URL's password")
    mqtt_topic_prefix: str = Field(
        default="strip-inspection",
        pattern=r"^[^#+\s]+$",
        description="topics: <prefix>/<line_id or _>/<camera_id>/inspection, <prefix>/<line>/alarm",
    )
    mqtt_qos: int = Field(default=1, ge=0, le=2, description="MQTT quality of service")
    mqtt_client_id: str | None = Field(
        default=None, max_length=128, description="default: strip-inspection-<host>-<pid>"
    )
    mqtt_outbox_size: int = Field(
        default=10_000, ge=1, description="messages waiting for the broker; then the oldest go"
    )
    alarm_rules: list[AlarmRule] = Field(
        default=[],
        description='JSON list of {"name", "line_id", "class_id", "count", "window_strips" or '
        '"window_s"}: a rule fires when at least count strips with such a defect fall within '
        "the window, and again only after it has cleared",
    )

    _unique_rule_names = field_validator("alarm_rules")(unique_names)

    @field_validator("onnx_spinning", mode="before")
    @classmethod
    def _spinning_from_bool(cls, value: object) -> object:
        """``ONNX_SPINNING=true|false`` (the older boolean form) means ``on`` or ``off``."""
        if isinstance(value, bool):
            return "on" if value else "off"
        return _SPINNING_BOOLEANS.get(value.lower(), value) if isinstance(value, str) else value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
