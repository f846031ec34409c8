"""Patrol tasks, check-ins at patrol points (and the windows judged late or missed), information tips from guards.

Revision ID: 0006_tasks
Revises: 0005_forwarding
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006_tasks"
down_revision = "0005_forwarding"
branch_labels = None
depends_on = None

When = sa.DateTime(timezone=True)
Document = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("published", sa.Integer, nullable=False),
        sa.Column("site", sa.String(64), nullable=False, index=True),
        sa.Column("community", sa.String(64), index=True),
        sa.Column("guard", sa.String(64), nullable=False, index=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("document", Document, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", When, nullable=False, index=True),
        sa.Column("updated_at", When, nullable=False),
    )
    op.create_table(
        "checkins",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("point", sa.String(64), nullable=False, index=True),
        sa.Column("site", sa.String(64)),
        sa.Column("guard", sa.String(64), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("at", When, nullable=False, index=True),
    )
    op.create_table(
        "patrol_windows",
        sa.Column("route", sa.String(64), primary_key=True),
        sa.Column("point", sa.String(64), primary_key=True),
        sa.Column("start", When, primary_key=True),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("at", When, nullable=False),
    )
    op.create_table(
        "tips",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("site", sa.String(64), nullable=False, index=True),
        sa.Column("community", sa.String(64), index=True),
        sa.Column("guard", sa.String(64), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("lat", sa.Float),
        sa.Column("lon", sa.Float),
        sa.Column("photo", sa.LargeBinary),
        sa.Column("photo_type", sa.String(16)),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("decided_by", sa.String(64)),
        sa.Column("note", sa.String(500)),
        sa.Column("at", When, nullable=False),
        sa.Column("received_at", When, nullable=False, index=True),
        sa.Column("decided_at", When),
    )


def downgrade() -> None:
    for table in ("tips", "patrol_windows", "checkins", "tasks"):
        op.drop_table(table)
