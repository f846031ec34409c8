"""The district register of guards: companies, guards (vetting, training, posting), training records, site rosters.

Revision ID: 0004_register
Revises: 0003_evidence
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004_register"
down_revision = "0003_evidence"
branch_labels = None
depends_on = None

When = sa.DateTime(timezone=True)
Document = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "register_companies",
        sa.Column("licence", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("contact", sa.String(200), nullable=True),
        sa.Column("updated_at", When, nullable=False),
    )
    op.create_table(
        "register_guards",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("company", sa.String(64), sa.ForeignKey("register_companies.licence"), nullable=False, index=True),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("id_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("id_masked", sa.String(24), nullable=False),
        sa.Column("roles", Document, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("vetting", sa.String(16), nullable=False, index=True),
        sa.Column("vetted_by", sa.String(128), nullable=True),
        sa.Column("vetted_on", sa.Date, nullable=True),
        sa.Column("vetting_until", sa.Date, nullable=True, index=True),
        sa.Column("pre_job_training", sa.Boolean, nullable=False),
        sa.Column("assessment_score", sa.Float, nullable=True),
        sa.Column("site", sa.String(64), nullable=True, index=True),
        sa.Column("posted_from", sa.Date, nullable=True),
        sa.Column("wearable", sa.String(64), nullable=True),
        sa.Column("updated_at", When, nullable=False),
    )
    op.create_table(
        "register_training",
        sa.Column("guard", sa.String(64), sa.ForeignKey("register_guards.id"), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("hours", sa.Float, nullable=False),
    )
    op.create_table(
        "register_rosters",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("guards", sa.Integer, nullable=False),
        sa.Column("published_at", When, nullable=True),
        sa.Column("requested", sa.Boolean, nullable=False),
    )
    op.create_table(
        "register_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("changed_at", When, nullable=False),
    )


def downgrade() -> None:
    for table in ("register_state", "register_rosters", "register_training", "register_guards", "register_companies"):
        op.drop_table(table)
