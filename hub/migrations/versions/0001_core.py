"""Core tables: escalations, revisions, sites, guards, rejections, changes.

Revision ID: 0001_core
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001_core"
down_revision = None
branch_labels = None
depends_on = None

Document = sa.JSON().with_variant(JSONB(), "postgresql")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "escalations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("site", sa.String(64), nullable=False, index=True),
        sa.Column("community", sa.String(64), nullable=True, index=True),
        sa.Column("district", sa.String(64), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("status", sa.String(32), nullable=False, index=True),
        sa.Column("kind", sa.String(32), nullable=False, index=True),
        sa.Column("severity", sa.String(16), nullable=False, index=True),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("zone", sa.String(64), nullable=True),
        sa.Column("lat", sa.Float, nullable=True),
        sa.Column("lon", sa.Float, nullable=True),
        sa.Column("test", sa.Boolean, nullable=False),
        sa.Column("guards_needed", sa.Integer, nullable=False),
        sa.Column("acknowledged_by", sa.String(64), nullable=True),
        sa.Column("detected_at", When, nullable=False, index=True),
        sa.Column("issued_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
    )
    op.create_table(
        "revisions",
        sa.Column("escalation_id", sa.String(64), sa.ForeignKey("escalations.id"), primary_key=True),
        sa.Column("revision", sa.Integer, primary_key=True),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("issued_at", When, nullable=False),
        sa.Column("received_at", When, nullable=False),
        sa.Column("committed_at", When, nullable=False),
        sa.Column("document", Document, nullable=False),
    )
    op.create_table(
        "sites",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("district", sa.String(64), nullable=False),
        sa.Column("community", sa.String(64), nullable=True, index=True),
        sa.Column("online", sa.Boolean, nullable=False),
        sa.Column("since", When, nullable=True),
        sa.Column("last_heartbeat", When, nullable=True),
        sa.Column("backlog", sa.Integer, nullable=True),
        sa.Column("unreceipted", sa.Integer, nullable=True),
        sa.Column("oldest_unreceipted_s", sa.Float, nullable=True),
        sa.Column("status", Document, nullable=True),
        sa.Column("detail", sa.String(200), nullable=True),
    )
    op.create_table(
        "guards",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("guard_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("roles", Document, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("job", sa.String(64), nullable=True),
        sa.Column("lat", sa.Float, nullable=True),
        sa.Column("lon", sa.Float, nullable=True),
        sa.Column("accuracy_m", sa.Float, nullable=True),
        sa.Column("position_at", When, nullable=True),
        sa.Column("updated_at", When, nullable=False),
    )
    op.create_table(
        "rejections",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("reason", sa.String(64), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("last_at", When, nullable=False),
        sa.Column("last_detail", sa.String(300), nullable=True),
    )
    op.create_table(
        "changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at", When, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("payload", Document, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_changes_kind_key", "changes", ["kind", "key"])


def downgrade() -> None:
    for table in ("changes", "rejections", "guards", "sites", "revisions", "escalations"):
        op.drop_table(table)
