"""Request metrics as a pure ASGI middleware (no body buffering, unlike BaseHTTPMiddleware)."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import observe_request


class RequestMetrics:
    """Counts requests by route template (bounded, unlike raw paths), method and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            # The router records the matched route in the scope; unmatched paths share a label.
            route = getattr(scope.get("route"), "path", "unmatched")
            observe_request(route, scope["method"], status, time.perf_counter() - start)
