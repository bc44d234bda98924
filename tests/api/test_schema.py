"""The database schema when the API starts: a fresh SQLite file is migrated by ``serve``; on
Postgres a schema that is not the migrations' head keeps the process not ready (503
``schema_out_of_date``, naming the command to run) unless it starts with ``--migrate``."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from service.api import create_app
from service.config import Settings
from service.db import make_engine
from service.db.migrate import SchemaGate, head_revision, upgrade
from service.store import ModelStore

from .servers import serve_process
from .strips import RAW, plain_strip

BEHIND = "0005"
"""A revision before the head: the jobs table exists, the line events' tables do not."""
ON_POSTGRES = pytest.mark.parametrize("fresh_database_url", ["postgres"], indirect=True)


def _serve_env(model_store: ModelStore, tmp_path: Path, database_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "MODEL_STORE": str(model_store.root),
        "MODEL_NAME": "probe",
        "SPOOL_DIR": str(tmp_path / "spool"),
        "IMAGE_DIR": str(tmp_path / "images"),
        "WARMUP_RUNS": "1",
        "ONNX_THREADS": "1",
        "MAX_BATCH": "2",
    }


def _revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


@contextmanager
def _app(model_store: ModelStore, tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    """The real app (lifespan included) on a database this test prepared, not migrated first."""
    settings = Settings(
        _env_file=None,
        database_url=database_url,
        model_store=model_store.root,
        model_name="probe",
        spool_dir=tmp_path / "spool",
        image_dir=tmp_path / "images",
        warmup_runs=1,
        onnx_threads=1,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def _not_ready(response: httpx.Response, *words: str) -> dict[str, Any]:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"]["code"] == "schema_out_of_date", body
    for word in words:
        assert word in body["error"]["message"], body["error"]["message"]
    return body


@pytest.mark.subprocess
def test_serve_migrates_a_fresh_sqlite_file_and_records_there(
    model_store: ModelStore, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh' / 'inspections.db'}"
    env = _serve_env(model_store, tmp_path, url)
    with serve_process(env, tmp_path / "serve.log") as base, httpx.Client(base_url=base) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["database"] == {"reachable": True}
        posted = client.post(
            "/v1/inspect",
            params={"camera_id": "fresh"},
            content=plain_strip().tobytes(),
            headers={"content-type": RAW},
        )
        assert posted.status_code == 200, posted.text
        assert client.get("/readyz").json()["spool"]["pending"] == 0
        history = client.get("/v1/inspections", params={"camera_id": "fresh"})
        assert history.status_code == 200, history.text
        ids = [item["inspection_id"] for item in history.json()["items"]]
        assert ids == [posted.json()["inspection_id"]]
    assert _revision(url) == head_revision()


@pytest.mark.subprocess
@ON_POSTGRES
def test_serve_on_postgres_behind_head_is_not_ready_until_started_with_migrate(
    model_store: ModelStore, tmp_path: Path, fresh_database_url: str
) -> None:
    upgrade(fresh_database_url, BEHIND)
    env = _serve_env(model_store, tmp_path, fresh_database_url)
    log = tmp_path / "serve.log"
    with serve_process(env, log) as base:
        body = _not_ready(httpx.get(f"{base}/readyz"), BEHIND, "python -m service migrate")
        assert body["schema"] == {"revision": BEHIND, "head": head_revision()}
        assert body["model"]["version"] == 1  # loaded and warm: only the schema is missing
    assert "python -m service migrate" in log.read_text()
    assert _revision(fresh_database_url) == BEHIND

    with serve_process(env, tmp_path / "migrating.log", "--migrate") as base:
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["schema"] == {"revision": head_revision(), "head": head_revision()}
    assert _revision(fresh_database_url) == head_revision()


def test_a_database_ahead_of_the_migrations_is_not_ready(
    model_store: ModelStore, tmp_path: Path, fresh_database_url: str
) -> None:
    upgrade(fresh_database_url)  # then stamped as a newer version of the service would leave it
    engine = make_engine(fresh_database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    engine.dispose()
    with _app(model_store, tmp_path, fresh_database_url) as client:
        body = _not_ready(client.get("/readyz"), "f00d", "do not know")
        assert body["schema"] == {"revision": "f00d", "head": head_revision()}
    assert _revision(fresh_database_url) == "f00d"


@ON_POSTGRES
def test_a_postgres_database_never_migrated_is_not_ready(
    model_store: ModelStore, tmp_path: Path, fresh_database_url: str
) -> None:
    with _app(model_store, tmp_path, fresh_database_url) as client:
        body = _not_ready(client.get("/readyz"), "python -m service migrate")
        assert body["schema"] == {"revision": None, "head": head_revision()}


@ON_POSTGRES
def test_the_gate_opens_once_the_schema_is_migrated(fresh_database_url: str) -> None:
    upgrade(fresh_database_url, BEHIND)
    engine = make_engine(fresh_database_url)
    gate = SchemaGate(engine, recheck_s=0.05)
    gate.start()
    try:
        assert gate.problem is not None and BEHIND in gate.problem
        upgrade(fresh_database_url)
        deadline = time.monotonic() + 10
        while gate.problem is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gate.problem is None
        assert gate.status() == {"revision": head_revision(), "head": head_revision()}
    finally:
        gate.stop()
        engine.dispose()


@pytest.mark.subprocess
def test_processes_migrating_at_once_all_succeed(fresh_database_url: str) -> None:
    url = fresh_database_url
    command = [sys.executable, "-m", "service", "migrate", "--database-url", url]
    runs = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [run.communicate(timeout=120)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], errors
    assert _revision(url) == head_revision()
