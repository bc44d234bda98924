"""Fixtures for the API tests: SQLite and Postgres databases and the app, serving the committed
tiny models (``model_store``, tests/conftest.py).

Every test that takes ``client`` runs twice, against SQLite and against a fresh Postgres
schema (CI runs Postgres for real: without it, CI=true fails, elsewhere it skips).
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, text
from sqlalchemy.engine import make_url

with warnings.catch_warnings():
    # Starlette suggests httpx2 for its TestClient; httpx is what this project installs.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from service.api import create_app
from service.config import Settings
from service.db import Defect, Inspection
from service.db.migrate import upgrade
from service.db.models import DefectHour, InspectionHour
from service.store import ModelStore

POSTGRES_CANDIDATES = tuple(
    f"postgresql+psycopg://{user}@127.0.0.1:5432/test" for user in ("postgres", "root")
)

AppFactory = Callable[..., AbstractContextManager[TestClient]]


def _reachable_postgres() -> tuple[str | None, str]:
    candidates = [os.environ["TEST_POSTGRES_URL"]] if "TEST_POSTGRES_URL" in os.environ else []
    errors = []
    for url in candidates or POSTGRES_CANDIDATES:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return url, ""
        except Exception as error:  # unreachable, refused, unknown role: try the next one
            errors.append(f"{make_url(url).render_as_string()}: {str(error).splitlines()[0]}")
        finally:
            engine.dispose()
    return None, "; ".join(errors)


def require_postgres() -> str:
    """The admin URL of the test Postgres; skips without one, but fails under CI=true."""
    admin_url, why = _reachable_postgres()
    if admin_url is None:
        message = f"Postgres is unreachable (set TEST_POSTGRES_URL to override): {why}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the Postgres tests. {message}")
        pytest.skip(message)
    return admin_url


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL whose search_path is a new, empty schema of the test Postgres, dropped on exit."""
    admin_url = require_postgres()
    schema = f"api_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(admin_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh schema shared by the session's tests."""
    with postgres_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of a test's own: a SQLite file, or a Postgres schema dropped after."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'inspections.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="session")
def running_app(model_store: ModelStore, tmp_path_factory: pytest.TempPathFactory) -> AppFactory:
    """Run the real app (lifespan included) over a migrated database; settings overridable.

    Each run gets its own spool and image folders unless ``spool_dir`` / ``image_dir`` are given.
    """

    @contextmanager
    def run(database_url: str, **overrides: Any) -> Iterator[TestClient]:
        values: dict[str, Any] = {
            "model_store": model_store.root,
            "model_name": "probe",
            "model_alias": "production",
            "warmup_runs": 1,
            "onnx_threads": 1,
            "spool_dir": tmp_path_factory.mktemp("spool"),
            "image_dir": tmp_path_factory.mktemp("images"),
            "spool_replay_interval_s": 0.05,
        }
        settings = Settings(_env_file=None, database_url=database_url, **{**values, **overrides})
        upgrade(settings.database_url)
        with TestClient(create_app(settings)) as client:
            yield client

    return run


@pytest.fixture(scope="session")
def client(running_app: AppFactory, database_url: str) -> Iterator[TestClient]:
    """The app serving the probe model, one per database backend."""
    with running_app(database_url) as client:
        yield client


@pytest.fixture()
def empty_db(client: TestClient) -> TestClient:
    """``client`` over a database emptied of inspections (and their hourly rollup) first."""
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    with engine.begin() as connection:
        for table in (Defect, Inspection, DefectHour, InspectionHour):
            connection.execute(delete(table))
    return client


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'inspections.db'}"
