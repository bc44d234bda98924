"""GET /v1/inspections/{id}/overlay.png: the strip with its defect masks and a legend."""

from __future__ import annotations

import logging
import uuid

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from service.api.deps import ReadRole, Services, ServicesDep, SessionDep
from service.api.errors import ApiError
from service.api.schemas import ErrorOut
from service.db import Inspection, get_inspection
from service.images import render_overlay
from service.inference.decode import ImageRejected, decode_strip

logger = logging.getLogger(__name__)
router = APIRouter(tags=["inspections"], dependencies=[ReadRole])

STRIP_HEADER = "X-Strip-Image"
"""``kept`` when the overlay is drawn on the received strip, ``missing`` when on neutral grey."""


@router.get(
    "/v1/inspections/{inspection_id}/overlay.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, 404: {"model": ErrorOut}},
)
async def overlay(inspection_id: uuid.UUID, session: SessionDep, services: ServicesDep) -> Response:
    """The strip with each class's mask in its own colour, and a legend."""
    row = await run_in_threadpool(get_inspection, session, inspection_id=inspection_id)
    if row is None:
        raise ApiError(404, "inspection_not_found", f"no inspection {inspection_id}")
    png, kept = await run_in_threadpool(_draw, services, row)
    return Response(png, media_type="image/png", headers={STRIP_HEADER: kept})


def _draw(services: Services, row: Inspection) -> tuple[bytes, str]:
    shape = (row.image_height, row.image_width)
    strip = None
    image = services.images.find(inspection_id=row.id, received_at=row.received_at)
    if image is not None:
        try:
            strip = decode_strip(image.read(), image.content_type, height=shape[0], width=shape[1])
        except (OSError, ImageRejected) as error:  # deleted meanwhile, or damaged on disk
            logger.warning("kept strip %s unusable: %s", image.path, error)
    masks = {defect.class_id: defect.encoded_pixels for defect in row.defects}
    classes = services.classes_of(row.model_name, row.model_version)
    png = render_overlay(strip, shape, masks, classes)
    return png, "missing" if strip is None else "kept"
