"""The security officers' tools: keyset-paging indexes on the audit log, embargoes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_INDEXES = {
    "ix_audit_entries_department_idx": ["department", "idx"],
    "ix_audit_entries_subject_idx": ["subject_hmac", "idx"],
    "ix_audit_entries_case_idx": ["case_number", "idx"],
}


def upgrade() -> None:
    for name, columns in _INDEXES.items():
        op.create_index(name, "audit_entries", columns)
    op.create_table(
        "audit_embargoes",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("subject_hmac", sa.String(64), nullable=False),
        sa.Column("department", sa.String(64), nullable=True),
        sa.Column("until", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(256), nullable=False),
        sa.Column("operator", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("audit_index", sa.BigInteger(), nullable=False),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.String(64), nullable=True),
        sa.Column("lift_reason", sa.String(256), nullable=True),
        sa.Column("lift_audit_index", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_audit_embargoes_subject_hmac", "audit_embargoes", ["subject_hmac"])


def downgrade() -> None:
    op.drop_index("ix_audit_embargoes_subject_hmac", table_name="audit_embargoes")
    op.drop_table("audit_embargoes")
    for name in reversed(_INDEXES):
        op.drop_index(name, table_name="audit_entries")
