"""Hourly rollup for the defect summary: inspections per UTC hour, line and camera, and defects
per class, filled from the inspections already recorded.

Revision ID: 0004
Revises: 0003
Create Date: 2025-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _hour_key() -> list[sa.Column[str]]:
    return [
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("line_id", sa.String(length=128), nullable=False),
        sa.Column("camera_id", sa.String(length=128), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "inspection_hours",
        *_hour_key(),
        sa.Column("inspections", sa.Integer(), nullable=False),
        sa.Column("with_defect", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "line_id", "camera_id", name="pk_inspection_hours"),
    )
    op.create_table(
        "defect_hours",
        *_hour_key(),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("class_name", sa.String(length=64), nullable=False),
        sa.Column("defects", sa.Integer(), nullable=False),
        sa.Column("area_px", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "hour", "line_id", "camera_id", "class_id", "class_name", name="pk_defect_hours"
        ),
    )
    _count_recorded(op.get_bind())


UTC_HOUR = {
    "postgresql": "date_trunc('hour', i.received_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
    # SQLAlchemy writes SQLite datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff': the same text here.
    "sqlite": "strftime('%Y-%m-%d %H:00:00.000000', i.received_at)",
}
HAS_DEFECT = {"postgresql": "i.has_defect", "sqlite": "i.has_defect = 1"}


def _count_recorded(connection: sa.Connection) -> None:
    """Fill both tables from the inspections already recorded. The SQL is written out here, not
    taken from the application, so that a later change to the code cannot change this
    revision: the same recount as ``service.db.rollup.rebuild_rollup`` at the time."""
    dialect = connection.dialect.name
    if dialect not in UTC_HOUR:
        raise RuntimeError(f"migration 0004 knows no UTC hour for {dialect!r}")
    key = f"{UTC_HOUR[dialect]}, coalesce(i.line_id, ''), i.camera_id"
    connection.execute(
        sa.text(
            "INSERT INTO inspection_hours (hour, line_id, camera_id, inspections, with_defect) "
            f"SELECT {key}, count(*), sum(CASE WHEN {HAS_DEFECT[dialect]} THEN 1 ELSE 0 END) "
            f"FROM inspections AS i GROUP BY {key}"
        )
    )
    connection.execute(
        sa.text(
            "INSERT INTO defect_hours "
            "(hour, line_id, camera_id, class_id, class_name, defects, area_px) "
            f"SELECT {key}, d.class_id, d.class_name, count(*), sum(d.area_px) "
            "FROM inspections AS i JOIN defects AS d ON d.inspection_id = i.id "
            f"GROUP BY {key}, d.class_id, d.class_name"
        )
    )


def downgrade() -> None:
    op.drop_table("defect_hours")
    op.drop_table("inspection_hours")
