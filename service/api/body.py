"""Request bodies: read with a size limit enforced while streaming, and multipart parsing.

The limit is checked against Content-Length first and then on every chunk, so an oversized
body is refused after at most ``limit`` bytes, not after it has all been buffered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesHeaderParser

from fastapi import Request
from starlette.requests import ClientDisconnect

from service.api.errors import ApiError
from service.inference.decode import (
    MEDIA_TYPES,
    RAW_MEDIA_TYPE,
    UnsupportedMediaType,
    media_type,
)

MULTIPART = "multipart/form-data"
IMAGE_FIELD = "image"


@dataclass(frozen=True)
class Upload:
    """One strip as received: its media type (the part's, for multipart) and bytes."""

    content_type: str
    data: bytes
    received_at: datetime
    started: float
    """``time.perf_counter()`` when the request reached the handler's dependencies."""


async def read_upload(request: Request, *, limit: int) -> Upload:
    """The strip in the body: a bare image or raw buffer, or the ``image`` field of a form."""
    started, received_at = time.perf_counter(), datetime.now(UTC)
    content_type = request.headers.get("content-type", "")
    kind = media_type(content_type)
    if kind not in MEDIA_TYPES and kind != MULTIPART:
        supported = ", ".join((*MEDIA_TYPES, MULTIPART))
        raise UnsupportedMediaType(
            f"media type {kind or '(none)'!r} is not supported; send one of {supported}"
        )
    data = await read_body(request, limit=limit)
    if kind == MULTIPART:
        parts = parse_multipart(data, content_type)
        if IMAGE_FIELD not in parts:
            raise ApiError(422, "missing_field", f"the multipart body has no field {IMAGE_FIELD!r}")
        kind, data = parts[IMAGE_FIELD]
    return Upload(content_type=kind, data=data, received_at=received_at, started=started)


async def read_body(request: Request, *, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, f"Content-Length says {int(declared)} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit, f"more than {limit} bytes arrived")
            chunks.append(chunk)
    except ClientDisconnect as error:
        raise ApiError(
            400, "client_disconnected", "the client left before the body ended"
        ) from error
    return b"".join(chunks)


def _too_large(limit: int, why: str) -> ApiError:
    return ApiError(413, "body_too_large", f"the body is over the {limit}-byte limit ({why})")


def parse_multipart(body: bytes, content_type: str) -> dict[str, tuple[str, bytes]]:
    """``multipart/form-data`` -> {field name: (media type, bytes)} (RFC 7578).

    A part without a Content-Type is taken as ``application/octet-stream``. Small on purpose:
    the body is already in memory and size-limited, and python-multipart is not a dependency.
    """
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise _malformed("the Content-Type has no boundary parameter")
    # The CRLF before each delimiter belongs to the delimiter, not to the part before it.
    sections = (b"\r\n" + body).split(b"\r\n--" + boundary.encode("latin-1"))
    if len(sections) < 2 or not sections[-1].startswith(b"--"):
        raise _malformed("the closing boundary is missing")
    parts: dict[str, tuple[str, bytes]] = {}
    for section in sections[1:-1]:
        line_end = section.find(b"\r\n")
        if line_end < 0 or section[:line_end].strip(b" \t"):
            raise _malformed("a boundary line is malformed")
        rest = section[line_end + 2 :]
        if rest.startswith(b"\r\n"):  # a part without headers
            head, content = b"", rest[2:]
        else:
            head, separator, content = rest.partition(b"\r\n\r\n")
            if not separator:
                raise _malformed("a part has no blank line after its headers")
        headers = BytesHeaderParser().parsebytes(head)
        name = headers.get_param("name", header="content-disposition")
        if isinstance(name, str) and name not in parts:
            parts[name] = (media_type(headers.get("content-type")) or RAW_MEDIA_TYPE, content)
    return parts


def _malformed(why: str) -> ApiError:
    return ApiError(400, "malformed_multipart", f"the multipart body is malformed: {why}")
