"""Seals, licences, their histories and the status lists, in the gateway's database.

Synchronous SQLAlchemy Core; the services call it through ``asyncio.to_thread``. Every change
is one transaction: a licence, the cancellation of the version it supersedes and both status
entries commit together or not at all. Any database failure surfaces as
:class:`~gateway.errors.StoreUnavailable` (503): a store that is down is never guessed around.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from gateway.core.identifiers import LicenceId
from gateway.core.licences import (
    STATUS_VALUES,
    LicenceContent,
    LicenceRecord,
    LicenceStatus,
    StatusAction,
    canonical_bytes,
    supersedes,
    transition,
)
from gateway.core.seals import (
    RevocationReason,
    Seal,
    SealEvent,
    SealRegistry,
    SealStatus,
    change_seal_status,
)
from gateway.core.status_lists import MIN_ENTRIES, StatusList, StatusRef, allocate_status_entry
from gateway.errors import Error, InvalidInput, StoreUnavailable
from gateway.storage.database import ShortReads
from gateway.storage.prepared import PreparedSelect
from gateway.storage.schema import (
    licence_events,
    licence_store_revision,
    licences,
    seal_events,
    seal_registry_revision,
    seals,
    status_entries,
    status_lists,
)

__all__ = ["LicenceEvent", "LicenceStore", "Published", "StatusChanged"]

_T = TypeVar("_T")

#: A list takes new licences until three quarters of it is handed out, so a random draw
#: finds a free entry at once and the last entries of a list are never predictable.
_LIST_CAPACITY = MIN_ENTRIES * 3 // 4
#: PostgreSQL advisory-lock name serialising status-entry allocation across processes.
_ALLOCATION = "yiwang:status-entry-allocation"


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands timestamps back naive; they were stored in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _base_id(lid: LicenceId) -> str:
    return f"{lid.type_code}.{lid.issuer.value}.{lid.serial}"


@dataclass(frozen=True, slots=True)
class Published:
    """A licence stored, and the older version it superseded (if any)."""

    record: LicenceRecord
    superseded: str | None


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """A licence's status before and after an action."""

    licence_id: str
    previous: LicenceStatus
    status: LicenceStatus
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class LicenceEvent:
    """One entry of a licence's history."""

    at: dt.datetime
    action: str
    status: LicenceStatus
    department: str
    operator: str
    reason: str


#: What a stored licence is made of (:func:`_record_of`), in this order.
_RECORD_COLUMNS = (
    licences.c.content,
    licences.c.sealed,
    licences.c.status,
    licences.c.status_list,
    licences.c.status_index,
    licences.c.superseded_by,
)
#: A verification's read: the registry's and the licences' revisions, and the licence if
#: there is one (each revision's table holds exactly one row, so the outer join always
#: gives them).
_REVISION_AND_LICENCE = PreparedSelect(
    sa.select(
        seal_registry_revision.c.revision, licence_store_revision.c.revision, *_RECORD_COLUMNS
    ).select_from(
        seal_registry_revision.join(licence_store_revision, sa.true()).outerjoin(
            licences, licences.c.licence_id == sa.bindparam("licence_id", type_=sa.String())
        )
    )
)
#: The same read when the licence is kept: the two revisions alone.
_REVISIONS = PreparedSelect(
    sa.select(seal_registry_revision.c.revision, licence_store_revision.c.revision).select_from(
        seal_registry_revision.join(licence_store_revision, sa.true())
    )
)
#: How many licence records a process keeps (~3 KB each).
_KEPT_RECORDS = 4096


@dataclass(frozen=True)
class _KeptRecords:
    """The records a process read at one revision of the stored licences."""

    revision: int
    records: dict[str, LicenceRecord] = field(default_factory=dict)


def _record_of(columns: Sequence[Any]) -> LicenceRecord:
    """A stored licence from the values of :data:`_RECORD_COLUMNS`."""
    content, sealed, status, status_list, status_index, superseded_by = columns
    return LicenceRecord(
        content=msgspec.json.decode(content, type=LicenceContent),
        sealed=sealed,
        status=LicenceStatus(status),
        status_ref=StatusRef(status_list, status_index),
        superseded_by=superseded_by,
    )


class LicenceStore:
    """The licence registry of one database."""

    def __init__(self, engine: sa.Engine, *, rng: random.Random | None = None) -> None:
        self._engine = engine
        self._rng = rng
        self._postgres = engine.dialect.name == "postgresql"
        #: Where its short reads run (on the event loop on SQLite).
        self.reads = ShortReads(engine)
        self._kept = _KeptRecords(-1)

    @contextmanager
    def _begin(self) -> Iterator[sa.Connection]:
        try:
            with self._engine.begin() as conn:
                yield conn
        except (Error, IntegrityError):
            raise
        except SQLAlchemyError:
            raise StoreUnavailable("database") from None

    def _read(self, work: Callable[[sa.Connection], _T]) -> _T:
        try:
            with self._engine.connect() as conn:
                return work(conn)
        except SQLAlchemyError:
            raise StoreUnavailable("database") from None

    # --- seals ----------------------------------------------------------------------------

    def register_seal(self, seal: Seal, *, at: dt.datetime, by: str) -> None:
        """Register ``seal`` (active, no history). Its id and key must be new."""
        SealRegistry([seal])  # the key must parse and be public, as the registry demands
        try:
            with self._begin() as conn:
                conn.execute(
                    seals.insert().values(
                        seal_id=seal.seal_id,
                        kid=SealRegistry.kid_of(seal),
                        name=seal.name,
                        type=seal.type,
                        owner=seal.owner,
                        owner_uscc=seal.owner_uscc,
                        alg=seal.alg,
                        jwk=msgspec.json.encode(seal.jwk).decode(),
                        valid_from=seal.valid_from,
                        valid_until=seal.valid_until,
                        status=str(SealStatus.ACTIVE),
                        registered_at=at,
                        registered_by=by,
                    )
                )
                self._bump_registry(conn)
        except IntegrityError:
            raise InvalidInput(
                "seal_id", "a seal with this id or key is registered, or the owner is unknown"
            ) from None

    def change_seal(
        self,
        seal_id: str,
        status: SealStatus,
        *,
        at: dt.datetime,
        by: str,
        reason: str,
        revocation_reason: RevocationReason | None = None,
    ) -> Seal:
        """Suspend, reinstate or revoke a seal; the change is appended to its history."""
        with self._begin() as conn:
            seal = self._seal(conn, seal_id, lock=True)
            if seal is None:
                raise InvalidInput("seal_id", "no seal with this id")
            changed = change_seal_status(
                seal, status, at=at, by=by, reason=reason, revocation_reason=revocation_reason
            )
            conn.execute(
                seals.update().where(seals.c.seal_id == seal_id).values(status=str(status))
            )
            conn.execute(
                seal_events.insert().values(
                    seal_id=seal_id,
                    seq=len(changed.history),
                    at=at,
                    status=str(status),
                    by=by,
                    reason=reason,
                    revocation_reason=None if revocation_reason is None else str(revocation_reason),
                )
            )
            self._bump_registry(conn)
            return changed

    @staticmethod
    def _bump_registry(conn: sa.Connection) -> None:
        conn.execute(
            seal_registry_revision.update().values(revision=seal_registry_revision.c.revision + 1)
        )

    def registry_revision(self) -> int:
        """A number that changes whenever any seal does (one cheap read)."""
        return self._read(
            lambda conn: int(
                conn.execute(sa.select(seal_registry_revision.c.revision)).scalar_one()
            )
        )

    def _seal(self, conn: sa.Connection, seal_id: str, *, lock: bool = False) -> Seal | None:
        query = sa.select(seals).where(seals.c.seal_id == seal_id)
        if lock and self._postgres:
            query = query.with_for_update()
        row = conn.execute(query).mappings().first()
        if row is None:
            return None
        return self._seal_from(row, self._seal_history(conn, [seal_id]).get(seal_id, ()))

    @staticmethod
    def _seal_history(
        conn: sa.Connection, seal_ids: Sequence[str] | None
    ) -> dict[str, tuple[SealEvent, ...]]:
        query = sa.select(seal_events).order_by(seal_events.c.seal_id, seal_events.c.seq)
        if seal_ids is not None:
            query = query.where(seal_events.c.seal_id.in_(seal_ids))
        history: dict[str, list[SealEvent]] = {}
        for row in conn.execute(query).mappings():
            history.setdefault(row["seal_id"], []).append(
                SealEvent(
                    at=_utc(row["at"]),
                    status=SealStatus(row["status"]),
                    by=row["by"],
                    reason=row["reason"],
                    revocation_reason=(
                        None
                        if row["revocation_reason"] is None
                        else RevocationReason(row["revocation_reason"])
                    ),
                )
            )
        return {k: tuple(v) for k, v in history.items()}

    @staticmethod
    def _seal_from(row: Any, history: tuple[SealEvent, ...]) -> Seal:
        return Seal(
            seal_id=row["seal_id"],
            name=row["name"],
            type=row["type"],
            owner=row["owner"],
            owner_uscc=row["owner_uscc"],
            jwk=msgspec.json.decode(row["jwk"]),
            alg=row["alg"],
            valid_from=row["valid_from"],
            valid_until=row["valid_until"],
            status=SealStatus(row["status"]),
            history=history,
        )

    def seals(self) -> list[Seal]:
        """Every registered seal with its history, ordered by id."""

        def work(conn: sa.Connection) -> list[Seal]:
            history = self._seal_history(conn, None)
            rows = conn.execute(sa.select(seals).order_by(seals.c.seal_id)).mappings()
            return [self._seal_from(row, history.get(row["seal_id"], ())) for row in rows]

        return self._read(work)

    def registry(self) -> tuple[int, SealRegistry]:
        """The registry revision and every seal, read in one transaction."""

        def work(conn: sa.Connection) -> tuple[int, SealRegistry]:
            revision = int(conn.execute(sa.select(seal_registry_revision.c.revision)).scalar_one())
            history = self._seal_history(conn, None)
            rows = conn.execute(sa.select(seals).order_by(seals.c.seal_id)).mappings()
            return revision, SealRegistry(
                self._seal_from(row, history.get(row["seal_id"], ())) for row in rows
            )

        try:
            with self._engine.begin() as conn:
                return work(conn)
        except SQLAlchemyError:
            raise StoreUnavailable("database") from None

    # --- status entries -------------------------------------------------------------------

    def reserve(self, *, licence_id: LicenceId, department: str, at: dt.datetime) -> StatusRef:
        """The status entry for ``licence_id``: the one reserved before, or a new random one."""
        for _attempt in range(8):
            try:
                with self._begin() as conn:
                    self._serialise_allocation(conn)
                    existing = conn.execute(
                        sa.select(
                            status_entries.c.list_id,
                            status_entries.c.idx,
                            status_entries.c.department,
                        ).where(status_entries.c.licence_id == licence_id.value)
                    ).first()
                    if existing is not None:
                        if existing.department != department:
                            raise InvalidInput("licence_id", "is reserved by another department")
                        return StatusRef(existing.list_id, existing.idx)
                    ref = self._allocate(conn, at)
                    conn.execute(
                        status_entries.insert().values(
                            list_id=ref.list_id,
                            idx=ref.index,
                            licence_id=licence_id.value,
                            department=department,
                            reserved_at=at,
                            value=STATUS_VALUES[LicenceStatus.VALID],
                        )
                    )
                    conn.execute(
                        status_lists.update()
                        .where(status_lists.c.list_id == ref.list_id)
                        .values(allocated=status_lists.c.allocated + 1)
                    )
                    return ref
            except IntegrityError:
                continue  # another process took the entry (or the list id): draw again
        raise StoreUnavailable("status lists")

    def _serialise_allocation(self, conn: sa.Connection) -> None:
        """One allocation at a time across processes: otherwise two first reservations both
        find no open list, and each opens one."""
        if self._postgres:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(_ALLOCATION))))
        else:
            # A write statement takes SQLite's write lock for the rest of the transaction,
            # even when it changes no row, so the reads that follow are not overtaken.
            conn.execute(status_lists.update().where(sa.false()).values(allocated=0))

    def _allocate(self, conn: sa.Connection, at: dt.datetime) -> StatusRef:
        open_lists = [
            row.list_id
            for row in conn.execute(
                sa.select(status_lists.c.list_id).where(status_lists.c.allocated < _LIST_CAPACITY)
            )
        ]
        used: dict[str, set[int]] = {list_id: set() for list_id in open_lists}
        if open_lists:
            for row in conn.execute(
                sa.select(status_entries.c.list_id, status_entries.c.idx).where(
                    status_entries.c.list_id.in_(open_lists)
                )
            ):
                used[row.list_id].add(row.idx)
        created: list[str] = []

        def new_list_id() -> str:
            count = conn.execute(sa.select(sa.func.count()).select_from(status_lists)).scalar_one()
            list_id = f"{int(count) + 1:04d}"
            conn.execute(
                status_lists.insert().values(
                    list_id=list_id, size=MIN_ENTRIES, allocated=0, created_at=at
                )
            )
            created.append(list_id)
            return list_id

        return allocate_status_entry(
            used, new_list_id=new_list_id, size=MIN_ENTRIES, capacity=_LIST_CAPACITY, rng=self._rng
        )

    def reservation(self, licence_id: str) -> tuple[str, StatusRef] | None:
        """Who reserved the status entry of ``licence_id``, and which entry."""

        def work(conn: sa.Connection) -> tuple[str, StatusRef] | None:
            row = conn.execute(
                sa.select(status_entries).where(status_entries.c.licence_id == licence_id)
            ).first()
            return None if row is None else (row.department, StatusRef(row.list_id, row.idx))

        return self._read(work)

    def status_list(self, list_id: str) -> StatusList | None:
        """The current list ``list_id`` (None if there is no such list)."""

        def work(conn: sa.Connection) -> StatusList | None:
            size = conn.execute(
                sa.select(status_lists.c.size).where(status_lists.c.list_id == list_id)
            ).scalar_one_or_none()
            if size is None:
                return None
            status_list = StatusList(list_id, int(size))
            for row in conn.execute(
                sa.select(status_entries.c.idx, status_entries.c.value).where(
                    status_entries.c.list_id == list_id, status_entries.c.value != 0
                )
            ):
                status_list.set(row.idx, row.value)
            return status_list

        return self._read(work)

    def status_list_ids(self) -> list[str]:
        """Every status list, oldest first."""
        return self._read(
            lambda conn: [
                r.list_id
                for r in conn.execute(sa.select(status_lists.c.list_id).order_by("list_id"))
            ]
        )

    # --- licences -------------------------------------------------------------------------

    def publish(
        self,
        content: LicenceContent,
        sealed: str,
        *,
        department: str,
        operator: str,
        at: dt.datetime,
    ) -> Published:
        """Store a checked licence; a newer version cancels (supersedes) the current one.

        The content's status entry must be the one ``department`` reserved for this
        identifier. Raises :class:`InvalidInput` for an identifier already published, an
        older version, or a status entry that is not this licence's.
        """
        lid = LicenceId.parse(content.licence_id)
        base = _base_id(lid)
        try:
            with self._begin() as conn:
                if self._postgres:
                    # Versions of one licence are published one at a time across processes.
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(base))))
                entry = conn.execute(
                    sa.select(status_entries).where(status_entries.c.licence_id == lid.value)
                ).first()
                if (
                    entry is None
                    or entry.department != department
                    or content.status != StatusRef(entry.list_id, entry.idx)
                ):
                    raise InvalidInput(
                        "content.status",
                        "is not the entry reserved for this licence (POST /v1/licences:reserve)",
                    )
                current = conn.execute(
                    sa.select(licences.c.licence_id, licences.c.status)
                    .where(licences.c.base_id == base)
                    .order_by(licences.c.version.desc())
                    .limit(1)
                ).first()
                if current is not None and current.licence_id == lid.value:
                    raise InvalidInput("licence_id", "is already published")
                older = supersedes(
                    lid, None if current is None else LicenceId.parse(current.licence_id)
                )
                conn.execute(
                    licences.insert().values(
                        licence_id=lid.value,
                        base_id=base,
                        version=int(lid.version),
                        type_code=content.type_code,
                        issuer=department,
                        holder_id=content.holder_id,
                        content=canonical_bytes(content).decode(),
                        content_sha256=hashlib.sha256(canonical_bytes(content)).hexdigest(),
                        sealed=sealed,
                        status=str(LicenceStatus.VALID),
                        status_list=entry.list_id,
                        status_index=entry.idx,
                        published_at=at,
                    )
                )
                self._event(
                    conn,
                    lid.value,
                    at=at,
                    action="issue",
                    status=LicenceStatus.VALID,
                    department=department,
                    operator=operator,
                    reason="issued",
                )
                superseded = None
                if (
                    older
                    and current is not None
                    and current.status
                    in (
                        LicenceStatus.VALID,
                        LicenceStatus.SUSPENDED,
                    )
                ):
                    superseded = current.licence_id
                    self._set_status(
                        conn,
                        current.licence_id,
                        LicenceStatus.CANCELLED,
                        at=at,
                        action="supersede",
                        department=department,
                        operator=operator,
                        reason=f"superseded by {lid.value}",
                        superseded_by=lid.value,
                    )
                record = LicenceRecord(
                    content=content,
                    sealed=sealed,
                    status=LicenceStatus.VALID,
                    status_ref=StatusRef(entry.list_id, entry.idx),
                )
                return Published(record, superseded)
        except IntegrityError:
            raise InvalidInput("licence_id", "this version is already published") from None

    def change_status(
        self,
        licence_id: str,
        action: StatusAction,
        *,
        department: str,
        operator: str,
        reason: str,
        at: dt.datetime,
    ) -> StatusChanged:
        """Apply ``action`` to a licence of ``department``; the event joins its history."""
        with self._begin() as conn:
            query = sa.select(licences.c.status, licences.c.issuer).where(
                licences.c.licence_id == licence_id
            )
            if self._postgres:
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None or row.issuer != department:
                # Another issuer's licence is reported as absent: no probing of identifiers.
                raise InvalidInput("licence_id", "no licence of yours with this identifier")
            previous = LicenceStatus(row.status)
            status = transition(previous, action)
            self._set_status(
                conn,
                licence_id,
                status,
                at=at,
                action=str(action),
                department=department,
                operator=operator,
                reason=reason,
            )
            return StatusChanged(licence_id, previous, status, at)

    def _set_status(
        self,
        conn: sa.Connection,
        licence_id: str,
        status: LicenceStatus,
        *,
        at: dt.datetime,
        action: str,
        department: str,
        operator: str,
        reason: str,
        superseded_by: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": str(status)}
        if superseded_by is not None:
            values["superseded_by"] = superseded_by
        conn.execute(licences.update().where(licences.c.licence_id == licence_id).values(**values))
        conn.execute(
            status_entries.update()
            .where(status_entries.c.licence_id == licence_id)
            .values(value=STATUS_VALUES[status])
        )
        self._event(
            conn,
            licence_id,
            at=at,
            action=action,
            status=status,
            department=department,
            operator=operator,
            reason=reason,
        )

    @staticmethod
    def _event(
        conn: sa.Connection,
        licence_id: str,
        *,
        at: dt.datetime,
        action: str,
        status: LicenceStatus,
        department: str,
        operator: str,
        reason: str,
    ) -> None:
        seq = conn.execute(
            sa.select(sa.func.count())
            .select_from(licence_events)
            .where(licence_events.c.licence_id == licence_id)
        ).scalar_one()
        conn.execute(
            licence_events.insert().values(
                licence_id=licence_id,
                seq=int(seq) + 1,
                at=at,
                action=action,
                status=str(status),
                department=department,
                operator=operator,
                reason=reason[:256],
            )
        )

    @staticmethod
    def _record(row: Any) -> LicenceRecord:
        return _record_of([row._mapping[column] for column in _RECORD_COLUMNS])

    def get(self, licence_id: str) -> LicenceRecord | None:
        """The stored licence ``licence_id``, or None."""

        def work(conn: sa.Connection) -> LicenceRecord | None:
            row = conn.execute(
                sa.select(licences).where(licences.c.licence_id == licence_id)
            ).first()
            return None if row is None else self._record(row)

        return self._read(work)

    def by_holder(self, type_code: str, holder_id: str) -> LicenceRecord | None:
        """The holder's current licence of a type: the newest one not superseded, preferring
        a live (valid or suspended) one over ended ones."""

        def work(conn: sa.Connection) -> LicenceRecord | None:
            live = sa.case((licences.c.status.in_(["valid", "suspended"]), 0), else_=1)
            row = conn.execute(
                sa.select(licences)
                .where(
                    licences.c.type_code == type_code,
                    licences.c.holder_id == holder_id,
                    licences.c.superseded_by.is_(None),
                )
                .order_by(live, licences.c.published_at.desc(), licences.c.licence_id)
                .limit(1)
            ).first()
            return None if row is None else self._record(row)

        return self._read(work)

    def get_with_revision(self, licence_id: str | None) -> tuple[int, LicenceRecord | None]:
        """The seal registry's revision and the stored licence: what a verification reads
        (the registry itself only when its revision moved).

        A record read before is used again while the licences' revision — moved by the
        database with every change of a licence (migration 0014) — is the one it was read
        at: one row read instead of the record's pages (the store is the truth; what is
        kept is a copy, checked against it on every read).
        """
        kept = self._kept
        record = None if licence_id is None else kept.records.get(licence_id)
        try:
            if record is not None:
                [(seal_revision, revision)] = _REVISIONS.read(self._engine)
                if int(revision) == kept.revision:
                    return int(seal_revision), record
            rows = _REVISION_AND_LICENCE.read(self._engine, licence_id=licence_id)
        except (SQLAlchemyError, ValueError):  # ValueError: not the one row of each revision
            raise StoreUnavailable("database") from None
        if len(rows) != 1:  # each revision's one row is made by the migrations
            raise StoreUnavailable("database")
        seal_revision, revision, *columns = rows[0]
        if columns[0] is None:
            return int(seal_revision), None
        record = _record_of(columns)
        assert licence_id is not None  # a row was found by it
        if int(revision) != kept.revision:
            kept = self._kept = _KeptRecords(int(revision))
        if len(kept.records) < _KEPT_RECORDS:
            kept.records[licence_id] = record
        return int(seal_revision), record

    def history(self, licence_id: str) -> list[LicenceEvent]:
        """Every status event of ``licence_id``, oldest first."""

        def work(conn: sa.Connection) -> list[LicenceEvent]:
            rows = conn.execute(
                sa.select(licence_events)
                .where(licence_events.c.licence_id == licence_id)
                .order_by(licence_events.c.seq)
            )
            return [
                LicenceEvent(
                    _utc(r.at),
                    r.action,
                    LicenceStatus(r.status),
                    r.department,
                    r.operator,
                    r.reason,
                )
                for r in rows
            ]

        return self._read(work)

    def licence_ids(self, *, issuer: str | None = None) -> list[str]:
        """Identifiers of stored licences (optionally of one issuer), sorted."""

        def work(conn: sa.Connection) -> list[str]:
            query = sa.select(licences.c.licence_id).order_by(licences.c.licence_id)
            if issuer is not None:
                query = query.where(licences.c.issuer == issuer)
            return [r.licence_id for r in conn.execute(query)]

        return self._read(work)
