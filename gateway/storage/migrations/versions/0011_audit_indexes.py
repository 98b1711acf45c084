"""The audit log's write path flat with size: drop the two indexes that are prefixes of others.

``ix_audit_entries_department`` (department) is a prefix of ``ix_audit_entries_department_idx``
(department, idx) and ``ix_audit_entries_subject_hmac`` (subject_hmac) one of
``ix_audit_entries_subject_idx`` (subject_hmac, idx): every query the single-column index
served — ``department = ?``, ``subject_hmac = ?``, with or without an order or range on
``idx`` — is served by the longer one, as a range scan of the same rows in the same order. Each
index costs every entry an insert into its B-tree, on random keys for the subject's; the two
dropped ones were half the random-key page writes of a group commit.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_DROPPED = {
    "ix_audit_entries_department": ["department"],
    "ix_audit_entries_subject_hmac": ["subject_hmac"],
}


def upgrade() -> None:
    for name in _DROPPED:
        op.drop_index(name, table_name="audit_entries")


def downgrade() -> None:
    for name, columns in _DROPPED.items():
        op.create_index(name, "audit_entries", columns)
