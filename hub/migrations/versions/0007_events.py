"""Large events: events, their sectors, and the guards called up for them.

Revision ID: 0007_events
Revises: 0006_tasks
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007_events"
down_revision = "0006_tasks"
branch_labels = None
depends_on = None

When = sa.DateTime(timezone=True)
Document = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("venue", Document, nullable=False),
        sa.Column("starts_at", When, nullable=False),
        sa.Column("ends_at", When, nullable=False),
        sa.Column("briefing", sa.String(4000), nullable=False),
        sa.Column("answer_within_s", sa.Float, nullable=False),
        sa.Column("arrive_grace_s", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("roll_call", sa.Integer, nullable=False),
        sa.Column("roll_call_at", When, nullable=True),
        sa.Column("roll_call_due", When, nullable=True),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
    )
    op.create_table(
        "event_sectors",
        sa.Column("event_id", sa.String(64), sa.ForeignKey("events.id"), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("area", Document, nullable=False),
        sa.Column("needs", Document, nullable=False),
        sa.Column("lat", sa.Float, nullable=False),
        sa.Column("lon", sa.Float, nullable=False),
    )
    op.create_table(
        "event_guards",
        sa.Column("event_id", sa.String(64), sa.ForeignKey("events.id"), primary_key=True),
        sa.Column("guard", sa.String(64), primary_key=True),
        sa.Column("site", sa.String(64), nullable=True),
        sa.Column("company", sa.String(64), nullable=False),
        sa.Column("sector", sa.String(64), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("released", sa.Boolean, nullable=False),
        sa.Column("distance_m", sa.Float, nullable=False),
        sa.Column("called_at", When, nullable=False),
        sa.Column("sent_at", When, nullable=True),
        sa.Column("answered_at", When, nullable=True),
        sa.Column("arrived_at", When, nullable=True),
        sa.Column("pending", sa.String(16), nullable=True),
        sa.Column("roll_call_asked", sa.Integer, nullable=False),
        sa.Column("roll_call_answered", sa.Integer, nullable=False),
    )
    op.create_index("ix_event_guards_guard_state", "event_guards", ["guard", "state"])
    op.create_index("ix_event_guards_pending", "event_guards", ["pending"])


def downgrade() -> None:
    op.drop_index("ix_event_guards_pending", "event_guards")
    op.drop_index("ix_event_guards_guard_state", "event_guards")
    for table in ("event_guards", "event_sectors", "events"):
        op.drop_table(table)
