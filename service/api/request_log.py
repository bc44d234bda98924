"""One JSON line per request on the ``service.requests`` logger, and a request id on each.

The id is the caller's ``X-Request-ID`` when it is sane (a gateway's own id, so that its logs
and ours join up), else a new one; it is echoed in the response's ``X-Request-ID`` header and
kept as ``request.state.request_id``. Handlers add what only they know (model version, timings)
with ``annotate``; the auth dependency leaves the key's name in ``request.state.api_key``.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from typing import IO, Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import observe_request

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"[\x21-\x7e]{1,128}")
"""Visible ASCII, no spaces: safe to echo in a header and to write in a log line."""
_FIELDS = "log_fields"

logger = logging.getLogger("service.requests")


def annotate(request: Request, **fields: Any) -> None:
    """Add JSON-serialisable fields to the request's log line."""
    scope_state = request.scope.setdefault("state", {})
    scope_state.setdefault(_FIELDS, {}).update(fields)


def log_requests_to(stream: IO[str]) -> None:
    """Write the request lines to ``stream`` as bare JSON, one per line (``serve`` does this)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


class RequestLog:
    """Pure ASGI middleware (no body buffering, unlike BaseHTTPMiddleware): tags each request
    with an id, logs it, and records its route, status and duration in the request metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500
        request_id = _request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                header = (REQUEST_ID_HEADER.lower().encode(), request_id.encode())
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # The router records the matched route in the scope; unmatched paths share a label.
            route = getattr(scope.get("route"), "path", "unmatched")
            duration = time.perf_counter() - start
            observe_request(route, scope["method"], status, duration)
            if logger.isEnabledFor(logging.INFO):
                line = {
                    "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "request_id": request_id,
                    "method": scope["method"],
                    "route": route,
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(duration * 1000.0, 3),
                    "api_key": state.get("api_key"),
                    **state.get(_FIELDS, {}),
                }
                logger.info(json.dumps(line, default=str, separators=(",", ":")))


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _SANE_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex
