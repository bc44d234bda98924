"""Every Prometheus metric of the service, defined once (prefix ``strip_inspection_``).

Labels are bounded (route template, method, status, model, version, defect class), never ids.
One uvicorn process serves, so the default registry is enough; several worker processes would
need prometheus-client's multiprocess mode.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

REQUESTS = Counter(
    "strip_inspection_http_requests_total",
    "HTTP requests by route template, method and status code.",
    ["route", "method", "status"],
)
REQUEST_DURATION = Histogram(
    "strip_inspection_http_request_duration_seconds",
    "Wall time from request to response, by route template and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0),
)
INFERENCE_DURATION = Histogram(
    "strip_inspection_inference_duration_seconds",
    "One model run (normalisation, ONNX Runtime, sigmoid), by model and version.",
    ["model", "version"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0),
)
IMAGES_INSPECTED = Counter(
    "strip_inspection_images_inspected_total",
    "Strips run through the model (idempotent replays are not counted), by model and version.",
    ["model", "version"],
)
DEFECTS = Counter(
    "strip_inspection_defects_total",
    "Defect masks reported, by defect class.",
    ["defect_class"],
)
LIVE_MODEL = Gauge(
    "strip_inspection_live_model_info",
    "The model version being served (value 1); no series while none is loaded.",
    ["model", "version", "alias"],
)


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    REQUESTS.labels(route, method, str(status)).inc()
    REQUEST_DURATION.labels(route, method).observe(seconds)


def observe_inference(model: str, version: int, seconds: float) -> None:
    INFERENCE_DURATION.labels(model, str(version)).observe(seconds)


def observe_inspection(model: str, version: int, defect_classes: Iterable[str]) -> None:
    IMAGES_INSPECTED.labels(model, str(version)).inc()
    for name in defect_classes:
        DEFECTS.labels(name).inc()


def set_live_model(model: str, version: int, alias: str) -> None:
    LIVE_MODEL.clear()
    LIVE_MODEL.labels(model, str(version), alias).set(1)


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
