"""Forwarding to alarm receiving centres: each centre's cursor (the last `changes` id it is done with, its next DC-09 sequence).

Revision ID: 0005_forwarding
Revises: 0004_register
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_forwarding"
down_revision = "0004_register"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "forwarding_cursors",
        sa.Column("centre", sa.String(64), primary_key=True),
        sa.Column("after", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("forwarding_cursors")
