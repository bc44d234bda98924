"""A coil as the line sees it: its strips along its length with their defects, counts per
class, suspected roll marks, and its map."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from service.db.coils import coil_strips
from service.db.models import Inspection
from service.events.coil_map import MappedDefect, MappedStrip, render_coil_map
from service.events.roll_marks import RollMark, find_roll_marks


@dataclass(frozen=True)
class CoilView:
    coil_id: str
    line_id: str | None
    strips: Sequence[Inspection]
    counts: dict[str, int]
    """Class name -> strips with a defect of that class."""
    roll_marks: Sequence[RollMark]

    @property
    def positioned(self) -> bool:
        """Whether every strip has a position along the coil (else the map uses slots)."""
        return all(strip.position_m is not None for strip in self.strips)


def coil_view(session: Session, *, coil_id: str, line_id: str | None = None) -> CoilView | None:
    """The coil's strips in order along it, or None when no strip of it was recorded."""
    strips = coil_strips(session, coil_id=coil_id, line_id=line_id)
    if not strips:
        return None
    counts = Counter(defect.class_name for strip in strips for defect in strip.defects)
    positioned = [
        (defect.class_id, strip.position_m)
        for strip in strips
        if strip.position_m is not None
        for defect in strip.defects
    ]
    lines = {strip.line_id for strip in strips}
    return CoilView(
        coil_id=coil_id,
        line_id=line_id if line_id is not None else (lines.pop() if len(lines) == 1 else None),
        strips=strips,
        counts=dict(sorted(counts.items())),
        roll_marks=find_roll_marks(positioned),
    )


def coil_map_png(view: CoilView, classes: Mapping[int, str]) -> bytes:
    """The map of ``view``; ``classes`` (id -> name) are listed in its legend, with any class
    the strips carry that the model no longer names."""
    mapped = []
    names = dict(classes)
    for slot, strip in enumerate(view.strips):
        along = strip.position_m if view.positioned else float(slot)
        defects = []
        for defect in strip.defects:
            names.setdefault(defect.class_id, defect.class_name)
            width = max(1, strip.image_width)
            across = (defect.bbox_x_min / width, (defect.bbox_x_max + 1) / width)
            defects.append(MappedDefect(defect.class_id, across))
        mapped.append(MappedStrip(along=float(along or 0.0), defects=defects))
    return render_coil_map(
        view.coil_id,
        mapped,
        names,
        in_metres=view.positioned,
        roll_marks=view.roll_marks if view.positioned else (),
    )
