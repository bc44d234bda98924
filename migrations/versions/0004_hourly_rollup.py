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

from service.db.rollup import rebuild_rollup

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
    # The same recount the history benchmark runs after seeding by COPY.
    rebuild_rollup(op.get_bind())


def downgrade() -> None:
    op.drop_table("defect_hours")
    op.drop_table("inspection_hours")
