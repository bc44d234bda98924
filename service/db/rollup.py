"""The hourly rollup behind the defect summary: per UTC hour, line and camera, the inspections
made (``inspection_hours``) and the defects found per class with their area (``defect_hours``).

Every inspection is counted in by ``count_inspection`` inside the transaction that writes it, so
the rollup and the inspections commit or roll back together. ``rebuild_rollup`` recounts it from
the inspections in one ``INSERT ... SELECT ... GROUP BY`` per table: migration 0004 fills it
that way, and so does the history benchmark after seeding by COPY. Both paths store the very
same hour value (a SQLite text timestamp included), so their rows meet on the same key.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Insert, case, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from service.db.models import Defect, DefectHour, Inspection, InspectionHour
from service.db.values import DefectFields, InspectionValues

NO_LINE = ""
"""The rollup's line key for inspections without a line (the API refuses empty line ids)."""

_KEY = ("hour", "line_id", "camera_id")


class _UtcHour(FunctionElement[datetime]):
    """The start of the UTC hour a timestamp falls in, stored exactly as the ORM stores it."""

    inherit_cache = True
    name = "utc_hour"


@compiles(_UtcHour, "postgresql")
def _utc_hour_postgres(element: _UtcHour, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"date_trunc('hour', ({column}) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"


@compiles(_UtcHour, "sqlite")
def _utc_hour_sqlite(element: _UtcHour, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLAlchemy writes SQLite datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff'; keys must match.
    column = compiler.process(element.clauses, **kw)
    return f"strftime('%Y-%m-%d %H:00:00.000000', {column})"


def hour_of(moment: datetime) -> datetime:
    """The start of the UTC hour ``moment`` (timezone-aware) falls in."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def line_key(line_id: str | None) -> str:
    return NO_LINE if line_id is None else line_id


def count_inspection(connection: Connection, row: InspectionValues) -> None:
    """Add ``row`` (already inserted) and its defects to the rollup in the connection's
    transaction.

    One upsert for the inspection and, if it has defects, one executemany for its classes;
    rows are locked in key order, so concurrent writers to the same hour cannot deadlock.
    """
    made, found = _upserts(connection.dialect.name)
    key = {
        "hour": hour_of(row.received_at),
        "line_id": line_key(row.line_id),
        "camera_id": row.camera_id,
    }
    connection.execute(made, {**key, "inspections": 1, "with_defect": int(row.has_defect)})
    classes = _classes(row.defects)
    if classes:
        connection.execute(
            found,
            [
                {**key, "class_id": class_id, "class_name": name, "defects": n, "area_px": area}
                for (class_id, name), (n, area) in sorted(classes.items())
            ],
        )


@functools.cache
def _upserts(dialect: str) -> tuple[Insert, Insert]:
    """The two rollup upserts for ``dialect``, built once: they add to the counts a row has."""
    inserts = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
    if dialect not in inserts:
        raise ValueError(f"no hourly rollup upsert for {dialect!r}; use one of {sorted(inserts)}")
    statements = []
    for table, key, sums in (
        (InspectionHour.__table__, _KEY, ("inspections", "with_defect")),
        (DefectHour.__table__, (*_KEY, "class_id", "class_name"), ("defects", "area_px")),
    ):
        upsert = inserts[dialect](table)
        added = {name: table.c[name] + upsert.excluded[name] for name in sums}
        statements.append(upsert.on_conflict_do_update(index_elements=key, set_=added))
    made, found = statements
    return made, found


def _classes(defects: Sequence[DefectFields]) -> dict[tuple[int, str], tuple[int, int]]:
    """(class id, class name) -> (defects, total area): one upsert row per key, as the rows may
    go out as one multi-row statement and Postgres refuses an upsert that touches a row twice."""
    counts: Counter[tuple[int, str]] = Counter()
    areas: Counter[tuple[int, str]] = Counter()
    for defect in defects:
        counts[defect.class_id, defect.class_name] += 1
        areas[defect.class_id, defect.class_name] += defect.area_px
    return {key: (counts[key], areas[key]) for key in counts}


def rebuild_rollup(connection: Connection) -> None:
    """Recount the whole rollup from the inspections and defects (in the caller's transaction)."""
    connection.execute(delete(InspectionHour))
    connection.execute(delete(DefectHour))
    hour = _UtcHour(Inspection.received_at)
    line = func.coalesce(Inspection.line_id, NO_LINE)
    keys = (hour, line, Inspection.camera_id)
    made = select(
        *keys, func.count(), func.sum(case((Inspection.has_defect, 1), else_=0))
    ).group_by(*keys)
    connection.execute(
        insert(InspectionHour).from_select(
            ["hour", "line_id", "camera_id", "inspections", "with_defect"], made
        )
    )
    found = (
        select(*keys, Defect.class_id, Defect.class_name, func.count(), func.sum(Defect.area_px))
        .join(Defect, Defect.inspection_id == Inspection.id)
        .group_by(*keys, Defect.class_id, Defect.class_name)
    )
    connection.execute(
        insert(DefectHour).from_select(
            ["hour", "line_id", "camera_id", "class_id", "class_name", "defects", "area_px"], found
        )
    )
