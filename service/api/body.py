"""The strips of a request body: a bare image or raw buffer, or multipart forms
(python-multipart). The body's size is limited while it streams in, for every route alike, by
``service.api.body_limit``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect
from starlette.types import Scope

from service.api.errors import ApiError
from service.inference.decode import MEDIA_TYPES, RAW_MEDIA_TYPE, UnsupportedMediaType, media_type
from service.inspection import ReceivedStrip

MULTIPART = "multipart/form-data"
IMAGE_FIELD = "image"
MAX_FORM_PARTS = 64
"""Most file parts, and most plain fields, one form may hold."""


@dataclass(frozen=True)
class Upload:
    """The strip of a request to /v1/inspect."""

    strip: ReceivedStrip
    received_at: datetime
    started: float
    """``time.perf_counter()`` when the request reached the handler's dependencies."""


@dataclass(frozen=True)
class Uploads:
    """The strips of a multipart request, in the order of their parts."""

    strips: list[ReceivedStrip]
    received_at: datetime
    started: float


async def read_upload(request: Request, *, limit: int) -> Upload:
    """The strip in the body: a bare image or raw buffer, or the first ``image`` part of a form.

    ``limit`` (``MAX_BODY_BYTES``) bounds a form's plain fields, which would otherwise be held
    to python-multipart's 1 MiB: a raw buffer sent as a plain field can be larger.
    """
    started, received_at = time.perf_counter(), datetime.now(UTC)
    kind = media_type(request.headers.get("content-type"))
    if kind not in MEDIA_TYPES and kind != MULTIPART:
        raise _unsupported(kind, (*MEDIA_TYPES, MULTIPART))
    if kind == MULTIPART:
        strip = (await _required_images(request, limit=limit))[0]
    else:
        strip = ReceivedStrip(kind, await _read_body(request))
    return Upload(strip, received_at, started)


async def read_uploads(request: Request, *, limit: int, max_images: int) -> Uploads:
    """Every ``image`` part of a multipart body, in order; at most ``max_images``."""
    started, received_at = time.perf_counter(), datetime.now(UTC)
    kind = media_type(request.headers.get("content-type"))
    if kind != MULTIPART:
        raise _unsupported(kind, (MULTIPART,))
    images = await _required_images(request, limit=limit)
    if len(images) > max_images:
        raise ApiError(
            422,
            "too_many_images",
            f"the body has {len(images)} {IMAGE_FIELD!r} parts; at most {max_images} are "
            "accepted in one request",
        )
    return Uploads(images, received_at, started)


async def _read_body(request: Request) -> bytes:
    try:
        return await request.body()
    except ClientDisconnect as error:
        raise _disconnected() from error


async def _read_images(request: Request, *, limit: int) -> list[ReceivedStrip]:
    """The ``image`` parts of a ``multipart/form-data`` body (RFC 7578), in order.

    Starlette parses the form with python-multipart. A part with a file name comes back as a
    file, with its Content-Type (none: ``application/octet-stream``). A part without one is a
    plain field, decoded as text with the body's charset: the parse is told latin-1, which maps
    each byte to one code point, so that such a part turns back into its exact bytes, taken as
    a raw buffer (a plain field's Content-Type is not kept: image parts need a file name).
    """
    latin1 = Request(_form_scope(request.scope), request.receive)
    try:
        form = await latin1.form(
            max_files=MAX_FORM_PARTS, max_fields=MAX_FORM_PARTS, max_part_size=limit
        )
    except MultiPartException as error:
        raise ApiError(
            400, "malformed_multipart", f"the multipart body is malformed: {error.message}"
        ) from error
    except ClientDisconnect as error:
        raise _disconnected() from error
    try:
        return [await _image(value) for name, value in form.multi_items() if name == IMAGE_FIELD]
    finally:
        await form.close()


async def _required_images(request: Request, *, limit: int) -> list[ReceivedStrip]:
    images = await _read_images(request, limit=limit)
    if not images:
        raise ApiError(422, "missing_field", f"the multipart body has no field {IMAGE_FIELD!r}")
    return images


async def _image(value: UploadFile | str) -> ReceivedStrip:
    if isinstance(value, str):
        return ReceivedStrip(RAW_MEDIA_TYPE, value.encode("latin-1"))
    return ReceivedStrip(media_type(value.content_type) or RAW_MEDIA_TYPE, await value.read())


def _form_scope(scope: Scope) -> Scope:
    """The request's scope declaring latin-1 (see ``_read_images``), without the app: then
    Starlette raises python-multipart's complaints as they are, not as an HTTP 400 of its own."""
    headers = [
        (name, value + b"; charset=latin-1" if name == b"content-type" else value)
        for name, value in scope["headers"]
    ]
    return {key: value for key, value in scope.items() if key != "app"} | {"headers": headers}


def _unsupported(kind: str, supported: tuple[str, ...]) -> UnsupportedMediaType:
    return UnsupportedMediaType(
        f"media type {kind or '(none)'!r} is not supported; send one of {', '.join(supported)}"
    )


def _disconnected() -> ApiError:
    return ApiError(400, "client_disconnected", "the client left before the body ended")
