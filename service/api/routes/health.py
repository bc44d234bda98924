"""Probes and metrics: /healthz (alive), /readyz (model warm, database usable), /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from service.api.deps import ServicesDep
from service.api.errors import error_response
from service.db import ping
from service.metrics import exposition

router = APIRouter(tags=["ops"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(services: ServicesDep) -> JSONResponse:
    """Ready when the model is loaded and warmed and the database answers and is migrated."""
    problems = []
    inspector = services.models.inspector
    if inspector is None or not inspector.warmed:
        problems.append(f"model: {services.models.problem or 'not warmed up'}")
    try:
        ping(services.engine)
    except Exception as error:  # any failure means not ready; the reason goes to the caller
        problems.append(f"database: {type(error).__name__}: {str(error).splitlines()[0]}")
    if problems:
        return error_response(503, "not_ready", "; ".join(problems))
    assert inspector is not None
    model = {"name": inspector.name, "version": inspector.version}
    return JSONResponse({"status": "ready", "model": model, "database": "ok"})


@router.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition."""
    body, content_type = exposition()
    return Response(body, media_type=content_type)
