"""API keys and roles through the real app: the full matrix, open probes, hash-key, serve."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.auth import GRANTS, ROLES, KeyRing, check_bind, key_digest, key_entry
from service.config import ApiKey, Role

from .conftest import AppFactory
from .strips import RAW, plain_strip

REPO = Path(__file__).resolve().parents[2]
KEYS: dict[Role, str] = {role: secrets.token_urlsafe(32) for role in ROLES}


@pytest.fixture(scope="module")
def keyed(
    running_app: AppFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """The app with one key per role."""
    url = f"sqlite:///{tmp_path_factory.mktemp('auth') / 'inspections.db'}"
    entries = [key_entry(key, name=f"{role}-key", role=role) for role, key in KEYS.items()]
    with running_app(url, api_keys=entries) as client:
        yield client


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _required_role(method: str, path: str) -> Role:
    """The role each route group needs; a route that fits no group fails the matrix."""
    if path.startswith("/v1/admin/"):
        return "admin"
    if path == "/v1/inspect" or path.startswith("/v1/inspect/"):
        assert method == "POST", f"{method} {path}: decide its role"
        return "inspect"
    if path.endswith("/review"):  # QA reviews what it reads
        return "read"
    assert method in ("GET", "HEAD"), f"{method} {path}: decide its role"
    return "read"


def _protected_routes(client: TestClient) -> list[tuple[str, str, Role]]:
    """(method, concrete path, role) of every /v1 route the app documents, present and future."""
    routes = []
    for template, operations in client.get("/openapi.json").json()["paths"].items():
        if template.startswith("/v1/"):
            path = template.replace("{inspection_id}", str(uuid.uuid4()))
            path = path.replace("{", "").replace("}", "")  # other parameters: their names
            for method in operations:
                routes.append((method.upper(), path, _required_role(method.upper(), template)))
    return routes


@pytest.mark.parametrize("caller", [*ROLES, "no key", "unknown key", "not bearer"])
def test_every_route_checks_the_key_and_its_role(keyed: TestClient, caller: str) -> None:
    routes = _protected_routes(keyed)
    assert {"inspect", "read"} <= {role for _, _, role in routes}
    anonymous = {
        "no key": {},
        "unknown key": _bearer(secrets.token_urlsafe(32)),
        "not bearer": {"Authorization": f"Basic {KEYS['admin']}"},
    }
    headers = anonymous[caller] if caller in anonymous else _bearer(KEYS[caller])  # type: ignore[index]
    wrong = []
    for method, path, role in routes:
        response = keyed.request(method, path, headers=headers)
        if caller not in ROLES:
            expected = {401}
        elif role in GRANTS[caller]:  # type: ignore[index]
            expected = set(range(200, 600)) - {401, 403}
        else:
            expected = {403}
        if response.status_code not in expected:
            wrong.append(f"{method} {path}: {response.status_code} {response.text[:120]}")
        elif response.status_code in (401, 403):
            body = response.json()["error"]
            assert body["code"] in {"missing_api_key", "invalid_api_key", "forbidden"}
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert not wrong, "\n".join(wrong)


def test_gateway_key_inspects_but_cannot_read(keyed: TestClient) -> None:
    posted = keyed.post(
        "/v1/inspect",
        params={"camera_id": "cam-auth"},
        content=plain_strip().tobytes(),
        headers={"content-type": RAW, **_bearer(KEYS["inspect"])},
    )
    assert posted.status_code == 200, posted.text
    one = f"/v1/inspections/{posted.json()['inspection_id']}"
    refused = keyed.get(one, headers=_bearer(KEYS["inspect"]))
    assert refused.status_code == 403
    assert refused.json()["error"] == {
        "code": "forbidden",
        "message": "the key 'inspect-key' has the role 'inspect'; this endpoint needs 'read'",
    }
    for role in ("read", "admin"):
        for path in (one, "/v1/inspections", "/v1/models"):
            assert keyed.get(path, headers=_bearer(KEYS[role])).status_code == 200, (role, path)
    admin_post = keyed.post(
        "/v1/inspect",
        params={"camera_id": "cam-auth"},
        content=plain_strip().tobytes(),
        headers={"content-type": RAW, "Authorization": f"bearer {KEYS['admin']}"},
    )
    assert admin_post.status_code == 200


def test_missing_and_unknown_keys_are_401_with_a_challenge(keyed: TestClient) -> None:
    missing = keyed.get("/v1/models")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="strip-inspection"'
    assert missing.json()["error"]["code"] == "missing_api_key"
    unknown = keyed.get("/v1/models", headers=_bearer("x" * 40))
    assert unknown.status_code == 401
    assert 'error="invalid_token"' in unknown.headers["WWW-Authenticate"]
    assert unknown.json()["error"] == {
        "code": "invalid_api_key",
        "message": "the API key is not valid",
    }


def test_the_key_is_checked_before_the_body_is_read(keyed: TestClient) -> None:
    too_large = keyed.app.state.services.settings.max_body_bytes + 1  # type: ignore[attr-defined]
    response = keyed.post(
        "/v1/inspect",
        params={"camera_id": "c"},
        content=bytes(too_large),
        headers={"content-type": RAW},
    )
    assert response.status_code == 401  # not 413: nothing was read


def test_probes_and_metrics_stay_open(keyed: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert keyed.get(path).status_code == 200, path


@pytest.mark.subprocess
def test_hash_key_prints_the_entry_the_app_accepts() -> None:
    key = secrets.token_urlsafe(32)
    result = _run_cli(["hash-key", "--name", "line-3-gateway", "--role", "inspect"], key + "\n")
    assert result.returncode == 0, result.stderr
    entry = ApiKey.model_validate(json.loads(result.stdout))
    assert entry == ApiKey(name="line-3-gateway", role="inspect", sha256=key_digest(key))
    assert KeyRing([entry]).authorize(f"Bearer {key}", "inspect") == entry


@pytest.mark.subprocess
def test_hash_key_refuses_a_guessable_key() -> None:
    result = _run_cli(["hash-key", "--name", "n", "--role", "read"], "hunter2\n")
    assert result.returncode == 2
    assert "at least 32" in result.stderr and "token_urlsafe" in result.stderr


@pytest.mark.subprocess
def test_serve_refuses_a_public_address_without_keys() -> None:
    result = _run_cli(["serve", "--host", "0.0.0.0", "--port", "0"])
    assert result.returncode == 2
    assert "refusing to serve on 0.0.0.0 without API keys" in result.stderr
    assert "API_KEYS" in result.stderr and "hash-key" in result.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_open_service_on_loopback_is_allowed(host: str) -> None:
    check_bind(host, [])


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "inspection.plant.local"])
def test_public_addresses_need_keys(host: str) -> None:
    with pytest.raises(ValueError, match="without API keys"):
        check_bind(host, [])
    check_bind(host, [key_entry("k" * 32, name="n", role="read")])


def test_repeated_key_names_or_hashes_are_refused() -> None:
    one = key_entry("a" * 32, name="gw", role="inspect")
    with pytest.raises(ValueError, match="name repeated: gw"):
        KeyRing([one, key_entry("b" * 32, name="gw", role="read")])
    with pytest.raises(ValueError, match="sha256 repeated"):
        KeyRing([one, one.model_copy(update={"name": "other"})])


def _run_cli(arguments: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "API_KEYS"}
    return subprocess.run(
        [sys.executable, "-m", "service", *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=environment,
        timeout=120,
    )
