"""The app under uvicorn on a real socket: an oversized body, image or JSON, is refused while it
streams."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from service.config import Settings
from service.store import ModelStore

from .servers import serving

pytestmark = pytest.mark.subprocess


@pytest.fixture()
def server(model_store: ModelStore, sqlite_url: str, tmp_path: Path) -> Iterator[int]:
    """The port of the app under uvicorn, with a 100 KB body limit."""
    settings = Settings(
        _env_file=None,
        model_store=model_store.root,
        model_name="probe",
        database_url=sqlite_url,
        max_body_bytes=100_000,
        warmup_runs=1,
        spool_dir=tmp_path / "spool",
    )
    with serving(settings) as base:
        port = urlsplit(base).port
        assert port is not None
        yield port


def test_oversized_chunked_body_is_refused_before_it_ends(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=10) as connection:
        connection.sendall(
            b"POST /v1/inspect?camera_id=c HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"\x00" * 150_000  # over the limit; the body never finishes
        connection.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        reply = _read_response(connection)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"body_too_large"' in reply


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_an_oversized_json_body_is_refused_before_it_ends(server: int, framing: str) -> None:
    """A body declared (or sent) over the limit is answered 413 while the rest never comes."""
    head = b'{"version": 1, "padding": "' + b"x" * 150_000
    if framing == "content-length":
        body_headers = f"Content-Length: {50 * 1024 * 1024}\r\n\r\n".encode()
        first = head
    else:
        body_headers = b"Transfer-Encoding: chunked\r\n\r\n"
        first = f"{len(head):x}\r\n".encode() + head + b"\r\n"
    with socket.create_connection(("127.0.0.1", server), timeout=10) as connection:
        connection.sendall(
            b"POST /v1/admin/models/probe/aliases/production HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/json\r\n" + body_headers
        )
        connection.sendall(first)
        reply = _read_response(connection)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"body_too_large"' in reply and b"100000-byte limit" in reply


def _read_response(connection: socket.socket) -> bytes:
    """Headers and body of one response with a Content-Length."""
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = connection.recv(65536)
        assert chunk, f"connection closed after {reply!r}"
        reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = connection.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return head + b"\r\n\r\n" + body
