"""/healthz, /readyz, /metrics, and the JSON error shape of unknown routes."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.api import create_app
from service.api.auth import key_entry
from service.config import Role, Settings
from service.db.migrate import head_revision
from service.jobs import queue
from service.store import ModelStore

from .conftest import AppFactory
from .strips import RAW, encode, post_strip, strip_with_block


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_ready_when_the_model_is_warm_and_the_database_answers(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "model": {"name": "probe", "version": 1, "alias": "production"},
        "database": {"reachable": True},
        "schema": {"revision": head_revision(), "head": head_revision()},
        "spool": {"writable": True, "pending": 0},
        "line_events": None,  # neither MQTT_URL nor ALARM_RULES set
    }


def _unusable_database(tmp_path: Path) -> str:
    """A SQLite URL whose file is not a database: neither migrated at start nor written to."""
    path = tmp_path / "not-a-database.db"
    path.write_bytes(b"not a SQLite file\n" * 64)
    return f"sqlite:///{path}"


def _settings(model_store: ModelStore, tmp_path: Path, **overrides: object) -> Settings:
    """The probe model with an unusable database and a writable spool, plus ``overrides``."""
    values: dict[str, object] = {
        "database_url": _unusable_database(tmp_path),
        "model_store": model_store.root,
        "model_name": "probe",
        "spool_dir": tmp_path / "spool",
        "warmup_runs": 1,
    }
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[arg-type]


def _readyz(model_store: ModelStore, tmp_path: Path, **overrides: object) -> httpx.Response:
    with TestClient(create_app(_settings(model_store, tmp_path, **overrides))) as client:
        return client.get("/readyz")


def test_ready_on_the_spool_while_the_database_is_unusable(
    model_store: ModelStore, tmp_path: Path
) -> None:
    response = _readyz(model_store, tmp_path)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["database"]["reachable"] is False
    assert "not a database" in body["database"]["problem"]
    assert body["spool"] == {"writable": True, "pending": 0}


def test_not_ready_when_results_cannot_be_kept(model_store: ModelStore, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    response = _readyz(model_store, tmp_path, spool_dir=tmp_path / "a-file" / "spool")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready" and body["error"]["code"] == "not_ready"
    assert "results cannot be kept" in body["error"]["message"]
    assert body["database"]["reachable"] is False and body["spool"]["writable"] is False
    assert body["model"] == {"name": "probe", "version": 1, "alias": "production"}


def test_not_ready_without_a_model(model_store: ModelStore, tmp_path: Path) -> None:
    response = _readyz(model_store, tmp_path, model_name="no-such-model")
    assert response.status_code == 503
    body = response.json()
    assert body["model"] is None and body["spool"]["writable"] is True
    assert body["error"]["message"].startswith("model: ")


def test_metrics_cover_requests_inference_and_the_live_model(
    running_app: AppFactory, database_url: str
) -> None:
    """An app of its own: the live-model series is the process's, and other tests' apps serve
    other models."""
    with running_app(database_url) as client:
        post_strip(client, encode(strip_with_block(), "PNG"), "image/png")
        post_strip(client, b"", RAW)
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for line in (
        'strip_inspection_http_requests_total{method="POST",route="/v1/inspect",status="200"}',
        'strip_inspection_http_requests_total{method="POST",route="/v1/inspect",status="400"}',
        'strip_inspection_http_request_duration_seconds_bucket{le="0.005",method="POST",'
        'route="/v1/inspect"}',
        'strip_inspection_inference_duration_seconds_count{model="probe",version="1"}',
        'strip_inspection_images_inspected_total{model="probe",version="1"}',
        'strip_inspection_defects_total{defect_class="pits"}',
        'strip_inspection_live_model_info{alias="production",model="probe",version="1"} 1.0',
    ):
        assert line in text, line


def test_unknown_route_is_a_json_404(client: TestClient) -> None:
    response = client.get("/v2/nothing")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "no such resource: GET /v2/nothing"}
    }
    assert 'route="unmatched"' in client.get("/metrics").text


def test_openapi_documents_the_inspect_body(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    content = spec["paths"]["/v1/inspect"]["post"]["requestBody"]["content"]
    assert {"image/png", "application/octet-stream", "multipart/form-data"} <= set(content)


KEYS: dict[Role, str] = {role: secrets.token_urlsafe(32) for role in ("inspect", "read")}


def _readyz_by_caller(
    model_store: ModelStore, tmp_path: Path, **overrides: object
) -> dict[str, httpx.Response]:
    """/readyz of a keyed app as answered to no key, an unknown key and a key of each role."""
    keys = [key_entry(key, name=f"{role}-key", role=role) for role, key in KEYS.items()]
    settings = _settings(
        model_store, tmp_path, **({"api_keys": keys, "mqtt_url": "mqtt://127.0.0.1:9"} | overrides)
    )
    callers = {"none": None, "unknown": secrets.token_urlsafe(32), **KEYS}
    with TestClient(create_app(settings)) as client:
        return {
            caller: client.get(
                "/readyz", headers={} if key is None else {"Authorization": f"Bearer {key}"}
            )
            for caller, key in callers.items()
        }


def test_without_a_key_readyz_says_ready_and_nothing_else(
    model_store: ModelStore, tmp_path: Path
) -> None:
    answers = _readyz_by_caller(model_store, tmp_path)  # the database unusable, the spool kept
    for caller in ("none", "unknown"):
        assert answers[caller].status_code == 200
        assert answers[caller].json() == {"status": "ready"}, caller
    for caller in KEYS:
        details = answers[caller].json()
        assert answers[caller].status_code == 200 and details["status"] == "ready"
        assert "not a database" in details["database"]["problem"]
        assert details["line_events"]["mqtt"]["broker"] == "127.0.0.1:9"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [({"model_name": "no-such-model"}, "model"), ({"spool_dir": "a-file/spool"}, "results")],
)
def test_without_a_key_not_ready_says_why_in_a_word(
    model_store: ModelStore, tmp_path: Path, overrides: dict[str, str], reason: str
) -> None:
    (tmp_path / "a-file").write_text("")
    if "spool_dir" in overrides:
        overrides = {"spool_dir": str(tmp_path / overrides["spool_dir"])}
    answers = _readyz_by_caller(model_store, tmp_path, **overrides)
    for caller in ("none", "unknown"):
        answer = answers[caller]
        assert answer.status_code == 503
        assert answer.json()["status"] == "not_ready" and answer.json()["reason"] == reason
        assert answer.json()["error"]["code"] == "not_ready"
        for secret in (str(tmp_path), "not a database", "127.0.0.1", "no-such-model"):
            assert secret not in answer.text, (caller, secret)
    details = answers["read"].json()  # a key of any role: every detail, as without keys
    assert answers["read"].status_code == 503 and details["status"] == "not_ready"
    assert {"model", "database", "spool", "line_events"} <= details.keys()


def _running_job_metrics(running_app: AppFactory, url: str, **overrides: object) -> str:
    """/metrics while a job is held by a worker whose id carries its host's name."""
    with running_app(url, **overrides) as client:
        sessions = client.app.state.services.sessions  # type: ignore[attr-defined]
        now = datetime.now(UTC)
        with sessions() as session:
            queue.enqueue(
                session, request={}, model_name="probe", source_version=1, max_attempts=1, now=now
            )
            assert queue.claim(session, worker_id=WORKER, lease_s=600.0, now=now) is not None
        return client.get("/metrics").text


WORKER = "gpu-7.plant.example-4242"


def test_metrics_carry_no_host_names(running_app: AppFactory, sqlite_url: str) -> None:
    text = _running_job_metrics(running_app, sqlite_url)
    assert 'strip_inspection_job_step{model="probe"' in text
    assert "plant.example" not in text


def test_worker_names_in_metrics_when_asked_for(running_app: AppFactory, sqlite_url: str) -> None:
    text = _running_job_metrics(running_app, sqlite_url, metrics_worker_names=True)
    assert f'strip_inspection_job_step{{model="probe",worker="{WORKER}"}}' in text
