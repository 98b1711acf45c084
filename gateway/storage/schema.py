"""Table definitions (SQLAlchemy Core). Alembic migrations are the source of truth for DDL;
these mirror them for queries, and a test checks the two agree."""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "audit_entries",
    "closed_cases",
    "department_keys",
    "departments",
    "gateway_keys",
    "metadata",
    "quota_subjects",
    "readiness_probes",
    "used_tokens",
]

metadata = sa.MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants a BIGINT identity.
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

departments = sa.Table(
    "departments",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("uscc", sa.String(18), nullable=False, unique=True),
    sa.Column("roles", sa.String(200), nullable=False),  # comma-separated Role values
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

department_keys = sa.Table(
    "department_keys",
    metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column(
        "department_id",
        sa.String(64),
        sa.ForeignKey("departments.id"),
        nullable=False,
        index=True,
    ),
    sa.Column("alg", sa.String(16), nullable=False),
    sa.Column("jwk", sa.Text(), nullable=False),  # public JWK as JSON
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # Migration 0010: when the department means to stop using the key (an alert ahead of it).
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
)

# The gateway's own signing keys, public halves and lifecycle (migration 0010); the private
# halves are files under keys/gateway/ (see gateway.registry.gateway_keys).
gateway_keys = sa.Table(
    "gateway_keys",
    metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("alg", sa.String(16), nullable=False),
    sa.Column("jwk", sa.Text(), nullable=False),  # public JWK as JSON
    sa.Column("status", sa.String(16), nullable=False),  # next / active / retired
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("active_from", sa.DateTime(timezone=True), nullable=True),
    sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("retire_by", sa.DateTime(timezone=True), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

audit_entries = sa.Table(
    "audit_entries",
    metadata,
    sa.Column("idx", _BigId, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("event", sa.String(64), nullable=False),
    # Indexed with idx (below): that index serves ``department = ?`` too (migration 0011
    # dropped the single-column one, a prefix of it).
    sa.Column("department", sa.String(64), nullable=True),
    sa.Column("operator", sa.String(64), nullable=True),
    sa.Column("service_item", sa.String(64), nullable=True),
    sa.Column("case_number", sa.String(64), nullable=True),
    sa.Column("reason", sa.String(256), nullable=True),
    sa.Column("resource", sa.String(64), nullable=True),
    sa.Column("subject_hmac", sa.String(64), nullable=True),  # indexed with idx, below
    sa.Column("fields", sa.Text(), nullable=True),  # JSON list of released/requested fields
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("reason_code", sa.String(64), nullable=True),
    sa.Column("grant_id", sa.String(64), nullable=True),
    sa.Column("policy_version", sa.String(64), nullable=True),
    sa.Column("request_hash", sa.String(64), nullable=True),
    sa.Column("response_hash", sa.String(64), nullable=True),
    sa.Column("latency_ms", sa.Float(), nullable=True),
    sa.Column("detail", sa.Text(), nullable=True),
    # Set on a correction entry: the index of the entry whose answer was never handed over.
    sa.Column("withholds", sa.BigInteger(), nullable=True),
    # The request id of the HTTP request that wrote the entry (X-Request-Id; migration 0009):
    # what ties an access-log line, a proxy's log and the entry together.
    sa.Column("request_id", sa.String(128), nullable=True),
    sqlite_autoincrement=True,  # never reuse an index, even after the newest row is removed
)

# --- promises kept by the durable store (migration 0008) -----------------------------------

used_tokens = sa.Table(
    "used_tokens",
    metadata,
    sa.Column("department", sa.String(64), primary_key=True),
    sa.Column("jti", sa.String(128), primary_key=True),
    # The request that claimed it: the same request's later entries find their own claim.
    sa.Column("claimed_by", sa.String(32), nullable=False),
    sa.Column("expires_at", sa.BigInteger(), nullable=False, index=True),  # epoch seconds
)

quota_subjects = sa.Table(
    "quota_subjects",
    metadata,
    sa.Column("grant_id", sa.String(64), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),  # district date
    sa.Column("subject_hmac", sa.String(64), primary_key=True),
)

readiness_probes = sa.Table(
    "readiness_probes",
    metadata,
    sa.Column("process", sa.String(64), primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

closed_cases = sa.Table(
    "closed_cases",
    metadata,
    sa.Column("department", sa.String(64), primary_key=True),
    sa.Column("case_number", sa.String(64), primary_key=True),
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("operator", sa.String(64), nullable=False),
    sa.Column("reason", sa.String(256), nullable=False),
)

# --- uploaded resources (gateway.uploads; migration 0003) ---------------------------------
# A version is loaded row by row while ``upload_current`` still points at the previous one;
# flipping that pointer (one row, one transaction) is what makes a new version visible.

upload_versions = sa.Table(
    "upload_versions",
    metadata,
    sa.Column("resource", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
    # loading | current | replaced | refused | pruned
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("format", sa.String(8), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("bytes", sa.BigInteger(), nullable=False),
    sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("uploader", sa.String(64), nullable=False),  # the provider department
    sa.Column("operator", sa.String(64), nullable=False),
    sa.Column("rows_accepted", sa.BigInteger(), nullable=False),
    sa.Column("rows_rejected", sa.BigInteger(), nullable=False),
    sa.Column("previous_version", sa.Integer(), nullable=True),
    sa.Column("detail", sa.String(500), nullable=True),  # why a version was refused
)

upload_current = sa.Table(
    "upload_current",
    metadata,
    sa.Column("resource", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

upload_rows = sa.Table(
    "upload_rows",
    metadata,
    sa.Column("resource", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("subject_key", sa.String(32), primary_key=True),
    sa.Column("line", sa.BigInteger(), nullable=False),  # for the duplicate-key report
    sa.Column("data", sa.Text(), nullable=False),  # the typed values as JSON
    # Rows are found by their primary key only: SQLite then keeps one B-tree, not two.
    sqlite_with_rowid=False,
)

upload_rejections = sa.Table(
    "upload_rejections",
    metadata,
    sa.Column("resource", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("line", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("field", sa.String(64), primary_key=True),  # "" for the row as a whole
    sa.Column("subject_key", sa.String(64), nullable=True),
    sa.Column("code", sa.String(32), nullable=False),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Index("ix_upload_rejections_key", "resource", "version", "subject_key"),
)

__all__ += ["upload_current", "upload_rejections", "upload_rows", "upload_versions"]

# --- e-seals and e-licences (gateway.licensing; migration 0004) ---------------------------
# Seals and licences keep their whole history: status changes are appended as events and the
# current status is a column updated in the same transaction.

seals = sa.Table(
    "seals",
    metadata,
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

seal_events = sa.Table(
    "seal_events",
    metadata,
    sa.Column("seal_id", sa.String(64), sa.ForeignKey("seals.seal_id"), primary_key=True),
    sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("by", sa.String(64), nullable=False),
    sa.Column("reason", sa.String(256), nullable=False),
    sa.Column("revocation_reason", sa.String(32), nullable=True),
)

# One row; bumped with every seal change so each process knows when to reload its registry.
seal_registry_revision = sa.Table(
    "seal_registry_revision",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("revision", sa.BigInteger(), nullable=False),
)

# One row; moved by triggers on ``licences`` (migration 0014) with every change of a licence,
# so each process knows when the records it kept are stale.
licence_store_revision = sa.Table(
    "licence_store_revision",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("revision", sa.BigInteger(), nullable=False),
)

status_lists = sa.Table(
    "status_lists",
    metadata,
    sa.Column("list_id", sa.String(64), primary_key=True),
    sa.Column("size", sa.Integer(), nullable=False),
    sa.Column("allocated", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

status_entries = sa.Table(
    "status_entries",
    metadata,
    sa.Column("list_id", sa.String(64), sa.ForeignKey("status_lists.list_id"), primary_key=True),
    sa.Column("idx", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("licence_id", sa.String(128), nullable=False, unique=True),
    sa.Column("department", sa.String(64), nullable=False),
    sa.Column("reserved_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("value", sa.Integer(), nullable=False),  # the published status value
)

licences = sa.Table(
    "licences",
    metadata,
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

licence_events = sa.Table(
    "licence_events",
    metadata,
    sa.Column("licence_id", sa.String(128), sa.ForeignKey("licences.licence_id"), primary_key=True),
    sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # issue | suspend | … | supersede
    sa.Column("status", sa.String(16), nullable=False),  # the status after the action
    sa.Column("department", sa.String(64), nullable=False),
    sa.Column("operator", sa.String(64), nullable=False),
    sa.Column("reason", sa.String(256), nullable=False),
)

__all__ += [
    "licence_events",
    "licence_store_revision",
    "licences",
    "seal_events",
    "seal_registry_revision",
    "seals",
    "status_entries",
    "status_lists",
]

# --- the Merkle tree over the audit log (gateway.audit; migrations 0005, 0013) --------------
# Hashes of the perfect subtrees of the RFC 9162 tree: level 0 holds the leaf hashes (leaf
# index = audit idx - 1), the node of level L and index i covers leaves [i·2^L, (i+1)·2^L).
# They are written by the sequencer in the same transaction as the entries, so any committed
# tree size has every node it needs; roots and proofs then take O(log n) reads.
#
# Keyed by ``pos`` = i·2^L, the node's first leaf, then the level (migration 0013): the nodes
# near one leaf — those its proof reads from its lowest levels — sit side by side, in one or
# two pages, where keyed by (level, i) each level's lay in a page of its own (a proof in a
# log of 10⁶ entries read five pages no cache held). Appends land at the end of the key
# order. A node's index is ``pos >> level``.

merkle_nodes = sa.Table(
    "merkle_nodes",
    metadata,
    sa.Column("pos", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("level", sa.SmallInteger(), primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
    sqlite_with_rowid=False,
)

audit_checkpoints = sa.Table(
    "audit_checkpoints",
    metadata,
    sa.Column("size", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("root", sa.String(64), nullable=False),  # hex SHA-256
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("token", sa.Text(), nullable=False),  # the signed checkpoint (JWT)
)

__all__ += ["audit_checkpoints", "merkle_nodes"]

# --- the security officers' tools (gateway.oversight.service; migration 0006) ------------------
# Officers page through the log by index with one filter at a time: each of these indexes
# serves ``<column> = ? AND idx > ? ORDER BY idx`` as a range scan (keyset paging), and the
# subject one also the citizens' access history (newest first). They add no column, so the
# entries' leaves are unchanged. They also serve every ``department = ?`` and
# ``subject_hmac = ?`` alone: the single-column indexes, prefixes of these, were dropped by
# migration 0011 (each index is one more B-tree insert per entry; the subject's on random keys).

sa.Index("ix_audit_entries_department_idx", audit_entries.c.department, audit_entries.c.idx)
sa.Index("ix_audit_entries_subject_idx", audit_entries.c.subject_hmac, audit_entries.c.idx)
sa.Index("ix_audit_entries_case_idx", audit_entries.c.case_number, audit_entries.c.idx)
# Corrections only (migration 0012): nearly every entry has no ``withholds``, and a full index
# would take a NULL key of every one of them; a partial index takes the corrections alone and
# still answers ``withholds = ?`` (which implies it is not NULL) on SQLite and PostgreSQL.
sa.Index(
    "ix_audit_entries_withholds",
    audit_entries.c.withholds,
    sqlite_where=audit_entries.c.withholds.is_not(None),
    postgresql_where=audit_entries.c.withholds.is_not(None),
)

# An auditor hides a subject's entries from the citizens' access history until a date (an
# investigation must not be tipped off); auditors still see them. Kept after being lifted.
audit_embargoes = sa.Table(
    "audit_embargoes",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("subject_hmac", sa.String(64), nullable=False, index=True),
    sa.Column("department", sa.String(64), nullable=True),  # only its reads; None: all
    sa.Column("until", sa.Date(), nullable=False),  # district date, inclusive
    sa.Column("reason", sa.String(256), nullable=False),
    sa.Column("operator", sa.String(64), nullable=False),  # the officer
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("audit_index", sa.BigInteger(), nullable=False),  # audit:embargo:added
    sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("lifted_by", sa.String(64), nullable=True),
    sa.Column("lift_reason", sa.String(256), nullable=True),
    sa.Column("lift_audit_index", sa.BigInteger(), nullable=True),  # audit:embargo:lifted
)

__all__ += ["audit_embargoes"]

# --- the web console's accounts and sessions (gateway.accounts; migration 0007) -------------
# People at a desk log in with a password (scrypt, self-describing hash). Sessions are kept
# on the server; only the SHA-256 of a session id is stored, so a copy of the table logs
# nobody in. Times in UTC.

console_accounts = sa.Table(
    "console_accounts",
    metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("display_name", sa.String(128), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),  # clerk | auditor | admin
    sa.Column("department", sa.String(64), nullable=True),  # clerks only
    sa.Column("disabled", sa.Boolean(), nullable=False),
    sa.Column("failed_attempts", sa.Integer(), nullable=False),  # since the last success/lock
    sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column("password_hash", sa.String(256), nullable=False),  # scrypt$n$r$p$salt$key
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),  # hex SHA-256 of the session id
    sa.Column(
        "username",
        sa.String(64),
        sa.ForeignKey("console_accounts.username"),
        nullable=False,
        index=True,
    ),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
)

__all__ += ["console_accounts", "console_sessions"]
