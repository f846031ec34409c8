"""Evidence: the files sites upload (snapshots, clips) and site accounts (a user speaking for one site).

Revision ID: 0003_evidence
Revises: 0002_accounts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_evidence"
down_revision = "0002_accounts"
branch_labels = None
depends_on = None

When = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("users") as users:  # batch: SQLite alters a table by copying it
        users.add_column(sa.Column("site", sa.String(64), nullable=True))
    op.create_table(
        "evidence",
        sa.Column("escalation_id", sa.String(64), sa.ForeignKey("escalations.id"), primary_key=True),
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("site", sa.String(64), nullable=False, index=True),
        sa.Column("camera", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("media_type", sa.String(32), nullable=False),
        sa.Column("bytes_expected", sa.BigInteger, nullable=False),
        sa.Column("bytes_received", sa.BigInteger, nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("complete", sa.Boolean, nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.Column("completed_at", When, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("evidence")
    with op.batch_alter_table("users") as users:
        users.drop_column("site")
