"""The inspection history as exported: read in a session of its own while it streams, and as a
Severstal submission CSV, one row per image and class (every class of the model version that
inspected it, empty ``EncodedPixels`` where it found nothing), ImageId ``<inspection_id>.png``:
the name the review dataset gives the image."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from sqlalchemy.orm import Session, sessionmaker

from service.data.severstal import masks_csv
from service.db import InspectionFilter
from service.db.export import InspectionRecord, stream_inspections

ClassesOf = Callable[[str, int], Mapping[int, str]]
"""The defect classes (id -> name) of a model version, given its name and number."""


def history(
    sessions: sessionmaker[Session], *, where: InspectionFilter
) -> Iterator[InspectionRecord]:
    """The filtered inspections, newest first, read as they are consumed: in a session of their
    own, since a request's session may be closed by the time its response streams."""
    with sessions() as session:
        yield from stream_inspections(session, where=where)


def history_csv(records: Iterable[InspectionRecord], classes_of: ClassesOf) -> Iterator[str]:
    """The records as Severstal CSV text (ImageId,ClassId,EncodedPixels), chunk by chunk."""
    return masks_csv(_every_class(records, classes_of))


def _every_class(
    records: Iterable[InspectionRecord], classes_of: ClassesOf
) -> Iterator[tuple[str, dict[int, str]]]:
    class_ids: dict[tuple[str, int], list[int]] = {}
    for record in records:
        version = (record.model_name, record.model_version)
        if version not in class_ids:
            class_ids[version] = sorted(classes_of(*version))
        found = {d.class_id: d.encoded_pixels for d in record.defects}
        masks = {class_id: found.get(class_id, "") for class_id in {*class_ids[version], *found}}
        yield f"{record.id}.png", masks
