"""Probes and metrics: /healthz (alive), /readyz (schema at head, model warm, results
keepable), /metrics.

The probes and /metrics need no key. /readyz shows its details (paths, the broker's address,
database errors) only to a caller with a valid key of any role, or to everyone while the API
is open (no keys: loopback only); anyone else learns ready or not, and why in one word.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from service.api.auth import KeyRing
from service.api.deps import ServicesDep
from service.jobs.stats import refresh_job_metrics
from service.metrics import exposition

router = APIRouter(tags=["ops"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request, services: ServicesDep) -> JSONResponse:
    """Ready when the database's schema is the one this code needs, the model is loaded and
    warm, and results can be kept: in the database, or else in the local spool (from which they
    are replayed once the database is back)."""
    inspector, results = services.models.inspector, services.results
    warm = inspector if inspector is not None and inspector.warmed else None
    database, spool = results.database_problem(), results.spool.problem()
    problems: dict[str, str] = {}
    """What is wrong, exactly, under the one word that says it, in the order checked."""
    if services.schema.problem:
        problems["schema"] = f"schema: {services.schema.problem}"
    if not warm:
        problems["model"] = f"model: {services.models.problem or 'not warmed up'}"
    if database and spool:
        problems["results"] = f"results cannot be kept: database: {database}; spool: {spool}"
    body = _verdict(problems)
    if _shows_details(request, services.keys):
        body |= {
            "model": None if warm is None else services.models.status(),
            "database": _state("reachable", database),
            "schema": services.schema.status(),
            "spool": {**_state("writable", spool), "pending": results.spool.pending},
            "line_events": None if services.events is None else services.events.status(),
        }
        if problems:
            body["error"] = _not_ready(next(iter(problems)), "; ".join(problems.values()))
    return JSONResponse(body, status_code=503 if problems else 200)


def _verdict(problems: dict[str, str]) -> dict[str, Any]:
    """What anyone may know: ready or not, and why in one word."""
    if not problems:
        return {"status": "ready"}
    reason = next(iter(problems))
    message = f"not ready ({reason}); a caller with an API key sees the details"
    return {"status": "not_ready", "reason": reason, "error": _not_ready(reason, message)}


def _shows_details(request: Request, keys: KeyRing) -> bool:
    return keys.open or keys.holder(request.headers.get("authorization")) is not None


def _not_ready(reason: str, message: str) -> dict[str, str]:
    """The error: ``schema_out_of_date`` while the schema is the first problem (an operator's
    command fixes it), else ``not_ready``."""
    return {"code": "schema_out_of_date" if reason == "schema" else "not_ready", "message": message}


def _state(name: str, problem: str | None) -> dict[str, Any]:
    return {name: True} if problem is None else {name: False, "problem": problem}


@router.get("/metrics")
def metrics(services: ServicesDep) -> Response:
    """Prometheus text exposition (job metrics read from the database now)."""
    refresh_job_metrics(services.sessions)
    body, content_type = exposition()
    return Response(body, media_type=content_type)
