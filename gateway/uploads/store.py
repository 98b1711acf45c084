"""Versions of uploaded resources in the gateway's own database (SQLite or PostgreSQL).

How a version becomes visible, atomically:

1. :func:`begin_version` numbers it (per resource: 1, 2, 3 …) in state ``loading``;
2. a :class:`VersionLoader` writes its rows in chunks, each chunk its own short transaction
   (a long one would hold SQLite's write lock, and the audit log shares that database);
   readers do not see these rows, because ``upload_current`` still names the old version;
3. :func:`make_current` flips ``upload_current`` to the new version in one transaction;
4. :func:`prune_versions` deletes the rows of versions beyond ``keep_versions``, in chunks.

A lookup reads pointer, version and row in one statement (:func:`read_current`), so it sees
either the old version or the new one, never a mixture, and never a half-loaded version.

Duplicate keys are found without holding the file's keys in memory: each chunk's keys are
looked up among the rows this version already has (by primary key). A repeated key's first
row stays in the table while loading — so that a third occurrence is caught as well — and
every row with that key is reported; :meth:`VersionLoader.finish` then deletes the key's row
before the version can become current.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from gateway.storage.schema import upload_current, upload_rejections, upload_rows, upload_versions
from gateway.uploads.validation import Accepted, Problem, ProblemCode, Rejected

__all__ = [
    "CHUNK_ROWS",
    "CurrentRow",
    "Flip",
    "VersionInfo",
    "VersionLoader",
    "VersionPruned",
    "VersionState",
    "begin_version",
    "first_rejections",
    "iter_rejections",
    "make_current",
    "prune_versions",
    "read_current",
    "refuse_version",
    "version_info",
]

#: Rows written per transaction: large enough that the per-commit cost (an fsync) is shared,
#: small enough that no write holds the database (and the audit log's commits) for long.
CHUNK_ROWS = 2000
_DELETE_CHUNK = 20_000
#: A version still ``loading`` this long after it began belongs to an upload that died.
_STALE_LOADING = dt.timedelta(hours=24)
_REPORT_WIDTH = {"field": 64, "subject_key": 64, "reason": 500}


class VersionState(enum.StrEnum):
    """Life of a version: loading → current → replaced → pruned; or loading → refused."""

    LOADING = "loading"
    CURRENT = "current"
    REPLACED = "replaced"
    REFUSED = "refused"
    PRUNED = "pruned"


class VersionPruned(Exception):
    """The version was pruned (as stale) while it was loading; it can no longer be used."""


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """What the database records about one version."""

    resource: str
    version: int
    state: VersionState
    format: str
    sha256: str
    bytes: int
    uploaded_at: dt.datetime
    finished_at: dt.datetime | None
    uploader: str
    operator: str
    rows_accepted: int
    rows_rejected: int
    previous_version: int | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class Flip:
    """Outcome of :func:`make_current`: the version before, and whether ours is current now
    (``False`` only when a newer upload of the same resource became current first)."""

    previous: int | None
    current: bool


@dataclass(frozen=True, slots=True)
class CurrentRow:
    """A subject's row in the current version of a resource."""

    data: str
    version: int
    uploaded_at: dt.datetime


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite gives back naive datetimes (stored as UTC); PostgreSQL aware ones in the
    # session's time zone. Answers always say UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _of(resource: str, version: int) -> sa.ColumnElement[bool]:
    return sa.and_(upload_versions.c.resource == resource, upload_versions.c.version == version)


def begin_version(
    engine: sa.Engine,
    *,
    resource: str,
    fmt: str,
    sha256: str,
    size: int,
    uploader: str,
    operator: str,
    at: dt.datetime,
) -> int:
    """Number a new version of ``resource`` (one more than any before) in state ``loading``."""
    for _attempt in range(10):
        try:
            with engine.begin() as conn:
                last = conn.execute(
                    sa.select(sa.func.max(upload_versions.c.version)).where(
                        upload_versions.c.resource == resource
                    )
                ).scalar_one_or_none()
                version = int(last or 0) + 1
                conn.execute(
                    upload_versions.insert().values(
                        resource=resource,
                        version=version,
                        state=VersionState.LOADING,
                        format=fmt,
                        sha256=sha256,
                        bytes=size,
                        uploaded_at=at,
                        uploader=uploader,
                        operator=operator,
                        rows_accepted=0,
                        rows_rejected=0,
                    )
                )
                return version
        except IntegrityError:
            continue  # another worker took that number at the same moment: take the next
    raise RuntimeError(f"could not number a new version of {resource}")


# PostgreSQL: the chunk travels as one JSON document in one short statement. A multi-row
# VALUES list would be a different, long statement per chunk that the driver re-parses, and
# text arrays are escaped element by element in Python: either costs more CPU than the rest
# of an upload together.
_PG_INSERT = sa.text(
    "INSERT INTO upload_rows (resource, version, subject_key, line, data) "
    "SELECT :resource, :version, u.k, u.l, u.d::text "
    "FROM json_to_recordset(CAST(:rows AS json)) AS u(k text, l bigint, d json) "
    "ON CONFLICT DO NOTHING RETURNING subject_key"
)

# ``WHERE true``: SQLite's grammar needs it between INSERT … SELECT and ON CONFLICT.
_SQLITE_INSERT = sa.text(
    "INSERT INTO upload_rows (resource, version, subject_key, line, data) "
    "SELECT :resource, :version, json_extract(u.value, '$[0]'), json_extract(u.value, '$[1]'), "
    "json_extract(u.value, '$[2]') "
    "FROM json_each(:rows) AS u WHERE true "
    "ON CONFLICT DO NOTHING RETURNING subject_key"
)


def _insert_new(
    conn: sa.Connection, resource: str, version: int, rows: Sequence[Accepted]
) -> set[str]:
    """Insert ``rows`` (distinct keys) except keys the version already has; return the keys
    inserted. ON CONFLICT DO NOTHING lets the primary key find keys of earlier chunks through
    its index, whatever the planner thinks of a table that is still filling."""
    if conn.dialect.name == "postgresql":
        result = conn.execute(
            _PG_INSERT,
            {
                "resource": resource,
                "version": version,
                # Each row's data is JSON already: embedded as it is, not encoded again.
                "rows": msgspec.json.encode(
                    [{"k": r.key, "l": r.line, "d": msgspec.Raw(r.data.encode())} for r in rows]
                ).decode(),
            },
        )
        return set(result.scalars())
    # SQLite: the same in one statement, the chunk as one JSON parameter that SQLite takes
    # apart itself (json_each) — not one bound row per key through the driver. Each row's
    # data travels as a JSON string, so it is stored exactly as it was encoded.
    result = conn.execute(
        _SQLITE_INSERT,
        {
            "resource": resource,
            "version": version,
            "rows": msgspec.json.encode([(r.key, r.line, r.data) for r in rows]).decode(),
        },
    )
    return set(result.scalars())


def _problem_row(resource: str, version: int, p: Problem) -> dict[str, Any]:
    return {
        "resource": resource,
        "version": version,
        "line": p.line,
        "field": p.field[: _REPORT_WIDTH["field"]],
        "subject_key": None if p.key is None else p.key[: _REPORT_WIDTH["subject_key"]],
        "code": p.code,
        "reason": p.reason[: _REPORT_WIDTH["reason"]],
    }


class VersionLoader:
    """Writes one version's rows and rejections, chunk by chunk (synchronous: run it in a
    worker thread). ``accepted`` and ``rejected`` count rows (lines), not problems."""

    def __init__(self, engine: sa.Engine, *, resource: str, version: int, key_column: str) -> None:
        self._engine = engine
        self._resource = resource
        self._version = version
        self._key_column = key_column
        self._rows: list[Accepted] = []
        self._problems: list[Problem] = []
        self.accepted = 0
        self.rejected = 0
        self.rows_read = 0
        self._duplicates = False

    def add(self, item: Accepted | Rejected) -> None:
        """Take the next row of the file (in file order)."""
        self.rows_read += 1
        if isinstance(item, Accepted):
            self._rows.append(item)
        else:
            self.rejected += 1
            self._problems.extend(item.problems)
        if len(self._rows) >= CHUNK_ROWS or len(self._problems) >= CHUNK_ROWS:
            self._flush()

    def finish(self) -> None:
        """Write what is buffered, then drop the rows of keys found to repeat."""
        self._flush()
        if not self._duplicates:
            return
        repeated = (
            sa.select(upload_rejections.c.subject_key)
            .where(
                upload_rejections.c.resource == self._resource,
                upload_rejections.c.version == self._version,
                upload_rejections.c.code == ProblemCode.DUPLICATE,
            )
            .scalar_subquery()
        )
        with self._engine.begin() as conn:
            conn.execute(
                upload_rows.delete().where(
                    upload_rows.c.resource == self._resource,
                    upload_rows.c.version == self._version,
                    upload_rows.c.subject_key.in_(repeated),
                )
            )

    def _flush(self) -> None:
        rows, problems = self._rows, self._problems
        self._rows, self._problems = [], []
        if not rows and not problems:
            return
        with self._engine.begin() as conn:
            if rows:
                problems.extend(self._insert(conn, rows))
            if problems:
                conn.execute(
                    upload_rejections.insert(),
                    [_problem_row(self._resource, self._version, p) for p in problems],
                )

    def _insert(self, conn: sa.Connection, rows: list[Accepted]) -> list[Problem]:
        """Insert the chunk's new keys; return the duplicate-key problems it revealed."""
        first: dict[str, Accepted] = {}
        repeats: list[Accepted] = []
        for row in rows:
            if row.key in first:
                repeats.append(row)
            else:
                first[row.key] = row
        inserted = _insert_new(conn, self._resource, self._version, list(first.values()))
        self.accepted += len(inserted)
        clashing = [k for k in first if k not in inserted]
        earlier: dict[str, int] = {}
        if clashing:
            t = upload_rows.c
            found = conn.execute(
                sa.select(t.subject_key, t.line).where(
                    t.resource == self._resource,
                    t.version == self._version,
                    t.subject_key.in_(clashing),
                )
            )
            earlier = {key: int(line) for key, line in found}
        repeats.extend(r for k, r in first.items() if k in earlier)
        if not repeats:
            return []
        return self._duplicate_problems(conn, repeats, earlier, first)

    def _duplicate_problems(
        self,
        conn: sa.Connection,
        repeats: Sequence[Accepted],
        earlier: dict[str, int],
        first: dict[str, Accepted],
    ) -> list[Problem]:
        self._duplicates = True
        keys = sorted({r.key for r in repeats})
        r = upload_rejections.c
        reported = set(
            conn.execute(
                sa.select(r.subject_key)
                .distinct()
                .where(
                    r.resource == self._resource,
                    r.version == self._version,
                    r.code == ProblemCode.DUPLICATE,
                    r.subject_key.in_(keys),
                )
            ).scalars()
        )
        problems: list[Problem] = []
        for key in keys:
            line = earlier[key] if key in earlier else first[key].line
            if key not in reported:
                # The row kept so far is rejected too: which of the two is right is unknown.
                self.accepted -= 1
                self.rejected += 1
                problems.append(
                    Problem(
                        line,
                        key,
                        self._key_column,
                        ProblemCode.DUPLICATE,
                        "the key occurs on more than one row; every such row is rejected",
                    )
                )
            for row in (x for x in repeats if x.key == key):
                self.rejected += 1
                problems.append(
                    Problem(
                        row.line,
                        key,
                        self._key_column,
                        ProblemCode.DUPLICATE,
                        f"the key already occurs on line {line}; every such row is rejected",
                    )
                )
        return problems


class _Retry(Exception):
    """The pointer changed between reading and swapping it: read it again."""


def make_current(
    engine: sa.Engine,
    *,
    resource: str,
    version: int,
    accepted: int,
    rejected: int,
    at: dt.datetime,
) -> Flip:
    """Flip the resource's pointer to ``version`` — one short transaction, compare-and-swap,
    so that two workers finishing uploads of the same resource cannot interleave."""
    for _attempt in range(10):
        try:
            with engine.begin() as conn:
                flip = _flip(conn, resource, version, at)
                done = conn.execute(
                    upload_versions.update()
                    .where(_of(resource, version), upload_versions.c.state == VersionState.LOADING)
                    .values(
                        state=VersionState.CURRENT if flip.current else VersionState.REPLACED,
                        finished_at=at,
                        rows_accepted=accepted,
                        rows_rejected=rejected,
                        previous_version=flip.previous,
                    )
                )
                if done.rowcount != 1:
                    # Pruned as stale while loading: the rollback also undoes the flip.
                    raise VersionPruned(f"{resource} version {version}")
                if flip.current and flip.previous is not None:
                    conn.execute(
                        upload_versions.update()
                        .where(_of(resource, flip.previous))
                        .values(state=VersionState.REPLACED)
                    )
                return flip
        except _Retry:
            continue
        except IntegrityError:
            continue  # two first versions raced to create the pointer row: read it again
    raise RuntimeError(f"could not make {resource} version {version} current")


def _flip(conn: sa.Connection, resource: str, version: int, at: dt.datetime) -> Flip:
    c = upload_current.c
    previous = conn.execute(sa.select(c.version).where(c.resource == resource)).scalar_one_or_none()
    if previous is None:
        conn.execute(
            upload_current.insert().values(resource=resource, version=version, updated_at=at)
        )
        return Flip(None, True)
    if previous >= version:
        return Flip(int(previous), False)  # a newer upload is already current: it wins
    swapped = conn.execute(
        upload_current.update()
        .where(c.resource == resource, c.version == previous)
        .values(version=version, updated_at=at)
    )
    if swapped.rowcount != 1:
        raise _Retry
    return Flip(int(previous), True)


def _delete_rows(engine: sa.Engine, resource: str, version: int, *, report: bool = True) -> None:
    """Delete a version's rows (and its report, if ``report``) in chunks: one statement
    over a million rows would hold the write lock (SQLite) or hit the statement timeout
    (PostgreSQL)."""
    targets: list[tuple[sa.Table, sa.Column[Any]]] = [(upload_rows, upload_rows.c.subject_key)]
    if report:
        targets.append((upload_rejections, upload_rejections.c.line))
    for table, pick in targets:
        where = (table.c.resource == resource, table.c.version == version)
        while True:
            chunk = sa.select(pick).where(*where).limit(_DELETE_CHUNK).scalar_subquery()
            with engine.begin() as conn:
                if conn.execute(table.delete().where(*where, pick.in_(chunk))).rowcount == 0:
                    break


def refuse_version(
    engine: sa.Engine,
    *,
    resource: str,
    version: int,
    detail: str,
    rejected: int,
    at: dt.datetime,
    keep_report: bool,
) -> None:
    """Mark a version that will never be current as refused and delete its rows (and its
    rejections, unless ``keep_report``: the uploader may still want them)."""
    with engine.begin() as conn:
        conn.execute(
            upload_versions.update()
            .where(_of(resource, version))
            .values(
                state=VersionState.REFUSED,
                finished_at=at,
                rows_accepted=0,
                rows_rejected=rejected,
                detail=detail[:500],
            )
        )
    _delete_rows(engine, resource, version, report=not keep_report)


def prune_versions(engine: sa.Engine, *, resource: str, keep: int, now: dt.datetime) -> list[int]:
    """Delete the rows and reports of old versions; return the versions pruned.

    Kept: the ``keep`` newest accepted versions (the current one among them, always); refused
    versions newer than the oldest of those (their reports may still be wanted); versions
    still loading unless they began more than a day ago (their upload died).
    """
    v = upload_versions.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(v.version, v.state, v.uploaded_at)
            .where(v.resource == resource, v.state != VersionState.PRUNED)
            .order_by(v.version.desc())
        ).all()
        current = conn.execute(
            sa.select(upload_current.c.version).where(upload_current.c.resource == resource)
        ).scalar_one_or_none()
    accepted = [r.version for r in rows if r.state in (VersionState.CURRENT, VersionState.REPLACED)]
    kept = set(accepted[:keep])
    # Refused versions go once ``keep`` accepted versions are newer than them.
    cutoff = accepted[keep - 1] if len(accepted) >= keep else None
    pruned: list[int] = []
    for version, state, uploaded_at in rows:
        if version == current or version in kept:
            continue
        if state == VersionState.LOADING:
            if now - _utc(uploaded_at) < _STALE_LOADING:
                continue  # an upload still in progress, perhaps a very large one
        elif state == VersionState.REFUSED and (cutoff is None or version > cutoff):
            continue
        with engine.begin() as conn:
            # Marked first: a loading version marked pruned can no longer be made current.
            conn.execute(
                upload_versions.update()
                .where(_of(resource, version), v.state == state)
                .values(state=VersionState.PRUNED)
            )
        _delete_rows(engine, resource, version)
        pruned.append(int(version))
    return sorted(pruned)


_CURRENT = (
    sa.select(upload_rows.c.data, upload_versions.c.version, upload_versions.c.uploaded_at)
    .select_from(
        upload_current.join(
            upload_versions,
            sa.and_(
                upload_versions.c.resource == upload_current.c.resource,
                upload_versions.c.version == upload_current.c.version,
            ),
        ).join(
            upload_rows,
            sa.and_(
                upload_rows.c.resource == upload_current.c.resource,
                upload_rows.c.version == upload_current.c.version,
            ),
        )
    )
    .where(
        upload_current.c.resource == sa.bindparam("resource"),
        upload_rows.c.subject_key == sa.bindparam("subject"),
    )
)


def read_current(conn: sa.Connection, *, resource: str, subject: str) -> CurrentRow | None:
    """The subject's row in the current version: pointer, version and row in ONE statement,
    so a version replaced meanwhile can never mix into the answer."""
    row = conn.execute(_CURRENT, {"resource": resource, "subject": subject}).first()
    if row is None:
        return None
    return CurrentRow(row.data, int(row.version), _utc(row.uploaded_at))


def version_info(engine: sa.Engine, *, resource: str, version: int) -> VersionInfo | None:
    """The record of one version, if it exists."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(upload_versions).where(_of(resource, version))).first()
    if row is None:
        return None
    m = row._mapping
    return VersionInfo(
        resource=m["resource"],
        version=int(m["version"]),
        state=VersionState(m["state"]),
        format=m["format"],
        sha256=m["sha256"],
        bytes=int(m["bytes"]),
        uploaded_at=_utc(m["uploaded_at"]),
        finished_at=None if m["finished_at"] is None else _utc(m["finished_at"]),
        uploader=m["uploader"],
        operator=m["operator"],
        rows_accepted=int(m["rows_accepted"]),
        rows_rejected=int(m["rows_rejected"]),
        previous_version=m["previous_version"],
        detail=m["detail"],
    )


def _problems(
    conn: sa.Connection, resource: str, version: int, after: tuple[int, str], limit: int
) -> list[Problem]:
    r = upload_rejections.c
    rows = conn.execute(
        sa.select(r.line, r.subject_key, r.field, r.code, r.reason)
        .where(
            r.resource == resource,
            r.version == version,
            sa.tuple_(r.line, r.field) > sa.tuple_(sa.literal(after[0]), sa.literal(after[1])),
        )
        .order_by(r.line, r.field)
        .limit(limit)
    ).all()
    return [Problem(int(x.line), x.subject_key, x.field, x.code, x.reason) for x in rows]


def first_rejections(
    engine: sa.Engine, *, resource: str, version: int, limit: int
) -> list[Problem]:
    """The first ``limit`` problems of a version's report, in line order."""
    with engine.connect() as conn:
        return _problems(conn, resource, version, (-1, ""), limit)


def iter_rejections(
    engine: sa.Engine, *, resource: str, version: int, page: int = 5000
) -> Iterator[list[Problem]]:
    """A version's whole report, page by page in line order (keyset pagination: each page is
    one short query, so a report of a million lines streams in bounded memory)."""
    after = (-1, "")
    while True:
        with engine.connect() as conn:
            problems = _problems(conn, resource, version, after, page)
        if not problems:
            return
        yield problems
        after = (problems[-1].line, problems[-1].field)
