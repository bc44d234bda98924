"""Defect trends: counts and defect area per class by time bucket, optionally per line or camera.

Buckets are UTC clock hours or days, computed by the database (``date_trunc`` on Postgres,
``strftime`` on SQLite) so only the aggregates leave it; both give the same answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from service.db.filters import InspectionFilter
from service.db.models import Defect, Inspection

Bucket = Literal["hour", "day"]
GroupBy = Literal["line", "camera"]
BUCKETS: tuple[Bucket, ...] = get_args(Bucket)
_SQLITE_FORMATS = {"hour": "%Y-%m-%d %H:00:00", "day": "%Y-%m-%d 00:00:00"}
_GROUP_COLUMNS = {"line": Inspection.line_id, "camera": Inspection.camera_id}


class _BucketStart(FunctionElement[Any]):
    """The start of the UTC hour or day a timestamp falls in."""

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


def defect_summary(
    session: Session, *, bucket: Bucket, where: InspectionFilter, group_by: GroupBy | None = None
) -> Summary:
    """Per bucket (and group): defects and their area per class, and inspections made."""
    keys: list[ColumnElement[Any]] = [_BucketStart(Inspection.received_at, bucket)]
    if group_by is not None:
        keys.append(_GROUP_COLUMNS[group_by])
    conditions = where.conditions()
    per_class = (
        select(
            *keys,
            Defect.class_id,
            func.max(Defect.class_name),
            func.count(),
            func.sum(Defect.area_px),
        )
        .join(Defect, Defect.inspection_id == Inspection.id)
        .where(*conditions)
        .group_by(*keys, Defect.class_id)
        .order_by(*keys, Defect.class_id)
    )
    with_defect = func.sum(case((Inspection.has_defect, 1), else_=0))
    made = (
        select(*keys, func.count(), with_defect).where(*conditions).group_by(*keys).order_by(*keys)
    )
    grouped = group_by is not None
    classes = []
    for row in session.execute(per_class):
        group = row[1] if grouped else None
        class_id, class_name, defects, area = row[-4:]
        classes.append(ClassBucket(_utc(row[0]), group, class_id, class_name, defects, int(area)))
    inspections = [
        InspectionBucket(_utc(row[0]), row[1] if grouped else None, row[-2], int(row[-1]))
        for row in session.execute(made)
    ]
    return Summary(classes=classes, inspections=inspections)


def _utc(value: datetime | str) -> datetime:
    stamp = datetime.fromisoformat(value) if isinstance(value, str) else value
    return stamp.replace(tzinfo=UTC)
