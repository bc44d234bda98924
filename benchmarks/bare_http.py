"""The floor of the serving stack: what answering a strip costs before any work is done on it.

A bare ASGI app under the same uvicorn as the service (its defaults: uvloop and httptools where
installed), with no framework, middleware, model or database: it reads the whole body and
answers a small JSON. Its one-client latency for the same bodies the service gets is the part of
an answer no service on this stack can go under; ``benchmarks.serving`` measures it beside the
service and the raw session, in the same minutes.
"""

from __future__ import annotations

import json

from starlette.types import Receive, Scope, Send

_HEADERS = [(b"content-type", b"application/json")]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Any request: its body read to the end, then ``{"bytes": N, "timings_ms": {}}``."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    received, more = 0, True
    while more:
        message = await receive()
        received += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = json.dumps({"bytes": received, "timings_ms": {}}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": body})
