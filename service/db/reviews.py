"""QA reviews: checked against the inspection they judge, stored, and read back as the
corrected masks that become training data."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service import rle
from service.db.filters import InspectionFilter
from service.db.models import Inspection, Review

Verdict = Literal["confirmed", "false_positive"]


class ReviewRejected(ValueError):
    """A review that does not fit its inspection; ``code`` is stable for the API."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_review(
    inspection: Inspection,
    verdicts: Mapping[int, Verdict],
    missed: Mapping[int, str],
    classes: set[int],
) -> None:
    """Every predicted defect needs a verdict, and only those have one; a missed defect is of
    one of ``classes``, not confirmed as predicted, with a non-empty RLE that fits the strip."""
    if unknown_classes := sorted(set(missed) - classes):
        raise ReviewRejected(
            "unknown_class", f"no defect class {unknown_classes[0]}; known: {sorted(classes)}"
        )
    predicted = {defect.class_id for defect in inspection.defects}
    unknown = sorted(set(verdicts) - predicted)
    if unknown:
        raise ReviewRejected(
            "defect_not_found",
            f"inspection {inspection.id} has no defect of class {unknown[0]} to judge "
            f"(its defects: {sorted(predicted) or 'none'})",
        )
    if unjudged := sorted(predicted - set(verdicts)):
        raise ReviewRejected(
            "verdict_missing", f"give a verdict for every defect; class {unjudged[0]} has none"
        )
    shape = (inspection.image_height, inspection.image_width)
    for class_id, encoded in missed.items():
        if verdicts.get(class_id) == "confirmed":
            raise ReviewRejected(
                "defect_already_found",
                f"class {class_id} was found and confirmed; mark it false_positive to replace "
                "its mask with the missed one",
            )
        try:
            if not rle.decode(encoded, shape).any():
                raise ValueError("the mask is empty")
        except ValueError as error:
            raise ReviewRejected(
                "invalid_rle", f"missed defect of class {class_id}: {error}"
            ) from None


def add_review(
    session: Session,
    *,
    inspection: Inspection,
    reviewer: str,
    reviewed_at: datetime,
    verdicts: Mapping[int, Verdict],
    missed: Mapping[int, str],
    classes: set[int],
) -> Review:
    """Check the review against ``inspection`` (``ReviewRejected``), store it and commit."""
    check_review(inspection, verdicts, missed, classes)
    review = Review(
        inspection_id=inspection.id,
        reviewer=reviewer,
        reviewed_at=reviewed_at,
        verdicts={str(k): v for k, v in sorted(verdicts.items())},
        missed={str(k): v for k, v in sorted(missed.items())},
    )
    session.add(review)
    session.commit()
    return review


def latest_review(session: Session, *, inspection_id: uuid.UUID) -> Review | None:
    query = select(Review).where(Review.inspection_id == inspection_id).order_by(Review.id.desc())
    return session.scalars(query.limit(1)).first()


def reviewed(session: Session, *, where: InspectionFilter) -> Iterator[tuple[Inspection, Review]]:
    """The filtered inspections that were reviewed, each with its newest review."""
    newest = select(func.max(Review.id).label("id")).group_by(Review.inspection_id).subquery()
    query = (
        select(Inspection, Review)
        .join(Review, Review.inspection_id == Inspection.id)
        .join(newest, newest.c.id == Review.id)
        .where(*where.conditions())
        .order_by(Inspection.received_at, Inspection.id)
    )
    for row in session.execute(query):
        inspection, review = row
        yield inspection, review


def corrected_masks(inspection: Inspection, review: Review) -> dict[int, str]:
    """Class id -> RLE after the review: confirmed predictions and missed defects."""
    masks = {
        d.class_id: d.encoded_pixels
        for d in inspection.defects
        if review.verdicts.get(str(d.class_id)) == "confirmed"
    }
    masks.update({int(k): v for k, v in review.missed.items()})
    return masks
