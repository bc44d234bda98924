"""GET /v1/models: models, versions with metrics and lineage, aliases, and the live one."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_lists_models_versions_and_aliases(client: TestClient) -> None:
    response = client.get("/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert body["live"] == {"name": "probe", "version": 1, "alias": "production"}
    models = {model["name"]: model for model in body["models"]}
    assert set(models) == {"probe", "unet-tiny"}
    probe = models["probe"]
    assert probe["aliases"] == {"production": 1}
    (version,) = probe["versions"]
    assert version["version"] == 1
    assert version["metrics"]["dice"] == 0.5 and version["metrics"]["params"] > 0
    assert version["lineage"]["method"] == "test"
    assert [c["name"] for c in version["classes"]] == ["pits", "crack", "scratch", "scale"]
    assert version["input"]["height"] == 256 and version["input"]["width"] == 1600
    assert models["unet-tiny"]["versions"][0]["architecture"]["family"] == "unet"


def test_models_is_read_only(client: TestClient) -> None:
    response = client.post("/v1/models")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
