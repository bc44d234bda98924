"""Inspections and their defects, indexed for history queries.

Revision ID: 0001
Revises:
Create Date: 2025-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inspections",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("camera_id", sa.String(length=128), nullable=False),
        sa.Column("frame_id", sa.String(length=128), nullable=True),
        sa.Column("line_id", sa.String(length=128), nullable=True),
        sa.Column("coil_id", sa.String(length=128), nullable=True),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("has_defect", sa.Boolean(), nullable=False),
        sa.Column("timings", sa.JSON(), nullable=False),
        sa.Column("image_height", sa.Integer(), nullable=False),
        sa.Column("image_width", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_inspections"),
        sa.UniqueConstraint("camera_id", "frame_id", name="uq_inspections_camera_id_frame_id"),
    )
    op.create_index("ix_inspections_received_at_id", "inspections", ["received_at", "id"])
    op.create_index(
        "ix_inspections_camera_id_received_at", "inspections", ["camera_id", "received_at"]
    )
    op.create_index("ix_inspections_line_id_received_at", "inspections", ["line_id", "received_at"])
    op.create_table(
        "defects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inspection_id", sa.Uuid(), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("class_name", sa.String(length=64), nullable=False),
        sa.Column("encoded_pixels", sa.Text(), nullable=False),
        sa.Column("area_px", sa.Integer(), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("bbox_x_min", sa.Integer(), nullable=False),
        sa.Column("bbox_y_min", sa.Integer(), nullable=False),
        sa.Column("bbox_x_max", sa.Integer(), nullable=False),
        sa.Column("bbox_y_max", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["inspection_id"],
            ["inspections.id"],
            name="fk_defects_inspection_id_inspections",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_defects"),
    )
    op.create_index("ix_defects_inspection_id", "defects", ["inspection_id"])
    op.create_index("ix_defects_class_id", "defects", ["class_id"])


def downgrade() -> None:
    op.drop_table("defects")
    op.drop_table("inspections")
