"""Durable state in a SQL database: SQLite (embedded) or PostgreSQL (server setup).

``schema`` declares the tables, ``database`` opens engines with the right durability settings
for each dialect, ``migrations`` (Alembic) creates and upgrades the schema, and ``registry``
keeps departments and their keys.
"""
