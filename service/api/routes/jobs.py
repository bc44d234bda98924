"""Compression jobs (admin): queue one, follow it, cancel it, read its report."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy.orm import Session

from service.api.deps import AdminRole, ServicesDep, SessionDep
from service.api.errors import ApiError
from service.api.schemas import ErrorOut, JobOut, JobsOut
from service.db.models import Job
from service.jobs.queue import (
    JobFinished,
    JobNotFound,
    JobState,
    enqueue,
    get_job,
    list_events,
    list_jobs,
    request_cancel,
)
from service.jobs.request import JobRejected, JobRequest, check_request
from service.store.store import validate_name

router = APIRouter(prefix="/v1/admin/jobs", tags=["jobs"], dependencies=[AdminRole])
NOT_FOUND = {404: {"model": ErrorOut}}


@router.post("", status_code=202, response_model=JobOut, responses={422: {"model": ErrorOut}})
def create_job(
    request: JobRequest,
    session: SessionDep,
    services: ServicesDep,
    response: Response,
) -> JobOut:
    """Queue a compression job; a worker takes it up (422 for what no worker could run)."""
    validate_name(request.source.model, "model")
    if request.source.alias is not None:
        validate_name(request.source.alias, "alias")
    try:
        version = check_request(
            request, store=services.store, data_root=services.settings.data_root
        )
    except JobRejected as error:
        raise ApiError(422, error.code, str(error)) from error
    job = enqueue(
        session,
        request=request.model_dump(mode="json"),
        model_name=request.source.model,
        source_version=version,
        max_attempts=services.settings.job_max_attempts,
        now=datetime.now(UTC),
    )
    response.headers["Location"] = f"/v1/admin/jobs/{job.id}"
    return JobOut.from_row(job, list_events(session, job_id=job.id))


@router.get("", response_model=JobsOut)
def jobs(
    session: SessionDep,
    state: JobState | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JobsOut:
    """Jobs, newest first, optionally of one state."""
    return JobsOut(
        items=[JobOut.from_row(job) for job in list_jobs(session, state=state, limit=limit)]
    )


@router.get("/{job_id}", response_model=JobOut, responses=NOT_FOUND)
def job(job_id: uuid.UUID, session: SessionDep) -> JobOut:
    """A job: state, progress, event log, result or error."""
    return JobOut.from_row(_job(session, job_id), list_events(session, job_id=job_id))


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    responses={202: {"model": JobOut}, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}},
)
def cancel(job_id: uuid.UUID, session: SessionDep, response: Response) -> JobOut:
    """Cancel a job: a queued one at once (200); a running one stops at its next batch (202)."""
    try:
        job = request_cancel(session, job_id=job_id, now=datetime.now(UTC))
    except JobNotFound as error:
        raise ApiError(404, "job_not_found", str(error)) from error
    except JobFinished as error:
        raise ApiError(409, "job_finished", str(error)) from error
    if job.state == "running":
        response.status_code = 202
    return JobOut.from_row(job, list_events(session, job_id=job_id))


@router.get("/{job_id}/report", responses=NOT_FOUND)
def report(job_id: uuid.UUID, session: SessionDep) -> dict[str, object]:
    """The job's report: source and every step's MACs, params, Dice; the kept step."""
    job = _job(session, job_id)
    if job.report is None:
        raise _no_report(job)
    return job.report


@router.get(
    "/{job_id}/report.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **NOT_FOUND},
)
def report_plot(job_id: uuid.UUID, session: SessionDep) -> Response:
    """Validation Dice against MACs over the steps, the source as the first point."""
    job = _job(session, job_id)
    if job.report_png is None:
        raise _no_report(job)
    return Response(job.report_png, media_type="image/png")


def _job(session: Session, job_id: uuid.UUID) -> Job:
    job = get_job(session, job_id=job_id)
    if job is None:
        raise ApiError(404, "job_not_found", f"there is no job {job_id}")
    return job


def _no_report(job: Job) -> ApiError:
    return ApiError(
        404,
        "report_not_ready",
        f"job {job.id} is {job.state} and has no report: a job writes it when it runs to its end",
    )
