"""Promises kept by the durable store, not the cache: used tokens, quota subjects, answers
withheld, readiness probes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every (department, jti) answered or refused after admission, until it could no longer
    # verify: the replay check that survives losing the cache.
    op.create_table(
        "used_tokens",
        sa.Column("department", sa.String(64), primary_key=True),
        sa.Column("jti", sa.String(128), primary_key=True),
        sa.Column("claimed_by", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_used_tokens_expires_at", "used_tokens", ["expires_at"])
    # The distinct subjects read under a quota'd grant each district day.
    op.create_table(
        "quota_subjects",
        sa.Column("grant_id", sa.String(64), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("subject_hmac", sa.String(64), primary_key=True),
    )
    # A correction entry names the entry whose answer was never handed over.
    op.add_column("audit_entries", sa.Column("withholds", sa.BigInteger(), nullable=True))
    op.create_index("ix_audit_entries_withholds", "audit_entries", ["withholds"])
    # /readyz writes here: a store that cannot take a write is not ready.
    op.create_table(
        "readiness_probes",
        sa.Column("process", sa.String(64), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("readiness_probes")
    op.drop_index("ix_audit_entries_withholds", table_name="audit_entries")
    op.drop_column("audit_entries", "withholds")
    op.drop_table("quota_subjects")
    op.drop_index("ix_used_tokens_expires_at", table_name="used_tokens")
    op.drop_table("used_tokens")
