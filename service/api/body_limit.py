"""Every request body, whatever its kind (JSON, multipart, an image), limited while it streams in.

A pure ASGI middleware between the request log and the app. When the app first asks for the
body, a declared Content-Length over the limit is refused before a byte is read; otherwise the
bytes of each ``http.request`` message are counted as they arrive, and the body is refused as
soon as they pass the limit. Refusing means answering 413 ``body_too_large`` in the app's place
and telling the app the client has gone (``http.disconnect``): nothing more is read, and
whatever the app answers after that is dropped. Checking at the first read rather than on
arrival lets a route refuse a caller without the right key (401/403) before its body counts.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_response

DISCONNECT: Message = {"type": "http.disconnect"}


class BodyLimit:
    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(scope, receive, send, self.limit)
        await self.app(scope, exchange.receive, exchange.send)


class _Exchange:
    """One request: its body counted on the way in, its response watched on the way out."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        self.scope, self._receive, self._send, self.limit = scope, receive, send, limit
        self.declared = _declared_length(scope)
        self.received = 0
        self.refused = False
        """The body went over the limit: the app is told the client has gone."""
        self.answered = False
        """The 413 went out in the app's place: the app's own answer is dropped."""
        self.started = False

    async def receive(self) -> Message:
        if self.refused:
            return DISCONNECT
        if self.declared is not None and self.declared > self.limit:
            return await self._refuse(f"Content-Length says {self.declared} bytes")
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                return await self._refuse(f"more than {self.limit} bytes arrived")
        return message

    async def send(self, message: Message) -> None:
        if self.answered:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def _refuse(self, why: str) -> Message:
        """Answer 413 unless the app's answer has begun; either way, read no more."""
        self.refused = True
        if not self.started:
            self.answered = True
            response = error_response(
                413,
                "body_too_large",
                f"the body is over the {self.limit}-byte limit ({why})",
                # The rest of the body is never read, so the connection cannot carry another
                # request.
                {"Connection": "close"},
            )
            await response(self.scope, self._receive, self._send)
        return DISCONNECT


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
