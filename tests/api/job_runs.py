"""What the job tests share: a small job request, its data and store, the job API, fast workers,
waiting. Importing it needs no torch; running a worker does."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from service.store import ModelStore

if TYPE_CHECKING:
    from service.jobs.worker import Worker

T = TypeVar("T")

JOBS = "/v1/admin/jobs"
DATASET = "synthetic"
TINY_JOB: dict[str, Any] = {
    "source": {"model": "tiny", "version": 1},
    "method": "fpgm",
    "target": {"pruning_ratio": 0.5},
    "steps": 2,
    "finetune_epochs_per_step": 0,
    "finetune_epochs": 0,
    "round_to": 1,  # the tiny net's layers are 8 to 64 wide: let every one be pruned
    "max_dice_drop": 100.0,  # a 1-epoch net's Dice is noise: let every step count
    "dataset": DATASET,
    "device": "cpu",
    "seed": 0,
}
FAST = {"lease_s": 3.0, "heartbeat_s": 0.5, "poll_interval_s": 0.1, "cancel_poll_s": 0.0}
"""Short leases and no throttle on the cancel flag, so the tests are quick."""


def job_data_root(folder: Path, synthetic_root: Path) -> Path:
    """A DATA_ROOT holding a copy of the synthetic strips as ``synthetic``."""
    shutil.copytree(synthetic_root, folder / DATASET)
    return folder


def job_store(folder: Path, source_store: ModelStore) -> ModelStore:
    """A private copy of the store holding ``tiny`` v1 (with weights), alias production."""
    return ModelStore(shutil.copytree(source_store.root, folder))


def worker(
    sessions: sessionmaker[Session],
    store: ModelStore,
    *,
    jobs_dir: Path,
    data_root: Path,
    worker_id: str = "test-worker",
) -> Worker:
    from service.jobs.worker import Worker, WorkerOptions

    options = WorkerOptions(
        worker_id=worker_id, jobs_dir=jobs_dir, data_root=data_root, latency_repeats=1, **FAST
    )
    return Worker(sessions, store, options)


def app_worker(client: TestClient) -> Worker:
    """A fast worker over the running app's database, store, jobs folder and DATA_ROOT."""
    services = client.app.state.services  # type: ignore[attr-defined]
    settings = services.settings
    return worker(
        services.sessions, services.store, jobs_dir=settings.jobs_dir, data_root=settings.data_root
    )


@contextmanager
def job_app(
    running_app: Callable[..., AbstractContextManager[TestClient]],
    folder: Path,
    store: ModelStore,
    synthetic_root: Path,
) -> Iterator[TestClient]:
    """The app serving ``tiny`` from ``store`` over SQLite in ``folder``, the synthetic strips
    under its DATA_ROOT: what a job test posts to and a worker runs against."""
    with running_app(
        f"sqlite:///{folder / 'jobs.db'}",
        model_store=store.root,
        model_name="tiny",
        data_root=job_data_root(folder / "data", synthetic_root),
        jobs_dir=folder / "jobs",
    ) as client:
        yield client


def post_job(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(JOBS, json=body)
    assert response.status_code == 202, response.text
    return response.json()


def get_job(client: TestClient, job_id: str) -> dict[str, Any]:
    response = client.get(f"{JOBS}/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(probe: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """Poll ``probe`` until it returns something other than None (or False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None and value is not False:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
