"""Results are never lost, through the real app: the database goes away during requests, every
request still gets its result, and afterwards every accepted result is in the database once.

SQLite fails every statement while "down"; Postgres is the real server behind a TCP proxy that
is stopped and started again (the server itself keeps running for the other tests).
"""

from __future__ import annotations

import re
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from service.db import Inspection, make_session_factory
from service.spool import recorder as recorder_module

from .conftest import AppFactory
from .strips import RAW, strip_with_block
from .tcp_proxy import TcpProxy

REPLAY_TIMEOUT_S = 30


class FailingStatements:
    """While ``down``, every statement on the engine fails as on a database that went away."""

    def __init__(self, engine: Engine) -> None:
        self.down = False
        event.listen(engine, "before_cursor_execute", self._check)

    def _check(self, *_: Any) -> None:
        if self.down:
            raise sqlite3.OperationalError("disk I/O error")


def _post(client: TestClient, camera: str, frame_id: str | None = None) -> httpx.Response:
    params = {"camera_id": camera} | ({"frame_id": frame_id} if frame_id else {})
    return client.post(
        "/v1/inspect",
        params=params,
        content=strip_with_block().tobytes(),
        headers={"content-type": RAW},
    )


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + REPLAY_TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def _stored(engine: Engine, camera: str) -> dict[uuid.UUID, int]:
    """Inspection id -> defects stored with it, for one camera; fails on a duplicate id."""
    with make_session_factory(engine)() as session:
        rows = session.scalars(select(Inspection).where(Inspection.camera_id == camera)).all()
        assert not [i for i, n in Counter(row.id for row in rows).items() if n > 1]
        return {row.id: len(row.defects) for row in rows}


def _metric(client: TestClient, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", client.get("/metrics").text, re.MULTILINE)
    assert match, series
    return float(match.group(1))


def _outage(
    client: TestClient, go_down: Callable[[], None], come_back: Callable[[], None], check: Engine
) -> None:
    """Requests before, during and after an outage; then every result is stored exactly once."""
    results = client.app.state.services.results  # type: ignore[attr-defined]
    camera = f"cam-{uuid.uuid4().hex[:8]}"
    accepted: dict[str, dict[str, Any]] = {}
    failures_before = _metric(
        client, 'strip_inspection_database_write_failures_total{stage="request"}'
    )

    def post(frame_id: str | None) -> httpx.Response:
        response = _post(client, camera, frame_id)
        assert response.status_code == 200, response.text
        accepted[response.json()["inspection_id"]] = response.json()
        return response

    for index in range(2):
        post(f"f{index}")
    go_down()
    during = [post(f"f{index}") for index in range(2, 10)] + [post(None), post(None)]
    assert results.spool.pending == len(during)
    retry = _post(client, camera, "f4")
    assert retry.status_code == 200 and retry.headers["Idempotent-Replay"] == "true"
    assert retry.json() == during[2].json()  # the spooled result, same inspection_id

    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["database"]["reachable"] is False
    assert ready.json()["spool"] == {"writable": True, "pending": len(during)}
    assert _metric(client, "strip_inspection_spool_records") == len(during)
    assert (
        _metric(client, 'strip_inspection_database_write_failures_total{stage="request"}')
        > failures_before
    )

    come_back()
    _wait_until(lambda: results.spool.pending == 0, "the spool is replayed")
    stored = _stored(check, camera)
    assert {str(inspection_id) for inspection_id in stored} == set(accepted)
    for inspection_id, defects in stored.items():
        assert defects == len(accepted[str(inspection_id)]["defects"]) == 1
    again = _post(client, camera, "f4")
    assert again.headers["Idempotent-Replay"] == "true"
    assert again.json()["inspection_id"] == during[2].json()["inspection_id"]
    assert client.get("/readyz").json()["database"] == {"reachable": True}
    assert _metric(client, "strip_inspection_spool_records") == 0
    assert not list(results.spool.folder.glob("*.jsonl"))


def test_sqlite_failing_during_requests_loses_nothing(
    running_app: AppFactory, sqlite_url: str
) -> None:
    with running_app(sqlite_url) as client:
        engine = client.app.state.services.engine  # type: ignore[attr-defined]
        database = FailingStatements(engine)
        reads_while_down: list[int] = []

        def go_down() -> None:
            database.down = True

        def come_back() -> None:
            reads_while_down.append(client.get("/v1/inspections").status_code)
            database.down = False

        _outage(client, go_down, come_back, engine)
    assert reads_while_down == [503]  # history needs the database; new results do not


@pytest.fixture()
def proxy(postgres_url: str) -> Iterator[TcpProxy]:
    target = make_url(postgres_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    proxy.start()
    yield proxy
    proxy.close()


def test_postgres_unreachable_during_requests_loses_nothing(
    running_app: AppFactory, postgres_url: str, proxy: TcpProxy
) -> None:
    through_proxy = make_url(postgres_url).set(host="127.0.0.1", port=proxy.port)
    direct = create_engine(postgres_url)
    try:
        with running_app(through_proxy.render_as_string(hide_password=False)) as client:
            _outage(client, proxy.stop, proxy.start, direct)
    finally:
        direct.dispose()


def test_spooled_results_survive_a_restart(
    running_app: AppFactory, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool_dir, camera = tmp_path / "spool", f"cam-{uuid.uuid4().hex[:8]}"
    with running_app(sqlite_url, spool_dir=spool_dir) as client:
        FailingStatements(client.app.state.services.engine).down = True  # type: ignore[attr-defined]
        first = [_post(client, camera, f"f{index}").json() for index in range(3)]

    def unreachable(_: Engine) -> None:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("still down"))

    with monkeypatch.context() as patch:  # restarted while the database is still away
        patch.setattr(recorder_module, "ping", unreachable)
        with running_app(sqlite_url, spool_dir=spool_dir) as client:
            results = client.app.state.services.results  # type: ignore[attr-defined]
            assert results.spool.pending == 3
            retry = _post(client, camera, "f1")  # found in the index rebuilt from disk
            assert retry.headers["Idempotent-Replay"] == "true" and retry.json() == first[1]
    with running_app(sqlite_url, spool_dir=spool_dir) as client:
        results = client.app.state.services.results  # type: ignore[attr-defined]
        _wait_until(lambda: results.spool.pending == 0, "the spool is replayed")
        stored = _stored(client.app.state.services.engine, camera)  # type: ignore[attr-defined]
    assert {str(inspection_id) for inspection_id in stored} == {r["inspection_id"] for r in first}


def test_a_lost_commit_acknowledgement_stores_the_result_once(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database committed but the answer never came: spooled too, replayed, skipped."""
    real = recorder_module.insert_inspection

    def commit_then_fail(connection, row):  # type: ignore[no-untyped-def]
        real(connection, row)
        raise OperationalError("COMMIT", {}, ConnectionResetError("connection reset"))

    camera = f"cam-{uuid.uuid4().hex[:8]}"
    with monkeypatch.context() as patch:
        patch.setattr(recorder_module, "insert_inspection", commit_then_fail)
        response = _post(client, camera, "f1")
    assert response.status_code == 200
    results = client.app.state.services.results  # type: ignore[attr-defined]
    _wait_until(lambda: results.spool.pending == 0, "the spool is replayed")
    stored = _stored(client.app.state.services.engine, camera)  # type: ignore[attr-defined]
    assert [str(inspection_id) for inspection_id in stored] == [response.json()["inspection_id"]]
