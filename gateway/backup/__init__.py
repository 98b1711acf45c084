"""Backup and restore: a consistent copy of the gateway's store while it serves (SQLite's
online backup, PostgreSQL's ``pg_dump`` of one snapshot), its manifest, and its restore into
an empty store. The commands are ``gateway backup DIR`` and ``gateway restore DIR``."""
