"""Replicas: two real ``serve`` processes on one Postgres and one model store, both under load.
A promotion through one reaches the other within 15 s, each loads and warms the version before
it swaps, and no request fails on either."""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest

from service.db.migrate import upgrade
from service.inference.inspector import ONNX_FILE
from service.store import ManifestDraft, ModelStore

from .servers import serve_process
from .strips import RAW, plain_strip

pytestmark = pytest.mark.subprocess

PROMOTE = "/v1/admin/models/probe/aliases/production"
FOLLOW_WITHIN_S = 15.0
ANSWERS = 5
"""Answers from a version that count as a replica serving it."""

Outcomes = Counter[tuple[str, int, int | None]]
"""(replica, status, version served) -> answers."""


@pytest.fixture()
def store(model_store: ModelStore, tmp_path: Path) -> ModelStore:
    """A private copy of ``probe`` with a v2 published from the same committed files."""
    store = ModelStore(tmp_path / "store")
    shutil.copytree(model_store.root / "probe", store.root / "probe")
    first = store.load("probe", 1)
    draft = ManifestDraft(**first.manifest.model_dump(include=set(ManifestDraft.model_fields)))
    store.publish("probe", draft, {ONNX_FILE: first.file(ONNX_FILE)})
    return store


def _env(name: str, store: ModelStore, database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "MODEL_STORE": str(store.root),
        "MODEL_NAME": "probe",
        "SPOOL_DIR": str(tmp_path / name / "spool"),
        "IMAGE_DIR": str(tmp_path / name / "images"),
        "KEEP_IMAGES": "none",
        "WARMUP_RUNS": "1",
        "ONNX_THREADS": "1",
        "MAX_BATCH": "2",
    }


class Load:
    """Gateways posting strips to every replica until stopped, counting the answers."""

    def __init__(self, replicas: dict[str, str], per_replica: int = 2) -> None:
        self.outcomes: Outcomes = Counter()
        self.answered = threading.Condition()
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._gateway, args=(name, base, index), daemon=True)
            for name, base in replicas.items()
            for index in range(per_replica)
        ]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _gateway(self, replica: str, base: str, index: int) -> None:
        body = plain_strip().tobytes()
        with httpx.Client(base_url=base, timeout=30) as client:
            while not self.stopping.is_set():
                response = client.post(
                    "/v1/inspect",
                    params={"camera_id": f"{replica}-{index}"},
                    content=body,
                    headers={"content-type": RAW},
                )
                version = response.json()["model"]["version"] if response.is_success else None
                with self.answered:
                    self.outcomes[replica, response.status_code, version] += 1
                    self.answered.notify_all()

    def count(self, replica: str, version: int) -> int:
        with self.answered:
            return self.outcomes[replica, 200, version]

    def wait_served(self, replica: str, version: int, since: int, timeout: float) -> None:
        """Wait until ``replica`` gave ANSWERS more answers from ``version`` than ``since``."""
        with self.answered:
            served = self.answered.wait_for(
                lambda: self.outcomes[replica, 200, version] >= since + ANSWERS, timeout=timeout
            )
        assert served, f"{replica} did not serve v{version} within {timeout} s: {self.outcomes}"


def _promote(base: str, version: int) -> None:
    moved = httpx.post(f"{base}{PROMOTE}", json={"version": version}, timeout=60)
    assert moved.status_code == 200, moved.text
    assert moved.json()["live"]["version"] == version


def _serves(base: str, version: int) -> None:
    ready = httpx.get(f"{base}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["model"] == {"name": "probe", "version": version, "alias": "production"}
    live = httpx.get(f"{base}/v1/models", timeout=10).json()["live"]
    assert live == {"name": "probe", "version": version, "alias": "production"}


def test_a_promotion_through_one_replica_reaches_the_other_under_load(
    store: ModelStore, postgres_url: str, tmp_path: Path
) -> None:
    upgrade(postgres_url)
    envs = {name: _env(name, store, postgres_url, tmp_path) for name in ("a", "b")}
    with (
        serve_process(envs["a"], tmp_path / "a.log") as a,
        serve_process(envs["b"], tmp_path / "b.log") as b,
        Load({"a": a, "b": b}) as load,
    ):
        for replica in ("a", "b"):
            load.wait_served(replica, 1, since=0, timeout=60)
        for version, through, other in ((2, a, "b"), (1, b, "a")):
            since = load.count(other, version)
            _promote(through, version)
            load.wait_served(other, version, since, timeout=FOLLOW_WITHIN_S)
            _serves(a, version)
            _serves(b, version)
    assert {status for _, status, _ in load.outcomes} == {200}, load.outcomes
    assert {version for _, _, version in load.outcomes} == {1, 2}
