"""POST /v1/inspect with bad input: a JSON error with a stable code, never a 500."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.store import ModelStore
from tests.tiny_models import HEIGHT, WIDTH

from .conftest import AppFactory
from .strips import MEDIA, RAW, encode, plain_strip, png_declaring, post_strip

PNG = MEDIA["PNG"]
# As in production (service.inference.decode sets it), not pytest's default of showing it.
pytestmark = pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    return body["error"]["message"]


BAD_BODIES = {
    "empty image": (b"", PNG, 400, "empty_body"),
    "empty raw": (b"", RAW, 400, "empty_body"),
    "garbage": (b"\x00not an image at all" * 10, PNG, 400, "undecodable_image"),
    "png sent as jpeg": (encode(plain_strip(), "PNG"), MEDIA["JPEG"], 400, "undecodable_image"),
    "truncated png": (
        encode(np.random.default_rng(0).integers(0, 255, (HEIGHT, WIDTH), dtype=np.uint8), "PNG")[
            :5000
        ],
        PNG,
        400,
        "undecodable_image",
    ),
    "text": (b"hello", "text/plain", 415, "unsupported_media_type"),
    "no content type": (b"hello", None, 415, "unsupported_media_type"),
    "gif": (encode(plain_strip(), "GIF"), "image/gif", 415, "unsupported_media_type"),
    "raw too short": (b"\x00" * 1000, RAW, 422, "wrong_buffer_length"),
    "16-bit png": (
        encode(plain_strip().astype(np.uint16) * 256, "PNG"),
        PNG,
        422,
        "unsupported_pixel_format",
    ),
    "bomb, huge": (png_declaring(100_000, 100_000), PNG, 413, "image_too_large"),
    "bomb, over the limit": (png_declaring(5000, 4000), PNG, 413, "image_too_large"),
    "multipart without image": (
        b'--x\r\nContent-Disposition: form-data; name="other"\r\n\r\n1\r\n--x--\r\n',
        "multipart/form-data; boundary=x",
        422,
        "missing_field",
    ),
    "multipart unterminated": (
        b"--x\r\n\r\nabc",
        "multipart/form-data; boundary=x",
        400,
        "malformed_multipart",
    ),
    "multipart no boundary": (b"abc", "multipart/form-data", 400, "malformed_multipart"),
    "multipart, too many parts": (
        b"".join(
            f'--x\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\n{i}\r\n'.encode()
            for i in range(65)
        )
        + b"--x--\r\n",
        "multipart/form-data; boundary=x",
        400,
        "malformed_multipart",
    ),
    "multipart part without a name": (
        b"--x\r\nContent-Disposition: form-data\r\n\r\n1\r\n--x--\r\n",
        "multipart/form-data; boundary=x",
        400,
        "malformed_multipart",
    ),
}


@pytest.mark.parametrize("case", BAD_BODIES)
def test_bad_body(client: TestClient, case: str) -> None:
    body, content_type, status, code = BAD_BODIES[case]
    _error(post_strip(client, body, content_type), status, code)


def test_wrong_dimensions_say_expected_and_got(client: TestClient) -> None:
    response = post_strip(client, encode(np.zeros((256, 800), dtype=np.uint8), "PNG"), PNG)
    message = _error(response, 422, "wrong_dimensions")
    assert "1600x256" in message and "800x256" in message


def test_raw_buffer_message_says_expected_length(client: TestClient) -> None:
    message = _error(post_strip(client, b"\x00" * 10, RAW), 422, "wrong_buffer_length")
    assert str(HEIGHT * WIDTH) in message and "10 bytes" in message


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "missing_parameter"),
        ({"camera_id": ""}, "invalid_parameter"),
        ({"camera_id": "c" * 129}, "invalid_parameter"),
        ({"camera_id": "c", "captured_at": "yesterday"}, "invalid_parameter"),
        ({"camera_id": "c", "frame_id": "f" * 129}, "invalid_parameter"),
        ({"camera_id": "cam\x00"}, "invalid_parameter"),
        ({"camera_id": "c", "line_id": "line\n2"}, "invalid_parameter"),
        ({"camera_id": "c", "captured_at": "9999-12-31T23:00:00-05:00"}, "invalid_parameter"),
    ],
)
def test_bad_query_parameters(client: TestClient, params: dict[str, str], code: str) -> None:
    response = client.post(
        "/v1/inspect", params=params, content=plain_strip().tobytes(), headers={"content-type": RAW}
    )
    message = _error(response, 422, code)
    assert next(iter(params.keys() - {"camera_id"}), "camera_id") in message


@pytest.fixture(scope="module")
def small_limit_client(
    running_app: AppFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path_factory.mktemp('limit') / 'db.sqlite'}"
    with running_app(url, max_body_bytes=100_000) as client:
        yield client


def test_body_over_the_limit_is_413(small_limit_client: TestClient) -> None:
    response = post_strip(small_limit_client, plain_strip().tobytes(), RAW)
    assert "100000-byte limit" in _error(response, 413, "body_too_large")


def test_chunked_body_over_the_limit_is_413(small_limit_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"\x00" * 40_000

    response = small_limit_client.post(
        "/v1/inspect", params={"camera_id": "c"}, content=chunks(), headers={"content-type": RAW}
    )
    _error(response, 413, "body_too_large")


def test_chunked_multipart_over_the_limit_is_413(small_limit_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'--x\r\nContent-Disposition: form-data; name="image"; filename="s"\r\n\r\n'
        for _ in range(10):
            yield b"\x00" * 40_000

    response = small_limit_client.post(
        "/v1/inspect",
        params={"camera_id": "c"},
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    _error(response, 413, "body_too_large")


@pytest.mark.parametrize("content_type", [RAW, "multipart/form-data; boundary=x"])
def test_the_limit_stops_reading_midway(small_limit_client: TestClient, content_type: str) -> None:
    """The body is refused as soon as the limit is passed, not after all of it arrived."""
    received, sent = 0, []

    async def receive() -> dict[str, object]:
        nonlocal received
        received += 1
        head = b'--x\r\nContent-Disposition: form-data; name="image"; filename="s"\r\n\r\n'
        body = head if received == 1 else b"\x00" * 10_000  # endless
        return {"type": "http.request", "body": body, "more_body": True}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/inspect",
        "raw_path": b"/v1/inspect",
        "root_path": "",
        "query_string": b"camera_id=c",
        "headers": [(b"host", b"test"), (b"content-type", content_type.encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    assert small_limit_client.portal is not None
    small_limit_client.portal.call(small_limit_client.app, scope, receive, send)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert b'"body_too_large"' in b"".join(m.get("body", b"") for m in sent)  # type: ignore[misc]
    assert received == 11  # the head, then 10 x 10,000 bytes: over 100,000 with the 11th


def test_no_model_is_503(running_app: AppFactory, sqlite_url: str, tmp_path: Path) -> None:
    with running_app(sqlite_url, model_store=tmp_path / "empty") as client:
        response = post_strip(client, plain_strip().tobytes(), RAW)
        assert "probe" in _error(response, 503, "model_unavailable")
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")  # the error, with the model, database and spool states
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"
        assert client.get("/v1/models").json() == {"live": None, "models": []}


def test_a_tampered_version_is_not_served(
    running_app: AppFactory,
    sqlite_url: str,
    model_store: ModelStore,
    tmp_path: Path,
) -> None:
    root = tmp_path / "store"
    shutil.copytree(model_store.root, root)
    onnx = root / "probe" / "1" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\x00")
    with running_app(sqlite_url, model_store=root) as client:
        response = post_strip(client, plain_strip().tobytes(), RAW)
        assert "sha256" in _error(response, 503, "model_unavailable")
