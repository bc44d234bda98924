"""Probes and metrics: /healthz (alive), /readyz (model warm, results keepable), /metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from service.api.deps import ServicesDep
from service.jobs.stats import refresh_job_metrics
from service.metrics import exposition

router = APIRouter(tags=["ops"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(services: ServicesDep) -> JSONResponse:
    """Ready when the model is loaded and warm, and results can be kept: in the database, or
    else in the local spool (from which they are replayed once the database is back)."""
    inspector, results = services.models.inspector, services.results
    warm = inspector if inspector is not None and inspector.warmed else None
    database, spool = results.database_problem(), results.spool.problem()
    body: dict[str, Any] = {
        "status": "ready",
        "model": None if warm is None else {"name": warm.name, "version": warm.version},
        "database": _state("reachable", database),
        "spool": {**_state("writable", spool), "pending": results.spool.pending},
        "line_events": None if services.events is None else services.events.status(),
    }
    problems = [] if warm else [f"model: {services.models.problem or 'not warmed up'}"]
    if database and spool:
        problems.append(f"results cannot be kept: database: {database}; spool: {spool}")
    if not problems:
        return JSONResponse(body)
    body["status"] = "not_ready"
    body["error"] = {"code": "not_ready", "message": "; ".join(problems)}
    return JSONResponse(body, status_code=503)


def _state(name: str, problem: str | None) -> dict[str, Any]:
    return {name: True} if problem is None else {name: False, "problem": problem}


@router.get("/metrics")
def metrics(services: ServicesDep) -> Response:
    """Prometheus text exposition (job metrics read from the database now)."""
    refresh_job_metrics(services.sessions)
    body, content_type = exposition()
    return Response(body, media_type=content_type)
