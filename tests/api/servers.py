"""The real app under uvicorn on a free loopback port: in a thread of the test process
(``serving``), or as ``python -m service serve`` in a process of its own (``serve_process``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from service.api import create_app
from service.config import Settings
from service.db.migrate import upgrade


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """Migrate, start, and yield the base URL once the lifespan (model load) has finished."""
    upgrade(settings.database_url)
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def serve_process(env: Mapping[str, str], log: Path, *options: str) -> Iterator[str]:
    """``python -m service serve`` with ``env`` on a free loopback port, output to ``log``;
    yields the base URL once the process answers (its lifespan has run), then stops it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "service", "serve", "--port", str(port), *options]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            cwd=log.parent,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_answer(process, base, log)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_answer(process: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, f"serve exited:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"serve did not answer:\n{log.read_text()}"
        try:
            httpx.get(f"{base}/healthz", timeout=5)
            return
        except httpx.TransportError:
            time.sleep(0.1)
