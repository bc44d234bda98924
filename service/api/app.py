"""The FastAPI application factory and its lifespan (load and warm the live model)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from service.api.deps import Services
from service.api.errors import install_error_handlers
from service.api.middleware import RequestMetrics
from service.api.routes import health, inspect, inspections, models
from service.config import Settings, get_settings
from service.db import make_engine, make_session_factory
from service.inference.inspector import Inspector, ModelSlot
from service.metrics import set_live_model
from service.store import ModelStore

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; nothing is opened or loaded until its lifespan starts."""
    settings = settings or get_settings()
    engine = make_engine(settings.database_url)
    services = Services(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        store=ModelStore(settings.model_store),
        models=ModelSlot(),
    )
    app = FastAPI(
        title="Strip inspection",
        summary="Steel strip images in, RLE defect masks out, every result recorded.",
        version="0.1.0",
        lifespan=_lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    app.add_middleware(RequestMetrics)
    for module in (inspect, inspections, models, health):
        app.include_router(module.router)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    services: Services = app.state.services
    await run_in_threadpool(load_live_model, services)
    try:
        yield
    finally:
        services.engine.dispose()


def load_live_model(services: Services) -> None:
    """Load, verify and warm the configured model and alias, then make it live.

    A failure leaves the service up but not ready (/readyz says why, /v1/inspect answers 503),
    so that probes and operators can see the reason instead of a crash loop.
    """
    settings = services.settings
    try:
        inspector = Inspector.load(
            services.store,
            settings.model_name,
            settings.model_alias,
            providers=settings.onnx_providers,
            threads=settings.onnx_threads or None,
            warmup_runs=settings.warmup_runs,
        )
    except Exception as error:  # any load failure: keep serving probes, report the reason
        problem = (
            f"cannot load {settings.model_name}@{settings.model_alias} "
            f"from {settings.model_store}: {error}"
        )
        services.models.fail(problem)
        logger.error(problem)
        return
    services.models.swap(inspector)
    set_live_model(inspector.name, inspector.version, settings.model_alias)
    logger.info(
        "serving %s v%d (%s) on %s",
        inspector.name,
        inspector.version,
        settings.model_alias,
        ", ".join(inspector.segmenter.providers),
    )
