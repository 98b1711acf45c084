"""E-seals with their history, e-licences with versions and status events, status lists.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seals",
        sa.Column("seal_id", sa.String(64), primary_key=True),
        sa.Column("kid", sa.String(64), nullable=False, unique=True),  # RFC 7638 thumbprint
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(64), sa.ForeignKey("departments.id"), nullable=False),
        sa.Column("owner_uscc", sa.String(18), nullable=False),
        sa.Column("alg", sa.String(16), nullable=False),
        sa.Column("jwk", sa.Text(), nullable=False),  # public JWK as JSON
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("registered_by", sa.String(64), nullable=False),
    )
    op.create_table(
        "seal_events",
        sa.Column("seal_id", sa.String(64), sa.ForeignKey("seals.seal_id"), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("by", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(256), nullable=False),
        sa.Column("revocation_reason", sa.String(32), nullable=True),
    )
    op.create_table(
        "seal_registry_revision",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "status_lists",
        sa.Column("list_id", sa.String(64), primary_key=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("allocated", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "status_entries",
        sa.Column(
            "list_id", sa.String(64), sa.ForeignKey("status_lists.list_id"), primary_key=True
        ),
        sa.Column("idx", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("licence_id", sa.String(128), nullable=False, unique=True),
        sa.Column("department", sa.String(64), nullable=False),
        sa.Column("reserved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),  # the published status value
    )
    op.create_table(
        "licences",
        sa.Column("licence_id", sa.String(128), primary_key=True),
        # type code . issuer . serial: every version of one licence shares it
        sa.Column("base_id", sa.String(96), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("type_code", sa.String(21), nullable=False),
        sa.Column("issuer", sa.String(64), nullable=False),  # department id
        sa.Column("holder_id", sa.String(18), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),  # canonical JSON (RFC 8785)
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),  # the JWS as submitted
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_list", sa.String(64), nullable=False),
        sa.Column("status_index", sa.Integer(), nullable=False),
        sa.Column("superseded_by", sa.String(128), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("base_id", "version", name="uq_licences_base_version"),
        sa.Index("ix_licences_holder", "type_code", "holder_id"),
    )
    op.create_table(
        "licence_events",
        sa.Column(
            "licence_id", sa.String(128), sa.ForeignKey("licences.licence_id"), primary_key=True
        ),
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),  # issue | suspend | … | supersede
        sa.Column("status", sa.String(16), nullable=False),  # the status after the action
        sa.Column("department", sa.String(64), nullable=False),
        sa.Column("operator", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(256), nullable=False),
    )
    op.bulk_insert(
        sa.table("seal_registry_revision", sa.column("id"), sa.column("revision")),
        [{"id": 1, "revision": 0}],
    )


def downgrade() -> None:
    op.drop_table("licence_events")
    op.drop_table("licences")
    op.drop_table("status_entries")
    op.drop_table("status_lists")
    op.drop_table("seal_registry_revision")
    op.drop_table("seal_events")
    op.drop_table("seals")
