"""Data access for coils: the coils seen, with their strips and defects per class, and one
coil's strips along its length."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db.models import Defect, Inspection

MAX_STRIPS = 50_000
"""Most strips a coil's view reads: a coil of 2 km in 4 cm frames."""


@dataclass(frozen=True)
class CoilSummary:
    coil_id: str
    line_id: str | None
    strips: int
    first_received_at: datetime
    last_received_at: datetime
    defects: dict[str, int]
    """Class name -> strips with a defect of that class."""


def list_coils(
    session: Session,
    *,
    limit: int,
    line_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[CoilSummary]:
    """Coils with strips received in [since, until), the most recently seen first."""
    where = [Inspection.coil_id.is_not(None)]
    if line_id is not None:
        where.append(Inspection.line_id == line_id)
    if since is not None:
        where.append(Inspection.received_at >= since)
    if until is not None:
        where.append(Inspection.received_at < until)
    key = (Inspection.coil_id, Inspection.line_id)
    last_seen = func.max(Inspection.received_at)
    coils = session.execute(
        select(*key, func.count(), func.min(Inspection.received_at), last_seen)
        .where(*where)
        .group_by(*key)
        .order_by(last_seen.desc(), Inspection.coil_id)
        .limit(limit)
    ).all()
    ids = [row[0] for row in coils]
    counts: dict[tuple[str, str | None], dict[str, int]] = {}
    if ids:
        for coil_id, coil_line, name, found in session.execute(
            select(*key, Defect.class_name, func.count())
            .join(Defect, Defect.inspection_id == Inspection.id)
            .where(*where, Inspection.coil_id.in_(ids))
            .group_by(*key, Defect.class_name)
        ):
            counts.setdefault((coil_id, coil_line), {})[name] = found
    return [
        CoilSummary(
            coil_id=coil_id,
            line_id=coil_line,
            strips=strips,
            first_received_at=_utc(first),
            last_received_at=_utc(last),
            defects=dict(sorted(counts.get((coil_id, coil_line), {}).items())),
        )
        for coil_id, coil_line, strips, first, last in coils
    ]


def coil_strips(session: Session, *, coil_id: str, line_id: str | None = None) -> list[Inspection]:
    """The coil's strips along its length: by ``position_m``, and where positions are missing
    by capture (then receipt) time, after the positioned ones."""
    query = select(Inspection).where(Inspection.coil_id == coil_id)
    if line_id is not None:
        query = query.where(Inspection.line_id == line_id)
    rows = list(session.scalars(query.limit(MAX_STRIPS)))
    return sorted(rows, key=_along)


def _along(row: Inspection) -> tuple[int, float, datetime, datetime]:
    moment = row.captured_at or row.received_at
    return (row.position_m is None, row.position_m or 0.0, moment, row.received_at)


def _utc(moment: datetime) -> datetime:
    """Aggregates bypass the column type on SQLite: mark the naive UTC values they return."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
