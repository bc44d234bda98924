"""One JSON log line per request, with its id, route, status, timings and model version; the
request id is the caller's X-Request-ID when sane, and is echoed in the response."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
from fastapi.testclient import TestClient

from service.api.request_log import log_requests_to, logger

from .strips import RAW, plain_strip, post_strip


def _line(caplog: pytest.LogCaptureFixture, request_id: str) -> dict[str, object]:
    found = [
        json.loads(record.getMessage())
        for record in caplog.records
        if record.name == logger.name and request_id in record.getMessage()
    ]
    assert len(found) == 1, found
    return found[0]


def test_an_inspection_is_one_line_with_its_timings_and_model(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=logger.name)
    response = client.post(
        "/v1/inspect",
        params={"camera_id": "cam-log"},
        content=plain_strip().tobytes(),
        headers={"content-type": RAW, "X-Request-ID": "gw-42/frame-7"},
    )
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "gw-42/frame-7"
    line = _line(caplog, "gw-42/frame-7")
    assert line["route"] == "/v1/inspect" and line["method"] == "POST"
    assert line["status"] == 200 and line["replay"] is False
    assert line["model"] == {"name": "probe", "version": 1}
    assert set(line["timings_ms"]) == {"decode", "queue", "inference", "postprocess", "total"}  # type: ignore[arg-type]
    assert line["duration_ms"] >= line["timings_ms"]["total"]  # type: ignore[index, operator]


@pytest.mark.parametrize("sent", [None, b"has space", b"x" * 129, "café".encode()])
def test_a_missing_or_odd_request_id_is_replaced(
    client: TestClient, caplog: pytest.LogCaptureFixture, sent: bytes | None
) -> None:
    caplog.set_level(logging.INFO, logger=logger.name)
    headers = {} if sent is None else {"X-Request-ID": sent}
    response = client.get("/healthz", headers=headers)
    request_id = response.headers["X-Request-ID"]
    assert re.fullmatch("[0-9a-f]{32}", request_id), request_id  # a fresh uuid4, in hex
    assert _line(caplog, request_id)["route"] == "/healthz"


def test_errors_are_logged_and_tagged_too(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=logger.name)
    response = post_strip(client, b"hello", "text/plain")
    assert response.status_code == 415
    line = _line(caplog, response.headers["X-Request-ID"])
    assert line["status"] == 415 and "model" not in line
    unmatched = client.get("/nowhere")
    assert _line(caplog, unmatched.headers["X-Request-ID"])["route"] == "unmatched"


def test_serve_writes_bare_json_lines() -> None:
    saved = (logger.handlers[:], logger.level, logger.propagate)
    stream = io.StringIO()
    try:
        log_requests_to(stream)
        logger.info(json.dumps({"request_id": "r"}))
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    assert json.loads(stream.getvalue().splitlines()[0]) == {"request_id": "r"}
