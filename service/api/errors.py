"""One JSON error shape for every failure: ``{"error": {"code": ..., "message": ...}}``.

Codes are stable and machine-readable; messages are sentences for a person. Domain errors
(image rejections, bad cursors) are mapped to statuses here, so the domain stays free of HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.db import InvalidCursor
from service.db.reviews import ReviewRejected
from service.inference.decode import (
    EmptyBody,
    ImageRejected,
    ImageTooLarge,
    UndecodableImage,
    UnsupportedMediaType,
)
from service.spool import ResultRefused, ResultsUnavailable
from service.store import InvalidNameError

logger = logging.getLogger(__name__)

IMAGE_STATUS: dict[type[ImageRejected], int] = {
    EmptyBody: 400,
    UndecodableImage: 400,
    ImageTooLarge: 413,
    UnsupportedMediaType: 415,
}
"""Status of each image rejection; any other (wrong size, buffer length, pixel mode) is 422."""

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    503: "unavailable",
}


class ApiError(Exception):
    """An error the HTTP layer answers directly with ``status`` and a stable ``code``."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


async def _api_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return error_response(error.status, error.code, error.message, error.headers)


async def _image_rejected(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ImageRejected)
    return error_response(IMAGE_STATUS.get(type(error), 422), error.code, str(error))


async def _invalid_cursor(_: Request, error: Exception) -> JSONResponse:
    return error_response(422, "invalid_cursor", str(error))


async def _review_rejected(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ReviewRejected)
    return error_response(422, error.code, str(error))


async def _invalid_name(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, InvalidNameError)
    return error_response(422, error.code, str(error))


async def _validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    first = error.errors()[0]
    where, *path = first.get("loc", ("request",))
    name = ".".join(str(part) for part in path) or where
    if first.get("type") == "missing":
        return error_response(422, "missing_parameter", f"{where} parameter {name!r} is required")
    if first.get("type") == "extra_forbidden":
        return error_response(422, "unknown_parameter", f"unknown {where} parameter {name!r}")
    message = f"{where} parameter {name!r}: {first.get('msg', 'invalid value')}"
    return error_response(422, "invalid_parameter", message)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    message = str(error.detail)
    if error.status_code == 404 and message == "Not Found":
        message = f"no such resource: {request.method} {request.url.path}"
    elif error.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    code = HTTP_CODES.get(error.status_code, f"http_{error.status_code}")
    return error_response(error.status_code, code, message, error.headers)


async def _database_unavailable(_: Request, error: Exception) -> JSONResponse:
    logger.error("database unavailable: %s", error)
    return error_response(503, "database_unavailable", "the results database is unavailable")


async def _results_unavailable(_: Request, error: Exception) -> JSONResponse:
    return error_response(503, "results_unavailable", str(error))


async def _result_refused(_: Request, error: Exception) -> JSONResponse:
    return error_response(500, "result_refused", f"{error}; it was logged and not recorded")


async def _unexpected(_: Request, error: Exception) -> JSONResponse:
    logger.exception("unhandled error", exc_info=error)
    return error_response(500, "internal_error", "an unexpected error occurred; it was logged")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(ImageRejected, _image_rejected)
    app.add_exception_handler(InvalidCursor, _invalid_cursor)
    app.add_exception_handler(ReviewRejected, _review_rejected)
    app.add_exception_handler(InvalidNameError, _invalid_name)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(ResultsUnavailable, _results_unavailable)
    app.add_exception_handler(ResultRefused, _result_refused)
    app.add_exception_handler(Exception, _unexpected)
