"""The reviewed strips as a training set: which reviewed inspections go in (those whose strip is
still kept) and with which masks (the predictions the review confirmed, and the defects it
added)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from service.db import InspectionFilter
from service.db.reviews import corrected_masks, reviewed
from service.images import ImageArchive
from service.images.dataset import TrainingImage


@dataclass(frozen=True)
class ReviewDataset:
    images: list[TrainingImage]
    skipped: int
    """Reviewed inspections left out because their strip is no longer kept."""


def review_dataset(
    session: Session, archive: ImageArchive, *, where: InspectionFilter
) -> ReviewDataset:
    """The filtered reviewed inspections, oldest first, each with its newest review's masks."""
    images, skipped = [], 0
    for inspection, review in reviewed(session, where=where):
        kept = archive.find(inspection_id=inspection.id, received_at=inspection.received_at)
        if kept is None:
            skipped += 1
            continue
        shape = (inspection.image_height, inspection.image_width)
        masks = corrected_masks(inspection, review)
        images.append(TrainingImage(str(inspection.id), kept, shape, masks))
    return ReviewDataset(images, skipped)
