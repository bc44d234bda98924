"""The API as a separate process on loopback, and clients that post strips to it over HTTP.

Clients use keep-alive ``http.client`` connections, one per client thread, so that what is
measured is the service, not connection set-up or a heavy client library.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import TimedRun
from benchmarks.serving_inputs import Body
from service.config import Settings, get_settings
from service.db.migrate import upgrade

HOST = "127.0.0.1"
INSPECT = "/v1/inspect?camera_id=bench"
"""Where the clients post: one camera's frames."""


@dataclass
class ClientRun:
    """What one client saw: per-request wall latency (ms), when each request finished
    (``time.perf_counter``), server timings, failures."""

    latencies_ms: list[float] = field(default_factory=list)
    finished_at: list[float] = field(default_factory=list)
    server_timings_ms: list[dict[str, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Server:
    pid: int
    port: int

    def resident_mib(self, key: str = "VmRSS") -> float:
        """``VmRSS`` (now) or ``VmHWM`` (peak) of the server process, from /proc."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(rf"^{key}:\s+(\d+) kB", status, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"no {key} in /proc/{self.pid}/status")
        return int(match.group(1)) / 1024.0

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used, all threads (from /proc)."""
        return _cpu_seconds(Path(f"/proc/{self.pid}/stat"))

    def cpu_seconds_by_thread(self) -> Counter[str]:
        """CPU seconds of the server's live threads, summed by what they do: the names the
        service gives its threads at the OS level (``service.threads``; an executor's
        ``_<n>`` suffix dropped), ``event loop`` for the main thread, ``other`` for threads
        it cannot name (ONNX Runtime's intra-op pool, the decoding threads)."""
        process_name = Path(f"/proc/{self.pid}/comm").read_text().strip()
        seconds: Counter[str] = Counter()
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                name = (task / "comm").read_text().strip()
                role = _thread_role(int(task.name) == self.pid, name, process_name)
                seconds[role] += _cpu_seconds(task / "stat")
        return seconds

    def cpu_seconds_by_thread_since(self, start: Counter[str]) -> Counter[str]:
        """``cpu_seconds_by_thread`` now, less ``start`` (an earlier reading)."""
        seconds = self.cpu_seconds_by_thread()
        seconds.subtract(start)
        return seconds

    def get(self, path: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


def _cpu_seconds(stat: Path) -> float:
    """User + system CPU seconds in a /proc ``stat`` file (of a process or of one thread)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _thread_role(main: bool, name: str, process_name: str) -> str:
    if main:
        return "event loop"
    if name == process_name:
        return "other"
    return re.sub(r"_\d+$", "", name)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving(
    args: Sequence[str],
    env: Mapping[str, str],
    log: Path,
    ready_timeout_s: float = 300.0,
    cwd: Path | None = None,
) -> Iterator[Server]:
    """``python -m service serve`` on a free loopback port, until /readyz says ready."""
    port = free_port()
    command = [sys.executable, "-m", "service", "serve", "--host", HOST, "--port", str(port)]
    with _server_process([*command, *args], port, env, log, ready_timeout_s, cwd) as server:
        yield server


@contextlib.contextmanager
def bare_http(log: Path, ready_timeout_s: float = 60.0) -> Iterator[Server]:
    """``benchmarks.bare_http``'s app under uvicorn's defaults on a free loopback port: the
    stack's floor (see that module)."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "benchmarks.bare_http:app", "--host", HOST]
    command += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    root = Path(__file__).resolve().parent.parent
    with _server_process(command, port, {}, log, ready_timeout_s, root) as server:
        yield server


@contextlib.contextmanager
def _server_process(
    command: Sequence[str],
    port: int,
    env: Mapping[str, str],
    log: Path,
    ready_timeout_s: float,
    cwd: Path | None,
) -> Iterator[Server]:
    """``command`` (a server on ``port``) until its /readyz answers 200; SIGINT at the end."""
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=log_file, stderr=log_file, cwd=cwd
        )
        try:
            server = Server(process.pid, port)
            _wait_ready(server, process, ready_timeout_s, log)
            yield server
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(
    server: Server, process: subprocess.Popen[bytes], timeout: float, log: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}); see {log}")
        with contextlib.suppress(OSError):
            if server.get("/readyz")[0] == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"the server was not ready within {timeout:.0f} s; see {log}")


class StripPoster:
    """One keep-alive connection that posts strips in turn and records what came back in ``run``.

    Each post is a new frame: ``path`` (with its query string) gets a ``frame_id`` of its own,
    as a camera gateway sends, so that the service's replay lookup runs as in production.
    """

    def __init__(
        self, port: int, path: str, bodies: Sequence[bytes], content_type: str, first: int = 0
    ) -> None:
        if "?" not in path:
            raise ValueError(f"{path!r} needs its query string (camera_id) to add frame ids to")
        gateway = uuid.uuid4().hex[:12]
        self.paths = (f"{path}&frame_id={gateway}-{frame}" for frame in itertools.count())
        self.bodies = itertools.islice(itertools.cycle(bodies), first % len(bodies), None)
        self.headers = {"Content-Type": content_type}
        self.connection = http.client.HTTPConnection(HOST, port, timeout=60)
        self.run = ClientRun()

    def post(self) -> None:
        start = time.perf_counter()
        try:
            self.connection.request(
                "POST", next(self.paths), body=next(self.bodies), headers=self.headers
            )
            response = self.connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.run.failures.append(f"{type(error).__name__}: {error}")
            self.connection.close()
            return
        finished = time.perf_counter()
        self.run.latencies_ms.append((finished - start) * 1000.0)
        self.run.finished_at.append(finished)
        if response.status != 200:
            self.run.failures.append(f"{response.status}: {payload[:200]!r}")
        else:
            self.run.server_timings_ms.append(json.loads(payload)["timings_ms"])

    def close(self) -> None:
        self.connection.close()


def post_strips(
    port: int,
    path: str,
    bodies: Sequence[bytes],
    content_type: str,
    count: int,
    first: int = 0,
) -> ClientRun:
    """``count`` sequential POSTs on one keep-alive connection, cycling through ``bodies`` from
    the ``first``."""
    poster = StripPoster(port, path, bodies, content_type, first)
    try:
        for _ in range(count):
            poster.post()
    finally:
        poster.close()
    return poster.run


def concurrent_clients(
    port: int,
    path: str,
    bodies: Sequence[bytes],
    content_type: str,
    clients: int,
    per_client: int,
) -> tuple[float, list[ClientRun]]:
    """``clients`` threads posting ``per_client`` strips each, each client starting at its own
    place in ``bodies``; returns (seconds, runs)."""
    runs: list[ClientRun] = [ClientRun() for _ in range(clients)]
    start_line = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        start_line.wait()
        runs[index] = post_strips(port, path, bodies, content_type, per_client, first=index)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start_line.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, runs


def steady_state(runs: Sequence[ClientRun]) -> tuple[int, float]:
    """(requests finished, seconds) while every client was busy: from the moment the last
    client got its first answer to the moment the first client got its last one.

    A block's start (every client's first strip arriving at once) and its end (the last
    clients posting alone) are not the concurrency being measured; with a few requests per
    client they weigh on the block's plain average. Falls back to the whole block's answers
    when the clients' windows do not overlap.
    """
    busy = [run.finished_at for run in runs if run.finished_at]
    start, end = max(times[0] for times in busy), min(times[-1] for times in busy)
    finished = sum(1 for times in busy for t in times if start < t <= end)
    if end <= start or finished == 0:
        first, last = min(times[0] for times in busy), max(times[-1] for times in busy)
        return sum(len(times) for times in busy) - len(busy), last - first
    return finished, end - start


def add_model_options(parser: argparse.ArgumentParser, settings: Settings) -> None:
    """The version to serve: ``--store``, ``--model``, ``--alias``, defaults from the settings."""
    parser.add_argument(
        "--store",
        type=Path,
        default=settings.model_store,
        help="model store folder (env MODEL_STORE)",
    )
    parser.add_argument("--model", default=settings.model_name, help="model name (env MODEL_NAME)")
    parser.add_argument("--alias", default=settings.model_alias, help="alias (env MODEL_ALIAS)")


def served_settings(args: argparse.Namespace, **update: Any) -> Settings:
    """The service's settings with the version chosen by ``add_model_options`` (and ``update``)."""
    chosen = {"model_store": args.store, "model_name": args.model, "model_alias": args.alias}
    return get_settings().model_copy(update=chosen | update)


@contextlib.contextmanager
def start_api(
    settings: Settings,
    tmp: str,
    source: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """The API on a fresh SQLite database, open (no keys: loopback only), as configured.

    ``source``: a checkout whose code serves (and migrates the database), with its own model
    store when ``settings.model_store`` is relative. The process then starts in ``tmp``: started
    in a checkout, ``python -m service`` would import that checkout's package, whatever
    PYTHONPATH says.
    """
    folder = Path(tmp)
    database = f"sqlite:///{folder / 'inspections.db'}"
    env = {
        "DATABASE_URL": database,
        "SPOOL_DIR": str(folder / "spool"),
        "IMAGE_DIR": str(folder / "images"),  # kept strips go with the run, not into ./var
        "MAX_BATCH": str(settings.max_batch),
        "MAX_WAIT_MS": str(settings.max_wait_ms),
        "SESSION_RUNS": str(settings.session_runs),
        "POSTPROCESS_THREADS": str(settings.postprocess_threads),
        "WARMUP_RUNS": str(settings.warmup_runs),
        "ONNX_THREADS": str(settings.onnx_threads),
        "ONNX_PROVIDERS": json.dumps(list(settings.onnx_providers)),
        "API_KEYS": "[]",
        **_spinning_env(settings),
        **(extra_env or {}),
    }
    store = settings.model_store
    if source is None:
        upgrade(database)
    else:
        env["PYTHONPATH"] = str(source)
        store = source / store if not store.is_absolute() else store
        subprocess.run(
            [sys.executable, "-m", "service", "migrate", "--database-url", database],
            env={**os.environ, **env},
            cwd=folder,
            check=True,
            capture_output=True,
        )
    args = ["--store", str(store), "--model", settings.model_name]
    args += ["--alias", settings.model_alias, "--log-level", "warning"]
    cwd = None if source is None else folder
    with serving(args, env, folder / "server.log", cwd=cwd) as server:
        yield server


def measure_clients(server: Server, body: Body, clients: int, per_client: int) -> TimedRun:
    """Concurrent clients; their steady-state throughput (see ``steady_state``), and the
    server's CPU and batching over the whole block."""
    before = batch_totals(server)  # scraped outside the CPU window: it is not serving work
    cpu_start, threads_start = server.cpu_seconds(), server.cpu_seconds_by_thread()
    _, runs = concurrent_clients(server.port, INSPECT, body.data, body.kind, clients, per_client)
    cpu_s = server.cpu_seconds() - cpu_start
    by_thread = server.cpu_seconds_by_thread_since(threads_start)
    after = batch_totals(server)
    finished, seconds = steady_state(runs)
    return TimedRun(
        [seconds],
        finished,
        cpu_s,
        [failure for run in runs for failure in run.failures],
        (after[0] - before[0], after[1] - before[1]),
        cpu_items=sum(len(run.latencies_ms) for run in runs),
        cpu_by_thread=by_thread,
    )


def batch_totals(server: Server) -> tuple[float, float]:
    """(sum, count) of the batch-size histogram, over every model version."""
    text = metrics_text(server)
    return (
        metric_sum(text, "strip_inspection_batch_size_sum"),
        metric_sum(text, "strip_inspection_batch_size_count"),
    )


def metrics_text(server: Server) -> str:
    """The server's /metrics page."""
    _, body = server.get("/metrics")
    return body.decode()


def metric_sum(text: str, name: str) -> float:
    """A Prometheus sample's value summed over all its label sets in ``text``."""
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{.*}})? (\S+)$", text, re.M))


def _spinning_env(settings: Settings) -> dict[str, str]:
    """``ONNX_SPINNING`` only where it differs from the default: a served checkout from before
    the spinning modes (``bench-ab`` across them) then runs with its own default."""
    default = Settings.model_fields["onnx_spinning"].default
    return {} if settings.onnx_spinning == default else {"ONNX_SPINNING": settings.onnx_spinning}
