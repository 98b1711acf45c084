"""The tree's nodes keyed by their first leaf: ``merkle_nodes`` gets the primary key
``(pos, level)``, ``pos`` = ``idx << level``, in place of ``(level, idx)``.

A proof reads about one node a level. Keyed by level first, each level's nodes lay in a
region of their own, so the nodes of a proof's lowest levels (those no cache holds in a large
log) were one page each; keyed by position, the nodes near one leaf are neighbours in the
B-tree and a proof's lowest levels come from one or two pages. New nodes are appended at the
end of the key order. ``idx`` is dropped: it is ``pos >> level``.

SQLite cannot change a primary key in place: the table is rebuilt (a copy in key order, about
a second per 10⁶ entries' nodes). PostgreSQL changes the key and drops the column.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    if _sqlite():
        op.execute(
            "CREATE TABLE merkle_nodes_by_position (pos BIGINT NOT NULL, level SMALLINT NOT NULL,"
            " hash BLOB NOT NULL, PRIMARY KEY (pos, level)) WITHOUT ROWID"
        )
        op.execute(
            "INSERT INTO merkle_nodes_by_position (pos, level, hash)"
            " SELECT idx << level, level, hash FROM merkle_nodes ORDER BY idx << level, level"
        )
        op.execute("DROP TABLE merkle_nodes")
        op.execute("ALTER TABLE merkle_nodes_by_position RENAME TO merkle_nodes")
        return
    op.add_column("merkle_nodes", sa.Column("pos", sa.BigInteger(), nullable=True))
    op.execute("UPDATE merkle_nodes SET pos = idx << level")
    op.alter_column("merkle_nodes", "pos", nullable=False)
    op.drop_constraint("merkle_nodes_pkey", "merkle_nodes", type_="primary")
    op.create_primary_key("merkle_nodes_pkey", "merkle_nodes", ["pos", "level"])
    op.drop_column("merkle_nodes", "idx")


def downgrade() -> None:
    if _sqlite():
        op.execute(
            "CREATE TABLE merkle_nodes_by_level (level SMALLINT NOT NULL, idx BIGINT NOT NULL,"
            " hash BLOB NOT NULL, PRIMARY KEY (level, idx)) WITHOUT ROWID"
        )
        op.execute(
            "INSERT INTO merkle_nodes_by_level (level, idx, hash)"
            " SELECT level, pos >> level, hash FROM merkle_nodes ORDER BY level, pos"
        )
        op.execute("DROP TABLE merkle_nodes")
        op.execute("ALTER TABLE merkle_nodes_by_level RENAME TO merkle_nodes")
        return
    op.add_column("merkle_nodes", sa.Column("idx", sa.BigInteger(), nullable=True))
    op.execute("UPDATE merkle_nodes SET idx = pos >> level")
    op.alter_column("merkle_nodes", "idx", nullable=False)
    op.drop_constraint("merkle_nodes_pkey", "merkle_nodes", type_="primary")
    op.create_primary_key("merkle_nodes_pkey", "merkle_nodes", ["level", "idx"])
    op.drop_column("merkle_nodes", "pos")
