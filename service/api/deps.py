"""What handlers depend on, as named types: override one function here to change it in tests.

Dependencies that only look something up are ``async def``: FastAPI runs a plain ``def``
dependency in a worker thread, one thread hop per dependency per request.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.api.auth import KeyRing
from service.api.body import Upload, Uploads, read_upload, read_uploads
from service.api.errors import ApiError
from service.api.schemas import FrameQuery
from service.config import ApiKey, Role, Settings
from service.db.migrate import SchemaGate
from service.events.line import LineEvents
from service.images import ImageArchive
from service.inference.inspector import Inspector, ModelSlot
from service.inspection import Recording
from service.spool import ResultRecorder
from service.store import ModelStore
from service.store.store import StoreError


@dataclass(frozen=True)
class Services:
    """Everything one app instance holds, built by ``create_app`` (cheap: nothing is opened)."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ModelStore
    models: ModelSlot
    keys: KeyRing
    results: ResultRecorder
    images: ImageArchive
    schema: SchemaGate
    events: LineEvents | None = None
    """Line events (MQTT, alarm rules); None when neither is configured."""

    def classes_of(self, name: str, version: int) -> dict[int, str]:
        """The defect classes (id -> name) of a model version, else of the live model, else
        none (a version removed from the store while no model is loaded)."""
        try:
            return {spec.id: spec.name for spec in self.store.manifest(name, version).classes}
        except StoreError:
            inspector = self.models.inspector
            return {} if inspector is None else {c.id: c.name for c in inspector.manifest.classes}


async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


@dataclass(frozen=True)
class RequireRole:
    """Dependency: the request's API key, which must grant ``role`` (None while the API is open).

    Routers declare it (``APIRouter(dependencies=[ReadRole])``): FastAPI solves those before a
    handler's own dependencies, so a caller without the role is refused before its body is
    read. Two checks of one role compare equal, and FastAPI solves equal dependencies once per
    request, so a handler that also takes the key (``ReaderKeyDep``) has it checked once. The
    key's name goes to ``request.state.api_key`` for the request log.
    """

    role: Role

    async def __call__(self, request: Request, services: ServicesDep) -> ApiKey | None:
        key = services.keys.authorize(request.headers.get("authorization"), self.role)
        if key is not None:
            request.state.api_key = key.name
        return key


InspectRole = Depends(RequireRole("inspect"))
ReadRole = Depends(RequireRole("read"))
AdminRole = Depends(RequireRole("admin"))
ReaderKeyDep = Annotated[ApiKey | None, Depends(RequireRole("read"))]
"""The key of a caller with the ``read`` role, for a handler that records who it was."""


def get_session(services: ServicesDep) -> Iterator[Session]:
    with services.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


async def get_model(services: ServicesDep) -> Inspector:
    """The live model; 503 while none is loaded."""
    inspector = services.models.inspector
    if inspector is None:
        raise ApiError(503, "model_unavailable", f"no model is loaded: {services.models.problem}")
    return inspector


ModelDep = Annotated[Inspector, Depends(get_model)]


async def get_recording(request: Request) -> Recording:
    """Where inspected strips are recorded (set up by the lifespan)."""
    return request.app.state.recording


RecordingDep = Annotated[Recording, Depends(get_recording)]


async def get_upload(request: Request, services: ServicesDep) -> Upload:
    return await read_upload(request, limit=services.settings.max_body_bytes)


UploadDep = Annotated[Upload, Depends(get_upload)]

MAX_BATCH_IMAGES = 32
"""Most strips one request to /v1/inspect/batch may carry."""


async def get_uploads(request: Request, services: ServicesDep) -> Uploads:
    limit = services.settings.max_body_bytes
    return await read_uploads(request, limit=limit, max_images=MAX_BATCH_IMAGES)


UploadsDep = Annotated[Uploads, Depends(get_uploads)]


async def get_classes(services: ServicesDep) -> dict[int, str] | None:
    """The live model's defect classes (id -> name); None while no model is loaded."""
    inspector = services.models.inspector
    if inspector is None:
        return None
    return {spec.id: spec.name for spec in inspector.manifest.classes}


ClassesDep = Annotated[dict[int, str] | None, Depends(get_classes)]
FrameDep = Annotated[FrameQuery, Query()]
