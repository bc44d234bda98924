"""A result the database refuses for a reason of its own (not an outage) is never answered 200
and set aside: the gateway is told, it is counted and logged, and nothing waits in the spool."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import DataError

from service.metrics import RESULTS_REFUSED
from service.spool import recorder as recorder_module
from service.store.manifest import DefectClassSpec

from .conftest import AppFactory
from .strips import RAW, plain_strip, post_strip


def test_a_refused_result_is_an_error_counted_and_not_spooled(
    running_app: AppFactory, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(connection, row):  # type: ignore[no-untyped-def]
        raise DataError("INSERT", {}, ValueError("value too long for type character varying"))

    before = RESULTS_REFUSED._value.get()
    with running_app(sqlite_url) as client:
        monkeypatch.setattr(recorder_module, "insert_inspection", refuse)
        response = post_strip(client, plain_strip().tobytes(), RAW, frame_id="refused-1")
        spooled = client.app.state.services.results.spool.pending  # type: ignore[attr-defined]
        ready = client.get("/readyz")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "result_refused"
    assert spooled == 0
    assert RESULTS_REFUSED._value.get() - before == 1
    assert ready.status_code == 200  # a refused record does not make the database "down"


def test_class_names_longer_than_their_column_are_refused_with_the_manifest() -> None:
    with pytest.raises(ValueError, match="at most 64"):
        DefectClassSpec(id=1, name="x" * 65)


def test_every_frame_field_is_checked_before_the_model_runs(client: TestClient) -> None:
    long_id = "c" * 129
    for params in (
        {"camera_id": long_id},
        {"frame_id": long_id},
        {"line_id": long_id},
        {"coil_id": long_id},
        {"coil_id": "bad\x00id"},
        {"position_m": "-1"},
        {"position_m": "nan"},
        {"position_m": "1e9"},
        {"captured_at": "10000-01-01T00:00:00Z"},
    ):
        response = post_strip(client, plain_strip().tobytes(), RAW, **params)
        assert response.status_code == 422, (params, response.text)
