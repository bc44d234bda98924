"""The FastAPI application factory and its lifespan: the schema checked (SQLite migrated), the
live model loaded and warmed, the served alias followed."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from service.api.auth import KeyRing
from service.api.body_limit import BodyLimit
from service.api.deps import Services
from service.api.errors import install_error_handlers
from service.api.request_log import RequestLog
from service.api.routes import (
    alarms,
    coils,
    defects,
    export,
    health,
    inspect,
    inspections,
    jobs,
    models,
    overlay,
    reviews,
    ui,
)
from service.config import Settings, get_settings
from service.db import make_engine, make_session_factory
from service.db.migrate import SchemaGate, migrate_on_start
from service.events.line import LineEvents
from service.events.mqtt import BrokerAddress, MqttPublisher
from service.images import ImageArchive
from service.inference.follow import AliasFollower
from service.inference.inspector import ModelSlot, ServingOptions
from service.inspection import Recording
from service.metrics import JOB_LABELS
from service.spool import ResultRecorder, Spool
from service.spool.records import key_of
from service.store import ModelStore
from service.threads import name_os_thread


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; nothing is opened or loaded until its lifespan starts."""
    settings = settings or get_settings()
    JOB_LABELS.worker_names = settings.metrics_worker_names
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    store = ModelStore(settings.model_store)
    events = line_events(settings, engine)
    services = Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        store=store,
        models=ModelSlot(
            store,
            settings.model_name,
            settings.model_alias,
            serving_options(settings),
        ),
        keys=KeyRing(settings.api_keys),
        results=ResultRecorder(
            engine,
            sessions,
            Spool(settings.spool_dir, key_of),
            replay_interval_s=settings.spool_replay_interval_s,
            on_recorded=None if events is None else events.inspected,
        ),
        images=ImageArchive(
            settings.image_dir,
            keep=settings.keep_images,
            max_age=timedelta(days=settings.image_max_age_days),
            max_bytes=settings.image_max_bytes,
        ),
        schema=SchemaGate(engine),
        events=events,
    )
    app = FastAPI(
        title="Strip inspection",
        summary="Steel strip images in, RLE defect masks out, every result recorded.",
        version="0.1.0",
        lifespan=_lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(RequestLog)  # outermost: it logs the limit's refusals too
    # export before inspections: /v1/inspections/export.csv is not an inspection id.
    for module in (
        inspect, export, inspections, overlay, reviews, defects, alarms, coils, models, health, ui,
    ):  # fmt: skip
        app.include_router(module.router)
    app.include_router(jobs.router)
    app.mount("/ui/static", ui.assets, name="ui-static")
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    services: Services = app.state.services
    settings = services.settings
    await run_in_threadpool(
        migrate_on_start, settings.database_url, always=settings.migrate_on_start
    )
    await run_in_threadpool(services.schema.start)
    postprocessing = ThreadPoolExecutor(
        postprocess_threads(settings), thread_name_prefix="postprocess", initializer=name_os_thread
    )
    app.state.recording = Recording(services.results, services.images, postprocessing)
    if services.events is not None:
        services.events.start()
    await run_in_threadpool(services.results.start)
    if services.images.policy != "none":
        await run_in_threadpool(services.images.open)
    await run_in_threadpool(services.models.load)
    follower = AliasFollower(services.models, settings.model_alias_poll_s)
    follower.start()
    try:
        yield
    finally:
        await follower.stop()
        services.models.close()
        await run_in_threadpool(postprocessing.shutdown)  # the strips in hand get recorded
        await run_in_threadpool(services.schema.stop)
        await run_in_threadpool(services.results.stop)
        if services.events is not None:
            await run_in_threadpool(services.events.stop)
        await run_in_threadpool(services.images.close)
        services.engine.dispose()


def line_events(settings: Settings, engine: Engine) -> LineEvents | None:
    """The MQTT publisher and alarm rules the settings ask for; None for neither."""
    if settings.mqtt_url is None and not settings.alarm_rules:
        return None
    publisher = None
    if settings.mqtt_url is not None:
        address = BrokerAddress.parse(settings.mqtt_url)
        if settings.mqtt_username is not None:
            address = replace(address, username=settings.mqtt_username)
        if settings.mqtt_password is not None:
            address = replace(address, password=settings.mqtt_password)
        client_id = (
            settings.mqtt_client_id or f"strip-inspection-{socket.gethostname()}-{os.getpid()}"
        )
        publisher = MqttPublisher(
            address,
            client_id=client_id,
            qos=settings.mqtt_qos,
            outbox_size=settings.mqtt_outbox_size,
        )
    return LineEvents(
        engine=engine,
        rules=settings.alarm_rules,
        publisher=publisher,
        topic_prefix=settings.mqtt_topic_prefix,
    )


def postprocess_threads(settings: Settings) -> int:
    """How many strips are post-processed and recorded at once (``POSTPROCESS_THREADS``)."""
    return settings.postprocess_threads or max(1, (os.cpu_count() or 1) // 2)


def serving_options(settings: Settings) -> ServingOptions:
    return ServingOptions(
        providers=settings.onnx_providers,
        threads=settings.onnx_threads or None,
        spinning=settings.onnx_spinning,
        max_batch=settings.max_batch,
        max_wait_ms=settings.max_wait_ms,
        runs=settings.session_runs,
        warmup_runs=settings.warmup_runs,
    )
