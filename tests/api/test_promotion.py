"""POST /v1/admin/models/{name}/aliases/{alias}: promotion, rollback, refused versions, not
one failed request while the served alias moves back and forth under concurrent load, and the
served alias followed when another process moves it (test_replicas.py: two real processes)."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from service.inference.inspector import ONNX_FILE, Inspector
from service.store import ManifestDraft, ModelStore

from .conftest import AppFactory
from .servers import serving
from .strips import RAW, plain_strip, post_strip

PROMOTE = "/v1/admin/models/probe/aliases/production"
PER_MOVE = 5
"""Answers the load test waits for from each version it promotes, before the next move."""
POLL_S = 0.05
"""How often the following tests' app re-reads the served alias."""
SWAP_FAILURES = "strip_inspection_model_swap_failures_total"


@pytest.fixture()
def store(model_store: ModelStore, tmp_path: Path) -> ModelStore:
    """A private copy of ``probe`` with v2 (the same net), v3 (tampered after publication), v4
    (a file ONNX Runtime cannot read, hashed as published) and v5 (a manifest that says three
    input channels for a net that takes one)."""
    root = tmp_path / "store"
    shutil.copytree(model_store.root / "probe", root / "probe")
    store = ModelStore(root)
    first = store.load("probe", 1)
    draft = ManifestDraft(**first.manifest.model_dump(include=set(ManifestDraft.model_fields)))
    for _ in range(2):
        store.publish("probe", draft, {ONNX_FILE: first.file(ONNX_FILE)})
    tampered = root / "probe" / "3" / ONNX_FILE
    tampered.write_bytes(tampered.read_bytes() + b"\x00")
    garbage = tmp_path / ONNX_FILE
    garbage.write_bytes(b"not an ONNX model")
    store.publish("probe", draft, {ONNX_FILE: garbage})
    wrong_input = draft.input.model_copy(update={"channels": 3})
    store.publish(
        "probe", draft.model_copy(update={"input": wrong_input}), {ONNX_FILE: first.file(ONNX_FILE)}
    )
    return store


@pytest.fixture()
def app(running_app: AppFactory, sqlite_url: str, store: ModelStore) -> TestClient:
    with running_app(sqlite_url, model_store=store.root, max_batch=2) as client:
        yield client  # type: ignore[misc]


@pytest.fixture()
def following(running_app: AppFactory, database_url: str, store: ModelStore) -> TestClient:
    """The app on each database backend, re-reading the served alias every POLL_S."""
    with running_app(
        database_url, model_store=store.root, max_batch=2, model_alias_poll_s=POLL_S
    ) as client:
        yield client  # type: ignore[misc]


def _eventually(probe: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(POLL_S)


def _metric(client: TestClient, series: str) -> float:
    """A sample of /metrics; 0 for a series not exported yet."""
    match = re.search(rf"^{re.escape(series)} (\S+)$", client.get("/metrics").text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _served_version(client: TestClient) -> int:
    response = post_strip(client, plain_strip().tobytes(), RAW)
    assert response.status_code == 200, response.text
    return response.json()["model"]["version"]


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_promotion_swaps_the_live_version_and_rollback_is_the_same_call(
    app: TestClient, store: ModelStore
) -> None:
    response = app.post(PROMOTE, json={"version": 2})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "name": "probe",
        "alias": "production",
        "version": 2,
        "previous_version": 1,
        "live": {"name": "probe", "version": 2, "alias": "production"},
    }
    assert _served_version(app) == 2
    assert store.aliases("probe")["production"] == 2
    metrics = app.get("/metrics").text
    assert 'strip_inspection_live_model_info{alias="production",model="probe",version="2"}' in (
        metrics
    )
    assert 'live_model_info{alias="production",model="probe",version="1"}' not in metrics

    back = app.post(PROMOTE, json={"version": 1})
    assert back.json()["previous_version"] == 2 and back.json()["live"]["version"] == 1
    assert _served_version(app) == 1
    assert app.get("/readyz").status_code == 200


def test_a_version_failing_its_hashes_is_refused_and_the_old_one_stays(
    app: TestClient, store: ModelStore
) -> None:
    _error(app.post(PROMOTE, json={"version": 3}), 409, "version_integrity_failed")
    assert store.aliases("probe")["production"] == 1
    assert _served_version(app) == 1


@pytest.mark.parametrize(("version", "why"), [(4, "ONNX Runtime cannot load"), (5, "fails")])
def test_a_version_that_does_not_load_or_run_is_refused_and_the_old_one_stays(
    app: TestClient, store: ModelStore, version: int, why: str
) -> None:
    response = app.post(PROMOTE, json={"version": version})
    _error(response, 422, "version_not_servable")
    assert why in response.json()["error"]["message"]
    assert store.aliases("probe")["production"] == 1
    assert _served_version(app) == 1


def test_moving_the_served_alias_to_the_live_version_reloads_nothing(app: TestClient) -> None:
    slot = app.app.state.services.models  # type: ignore[attr-defined]
    live = slot.inspector
    response = app.post(PROMOTE, json={"version": 1})
    assert response.status_code == 200 and response.json()["previous_version"] == 1
    assert slot.inspector is live


def test_unknown_models_and_versions_are_404(app: TestClient) -> None:
    _error(app.post(PROMOTE, json={"version": 99}), 404, "version_not_found")
    _error(
        app.post("/v1/admin/models/nothing/aliases/production", json={"version": 1}),
        404,
        "version_not_found",
    )


@pytest.mark.parametrize("body", [{"version": 0}, {"version": "two"}, {}, None])
def test_a_bad_body_is_422(app: TestClient, body: object) -> None:
    response = app.post(PROMOTE, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] in ("invalid_parameter", "missing_parameter")


def test_another_alias_moves_without_touching_the_live_version(
    app: TestClient, store: ModelStore
) -> None:
    moved = app.post("/v1/admin/models/probe/aliases/candidate", json={"version": 2})
    assert moved.status_code == 200, moved.text
    assert moved.json()["previous_version"] is None and moved.json()["live"]["version"] == 1
    assert store.aliases("probe") == {"candidate": 2, "production": 1}
    _error(
        app.post("/v1/admin/models/probe/aliases/candidate", json={"version": 3}),
        409,
        "version_integrity_failed",
    )
    _error(
        app.post("/v1/admin/models/probe/aliases/Not-An-Alias!", json={"version": 2}),
        422,
        "invalid_alias_name",
    )
    assert _served_version(app) == 1


@pytest.mark.parametrize("name", ["%2E%2E", "a..b", "Probe", "-probe", "p" * 65])
def test_an_invalid_model_name_is_422_and_nothing_outside_the_store_is_touched(
    app: TestClient, store: ModelStore, name: str
) -> None:
    outside = store.root.parent  # what '..' names: given a version of its own
    shutil.copytree(store.root / "probe" / "1", outside / "1")
    response = app.post(f"/v1/admin/models/{name}/aliases/production", json={"version": 1})
    _error(response, 422, "invalid_model_name")
    assert "invalid model name" in response.json()["error"]["message"]
    assert not (outside / "aliases.json").exists()
    assert _served_version(app) == 1


@pytest.mark.parametrize("alias", ["%2E%2E", "a..b", "p" * 65])
def test_an_invalid_alias_name_is_422(app: TestClient, store: ModelStore, alias: str) -> None:
    response = app.post(f"/v1/admin/models/probe/aliases/{alias}", json={"version": 2})
    _error(response, 422, "invalid_alias_name")
    assert store.aliases("probe") == {"production": 1}


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize(
    "path", [PROMOTE, "/v1/admin/jobs", f"/v1/inspections/{uuid.uuid4()}/review"]
)
def test_a_json_body_over_the_limit_is_413(
    running_app: AppFactory, sqlite_url: str, store: ModelStore, path: str, chunked: bool
) -> None:
    body = json.dumps({"version": 2, "padding": "x" * 20_000}).encode()
    content = iter([body[:10_000], body[10_000:]]) if chunked else body
    with running_app(sqlite_url, model_store=store.root, max_body_bytes=10_000) as client:
        response = client.post(path, content=content, headers={"content-type": "application/json"})
    _error(response, 413, "body_too_large")
    assert "10000-byte limit" in response.json()["error"]["message"]
    assert store.aliases("probe") == {"production": 1}


@pytest.mark.slow
def test_no_request_fails_while_promoting_under_concurrent_load(
    store: ModelStore, tmp_path: Path
) -> None:
    settings = Settings(
        _env_file=None,
        model_store=store.root,
        model_name="probe",
        database_url=f"sqlite:///{tmp_path / 'load.db'}",
        spool_dir=tmp_path / "spool",
        warmup_runs=1,
        onnx_threads=1,
        max_batch=4,
    )
    body = plain_strip().tobytes()
    outcomes: Counter[tuple[int, int | None]] = Counter()
    answered = threading.Condition()
    stop = threading.Event()

    def gateway(base: str, index: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while not stop.is_set():
                response = client.post(
                    "/v1/inspect",
                    params={"camera_id": f"load-{index}"},
                    content=body,
                    headers={"content-type": RAW},
                )
                version = response.json()["model"]["version"] if response.is_success else None
                with answered:
                    outcomes[response.status_code, version] += 1
                    answered.notify_all()

    def served(version: int, since: int) -> None:
        """Wait until the gateways have had PER_MOVE more answers from ``version``."""
        with answered:
            assert answered.wait_for(
                lambda: outcomes[200, version] >= since + PER_MOVE, timeout=60
            ), f"v{version} did not serve the load: {outcomes}"

    with serving(settings) as base:
        gateways = [threading.Thread(target=gateway, args=(base, i)) for i in range(4)]
        for thread in gateways:
            thread.start()
        try:
            served(1, since=0)
            with httpx.Client(base_url=base, timeout=60) as admin:
                for version in (2, 1, 2, 1, 2, 1):
                    with answered:
                        since = outcomes[200, version]
                    moved = admin.post(PROMOTE, json={"version": version})
                    assert moved.status_code == 200, moved.text
                    served(version, since)  # the load goes on, on the version just promoted
        finally:
            stop.set()
            for thread in gateways:
                thread.join(timeout=30)
    assert {status for status, _ in outcomes} == {200}, outcomes
    assert {version for _, version in outcomes} == {1, 2}


def test_an_alias_moved_by_another_process_is_served_here(
    following: TestClient, store: ModelStore
) -> None:
    store.set_alias("probe", "production", 2)  # as another API process or the CLI does
    _eventually(lambda: _served_version(following) == 2, "v2 to be served")
    ready = following.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["model"] == {"name": "probe", "version": 2, "alias": "production"}
    assert following.get("/v1/models").json()["live"]["version"] == 2
    assert 'live_model_info{alias="production",model="probe",version="2"} 1.0' in (
        following.get("/metrics").text
    )

    store.set_alias("probe", "production", 1)
    _eventually(lambda: _served_version(following) == 1, "v1 to be served again")


def test_a_moved_alias_this_process_cannot_load_leaves_the_old_version_serving(
    following: TestClient, store: ModelStore
) -> None:
    series = f'{SWAP_FAILURES}{{model="probe",version="4"}}'
    failures = _metric(following, series)
    store.set_alias("probe", "production", 4)  # verifies, but ONNX Runtime cannot read it

    def refused() -> bool:
        return "problem" in following.get("/readyz").json()["model"]

    _eventually(refused, "the refusal to show in /readyz")
    ready = following.get("/readyz")
    assert ready.status_code == 200, ready.text  # still serving: v1
    model = ready.json()["model"]
    assert (model["version"], model["alias_version"]) == (1, 4), model
    assert "ONNX Runtime cannot load" in model["problem"]
    assert _served_version(following) == 1
    time.sleep(10 * POLL_S)  # a refused version is not tried again until the alias moves
    assert _metric(following, series) == failures + 1

    store.set_alias("probe", "production", 1)
    _eventually(lambda: not refused(), "the refusal to clear once the alias is back")
    assert following.get("/readyz").json()["model"] == {
        "name": "probe",
        "version": 1,
        "alias": "production",
    }


def test_the_process_that_promotes_loads_the_version_once(
    following: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[object] = []
    load = Inspector.load

    def counted(*args: Any) -> Inspector:  # (store, name, ref, options)
        loads.append(args[2])
        return load(*args)

    monkeypatch.setattr(Inspector, "load", staticmethod(counted))
    assert following.post(PROMOTE, json={"version": 2}).status_code == 200
    time.sleep(10 * POLL_S)
    assert _served_version(following) == 2
    assert loads == [2]
    assert following.post(PROMOTE, json={"version": 1}).status_code == 200
