"""What handlers depend on, as named types: override one function here to change it in tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.api.body import Upload, read_upload
from service.api.errors import ApiError
from service.api.schemas import FrameQuery
from service.config import Settings
from service.inference.inspector import Inspector, ModelSlot
from service.store import ModelStore


@dataclass(frozen=True)
class Services:
    """Everything one app instance holds, built by ``create_app`` (cheap: nothing is opened)."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ModelStore
    models: ModelSlot


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    with services.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_model(services: ServicesDep) -> Inspector:
    """The live model; 503 while none is loaded."""
    inspector = services.models.inspector
    if inspector is None:
        raise ApiError(503, "model_unavailable", f"no model is loaded: {services.models.problem}")
    return inspector


ModelDep = Annotated[Inspector, Depends(get_model)]


async def get_upload(request: Request, services: ServicesDep) -> Upload:
    return await read_upload(request, limit=services.settings.max_body_bytes)


UploadDep = Annotated[Upload, Depends(get_upload)]
FrameDep = Annotated[FrameQuery, Query()]
