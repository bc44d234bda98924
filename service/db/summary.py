"""Defect trends: counts and defect area per class by time bucket, optionally per line or camera.

Buckets are UTC clock hours or days, computed by the database (``date_trunc`` on Postgres,
``strftime`` on SQLite) so only the aggregates leave it; both give the same answers.

A summary filtered by no more than line, camera and range reads its whole UTC hours from the
hourly rollup (service/db/rollup.py) and only the partial hours at the range's ends from the
inspections; one outer aggregate adds the two up, so the answer is the one the inspections
alone give. Any other filter (coil, class, area, has_defect) reads the inspections.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal, get_args

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    Subquery,
    case,
    func,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

from service.db.filters import InspectionFilter
from service.db.models import Defect, DefectHour, Inspection, InspectionHour
from service.db.rollup import NO_LINE, hour_of

Bucket = Literal["hour", "day"]
GroupBy = Literal["line", "camera"]
BUCKETS: tuple[Bucket, ...] = get_args(Bucket)
_SQLITE_FORMATS = {"hour": "%Y-%m-%d %H:00:00", "day": "%Y-%m-%d 00:00:00"}
_GROUP_COLUMNS = {"line": "line_id", "camera": "camera_id"}


class _BucketStart(FunctionElement[Any]):
    """The start of the UTC hour or day a timestamp falls in."""

    # The unit is part of the statement cache key: without it a day summary reused the SQL
    # compiled for an hour summary of the same shape.
    _traverse_internals: ClassVar[list[tuple[str, InternalTraversal]]] = [
        *FunctionElement._traverse_internals,
        ("bucket", InternalTraversal.dp_string),
    ]
    inherit_cache = True
    name = "bucket_start"

    def __init__(self, column: ColumnElement[datetime], bucket: Bucket) -> None:
        if bucket not in BUCKETS:
            raise ValueError(f"unknown bucket {bucket!r}; use one of {BUCKETS}")
        self.bucket = bucket
        super().__init__(column)


@compiles(_BucketStart, "postgresql")
def _bucket_postgres(element: _BucketStart, compiler: SQLCompiler, **kw: Any) -> str:
    # The unit is rendered, not bound: GROUP BY must see the very same expression as SELECT.
    column = compiler.process(element.clauses, **kw)
    return f"date_trunc('{element.bucket}', ({column}) AT TIME ZONE 'UTC')"


@compiles(_BucketStart, "sqlite")
def _bucket_sqlite(element: _BucketStart, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"strftime('{_SQLITE_FORMATS[element.bucket]}', {column})"


@dataclass(frozen=True)
class ClassBucket:
    start: datetime
    group: str | None
    class_id: int
    class_name: str
    defects: int
    area_px: int


@dataclass(frozen=True)
class InspectionBucket:
    start: datetime
    group: str | None
    inspections: int
    with_defect: int


@dataclass(frozen=True)
class Summary:
    classes: list[ClassBucket]
    inspections: list[InspectionBucket]


_ROLLUP_FILTERS = frozenset({"line_id", "camera_id", "since", "until"})
"""The filters the hourly rollup can answer; any other one set means reading the inspections."""
_ONE = literal_column("1", Integer)


@dataclass(frozen=True)
class _Sources:
    """Where a summary's rows come from: the rollup's hours matching ``hours`` (whose range is
    whole hours), unless None, and the inspections matching each filter of ``raw``."""

    hours: InspectionFilter | None
    raw: list[InspectionFilter]


def defect_summary(
    session: Session,
    *,
    bucket: Bucket,
    where: InspectionFilter,
    group_by: GroupBy | None = None,
    use_rollup: bool = True,
) -> Summary:
    """Per bucket (and group): defects and their area per class, and inspections made.

    ``use_rollup=False`` reads only the inspections: the reference the rollup is tested against.
    """
    sources = _sources(where) if use_rollup else _Sources(hours=None, raw=[where])
    grouped = group_by is not None
    classes = []
    for row in session.execute(_per_class(sources, bucket, group_by)):
        group = row[1] if grouped else None
        class_id, class_name, defects, area = row[-4:]
        classes.append(
            ClassBucket(_utc(row[0]), group, class_id, class_name, int(defects), int(area))
        )
    inspections = [
        InspectionBucket(_utc(row[0]), row[1] if grouped else None, int(row[-2]), int(row[-1]))
        for row in session.execute(_made(sources, bucket, group_by))
    ]
    return Summary(classes=classes, inspections=inspections)


def _sources(where: InspectionFilter) -> _Sources:
    """The rollup for the whole hours of the range and the inspections for its partial ends;
    the inspections alone for a filter the rollup cannot answer or a range within one hour."""
    if _beyond_the_rollup(where):
        return _Sources(hours=None, raw=[where])
    first = None if where.since is None else _ceil_hour(where.since)
    end = None if where.until is None else hour_of(where.until)
    if first is not None and end is not None and first >= end:
        return _Sources(hours=None, raw=[where])
    raw = []
    if where.since is not None and where.since != first:
        raw.append(replace(where, until=first))
    if where.until is not None and where.until != end:
        raw.append(replace(where, since=end))
    return _Sources(hours=replace(where, since=first, until=end), raw=raw)


def _beyond_the_rollup(where: InspectionFilter) -> bool:
    """Whether ``where`` sets a filter the rollup cannot answer (a filter added to
    ``InspectionFilter`` later counts as one until it is taught to the rollup)."""
    unanswerable = (f.name for f in fields(where) if f.name not in _ROLLUP_FILTERS)
    return any(getattr(where, name) is not None for name in unanswerable)


def _ceil_hour(moment: datetime) -> datetime:
    start = hour_of(moment)
    return start if start == moment else start + timedelta(hours=1)


def _per_class(sources: _Sources, bucket: Bucket, group_by: GroupBy | None) -> Select[Any]:
    """Defects and area per class and bucket, summed over raw defects and rollup hours."""
    parts = [
        select(
            Inspection.received_at.label("at"),
            Inspection.line_id,
            Inspection.camera_id,
            Defect.class_id,
            Defect.class_name,
            _ONE.label("defects"),
            Defect.area_px,
        )
        .join(Defect, Defect.inspection_id == Inspection.id)
        .where(*where.conditions())
        for where in sources.raw
    ]
    if sources.hours is not None:
        parts.append(
            select(
                DefectHour.hour.label("at"),
                func.nullif(DefectHour.line_id, NO_LINE).label("line_id"),
                DefectHour.camera_id,
                DefectHour.class_id,
                DefectHour.class_name,
                DefectHour.defects,
                DefectHour.area_px,
            ).where(*_hour_conditions(DefectHour, sources.hours))
        )
    rows = _union(parts)
    keys = [*_keys(rows, bucket, group_by), rows.c.class_id]
    sums = (func.max(rows.c.class_name), func.sum(rows.c.defects), func.sum(rows.c.area_px))
    return select(*keys, *sums).group_by(*keys).order_by(*keys)


def _made(sources: _Sources, bucket: Bucket, group_by: GroupBy | None) -> Select[Any]:
    """Inspections and those with a defect per bucket, from raw inspections and rollup hours."""
    parts = [
        select(
            Inspection.received_at.label("at"),
            Inspection.line_id,
            Inspection.camera_id,
            _ONE.label("inspections"),
            case((Inspection.has_defect, 1), else_=0).label("with_defect"),
        ).where(*where.conditions())
        for where in sources.raw
    ]
    if sources.hours is not None:
        parts.append(
            select(
                InspectionHour.hour.label("at"),
                func.nullif(InspectionHour.line_id, NO_LINE).label("line_id"),
                InspectionHour.camera_id,
                InspectionHour.inspections,
                InspectionHour.with_defect,
            ).where(*_hour_conditions(InspectionHour, sources.hours))
        )
    rows = _union(parts)
    keys = _keys(rows, bucket, group_by)
    sums = (func.sum(rows.c.inspections), func.sum(rows.c.with_defect))
    return select(*keys, *sums).group_by(*keys).order_by(*keys)


def _hour_conditions(
    table: type[InspectionHour] | type[DefectHour], where: InspectionFilter
) -> list[ColumnElement[bool]]:
    """``where`` (line, camera, a range of whole hours) on a rollup table."""
    conditions: list[ColumnElement[bool]] = []
    for column, value in (
        (table.line_id, where.line_id),
        (table.camera_id, where.camera_id),
    ):
        if value is not None:
            conditions.append(column == value)
    if where.since is not None:
        conditions.append(table.hour >= where.since)
    if where.until is not None:
        conditions.append(table.hour < where.until)
    return conditions


def _union(parts: list[Select[Any]]) -> Subquery:
    return (parts[0] if len(parts) == 1 else union_all(*parts)).subquery()


def _keys(rows: Subquery, bucket: Bucket, group_by: GroupBy | None) -> list[ColumnElement[Any]]:
    keys: list[ColumnElement[Any]] = [_BucketStart(rows.c.at, bucket)]
    if group_by is not None:
        keys.append(rows.c[_GROUP_COLUMNS[group_by]])
    return keys


def _utc(value: datetime | str) -> datetime:
    stamp = datetime.fromisoformat(value) if isinstance(value, str) else value
    return stamp.replace(tzinfo=UTC)
