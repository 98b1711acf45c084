"""The corrections' index takes corrections only: ``ix_audit_entries_withholds`` becomes
partial (``WHERE withholds IS NOT NULL``).

Nearly every entry has no ``withholds``; the full index took a NULL key of each, one more
B-tree insert per entry on the audit writer's path. The partial index holds the corrections
alone and answers the same ``withholds = ?`` lookups (a comparison implies the column is not
NULL, which both SQLite and PostgreSQL prove before they use a partial index).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_NAME = "ix_audit_entries_withholds"


def upgrade() -> None:
    op.drop_index(_NAME, table_name="audit_entries")
    op.create_index(
        _NAME,
        "audit_entries",
        ["withholds"],
        sqlite_where=sa.text("withholds IS NOT NULL"),
        postgresql_where=sa.text("withholds IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(_NAME, table_name="audit_entries")
    op.create_index(_NAME, "audit_entries", ["withholds"])
