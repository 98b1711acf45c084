"""The request id of the HTTP request that wrote each audit entry.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # In the leaf only where set: every earlier entry keeps its leaf bytes.
    op.add_column("audit_entries", sa.Column("request_id", sa.String(128), nullable=True))


def downgrade() -> None:
    op.drop_column("audit_entries", "request_id")
