"""Uploaded resources: versions, the current-version pointer, rows and rejection reports.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upload_versions",
        sa.Column("resource", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("uploader", sa.String(64), nullable=False),
        sa.Column("operator", sa.String(64), nullable=False),
        sa.Column("rows_accepted", sa.BigInteger(), nullable=False),
        sa.Column("rows_rejected", sa.BigInteger(), nullable=False),
        sa.Column("previous_version", sa.Integer(), nullable=True),
        sa.Column("detail", sa.String(500), nullable=True),
    )
    op.create_table(
        "upload_current",
        sa.Column("resource", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "upload_rows",
        sa.Column("resource", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("subject_key", sa.String(32), primary_key=True),
        sa.Column("line", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "upload_rejections",
        sa.Column("resource", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("line", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("field", sa.String(64), primary_key=True),
        sa.Column("subject_key", sa.String(64), nullable=True),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
    )
    op.create_index(
        "ix_upload_rejections_key", "upload_rejections", ["resource", "version", "subject_key"]
    )


def downgrade() -> None:
    op.drop_index("ix_upload_rejections_key", table_name="upload_rejections")
    op.drop_table("upload_rejections")
    op.drop_table("upload_rows")
    op.drop_table("upload_current")
    op.drop_table("upload_versions")
