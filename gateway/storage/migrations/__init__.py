"""Alembic migrations of the gateway schema; run by ``gateway init`` (see :func:`upgrade`)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

__all__ = ["upgrade"]


def upgrade(engine: sa.Engine) -> None:
    """Bring the database behind ``engine`` to the newest schema revision."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
