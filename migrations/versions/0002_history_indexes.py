"""Indexes for the QA history: every filter column leads an index ending in the listing order
(received_at, id), and a covering index serves the defect filters and summaries.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FILTERS = ("camera_id", "line_id", "coil_id")


def upgrade() -> None:
    op.drop_index("ix_inspections_camera_id_received_at", table_name="inspections")
    op.drop_index("ix_inspections_line_id_received_at", table_name="inspections")
    for column in _FILTERS:
        op.create_index(
            f"ix_inspections_{column}_received_at_id",
            "inspections",
            [column, "received_at", "id"],
        )
    op.drop_index("ix_defects_inspection_id", table_name="defects")
    op.create_index(
        "ix_defects_inspection_id_class_id_area_px",
        "defects",
        ["inspection_id", "class_id", "area_px"],
    )


def downgrade() -> None:
    op.drop_index("ix_defects_inspection_id_class_id_area_px", table_name="defects")
    op.create_index("ix_defects_inspection_id", "defects", ["inspection_id"])
    for column in _FILTERS:
        op.drop_index(f"ix_inspections_{column}_received_at_id", table_name="inspections")
    op.create_index("ix_inspections_line_id_received_at", "inspections", ["line_id", "received_at"])
    op.create_index(
        "ix_inspections_camera_id_received_at", "inspections", ["camera_id", "received_at"]
    )
