"""Line events: where along its coil each strip was taken, and the defect alarms that fired.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inspections") as batch:
        batch.add_column(sa.Column("position_m", sa.Double(), nullable=True))
        batch.create_index("ix_inspections_coil_id_position_m", ["coil_id", "position_m"])
    op.create_table(
        "alarms",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("line_id", sa.String(length=128), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("window", sa.JSON(), nullable=False),
        sa.Column("first_inspection_id", sa.Uuid(), nullable=False),
        sa.Column("last_inspection_id", sa.Uuid(), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alarms"),
    )
    op.create_index("ix_alarms_fired_at_id", "alarms", ["fired_at", "id"])
    op.create_index("ix_alarms_line_id_fired_at_id", "alarms", ["line_id", "fired_at", "id"])
    op.create_index("ix_alarms_rule_fired_at_id", "alarms", ["rule", "fired_at", "id"])


def downgrade() -> None:
    op.drop_table("alarms")
    with op.batch_alter_table("inspections") as batch:
        batch.drop_index("ix_inspections_coil_id_position_m")
        batch.drop_column("position_m")
