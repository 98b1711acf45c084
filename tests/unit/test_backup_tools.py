"""How the backup hands a database URL to PostgreSQL's programs: no driver name, and the
password through the environment, never on a command line that ``ps`` shows."""

from __future__ import annotations

import os

from gateway.backup.service import libpq_connection


def test_the_password_goes_through_pgpassword_and_nothing_else_is_lost() -> None:
    conninfo, env = libpq_connection(
        "postgresql+psycopg://gw:p%40ss%2Fw0rd@db.example:6432/yiwang?sslmode=require"
    )
    assert conninfo == "postgresql://gw@db.example:6432/yiwang?sslmode=require"
    assert env["PGPASSWORD"] == "p@ss/w0rd"
    assert "w0rd" not in conninfo


def test_a_url_without_a_password_sets_none() -> None:
    conninfo, env = libpq_connection("postgresql+psycopg://postgres@127.0.0.1:5432/yiwang")
    assert conninfo == "postgresql://postgres@127.0.0.1:5432/yiwang"
    assert env.get("PGPASSWORD") == os.environ.get("PGPASSWORD")  # the caller's, if any
