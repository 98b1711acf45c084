"""Reports from the stored log, at a signed checkpoint; and their verification.

A report is computed at one signed checkpoint (the latest, or the one of a given size): the
entries ``1..size`` are read, their leaves recomputed and the tree's root held against the
checkpoint's — a report is never computed from entries that no longer give the root the
gateway signed. ``gateway report verify`` does the same from a published report: the
checkpoint it names must verify with the gateway's JWKS, the stored entries must give its
root, and the figures recomputed from them must be the published ones.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import sqlalchemy as sa

from gateway.audit.tree import leaf_bytes
from gateway.audit.verify import ENTRY_PAGE, stored_entries, stored_leaves
from gateway.core import merkle
from gateway.core.jose import JoseError, claims_of, parse_compact
from gateway.core.keyring import GatewayKeyRefused, verify_gateway_jws
from gateway.core.policy import PolicySet
from gateway.core.protocol import TokenType
from gateway.errors import Error, InvalidInput
from gateway.reporting.figures import Entry, Period
from gateway.reporting.report import (
    DEFAULT_OFFICE,
    FORMAT,
    CheckpointRef,
    Report,
    build_report,
    differences,
    public_view,
    report_dict,
)
from gateway.storage.schema import audit_checkpoints

__all__ = [
    "ReportService",
    "ReportUnavailable",
    "Verification",
    "labels_of",
    "providers_of",
]


class ReportUnavailable(Error):
    """No report can be computed: no signed checkpoint yet, or the log does not match it."""

    status, slug, title = 409, "report-unavailable", "No report can be computed now"


@dataclass
class Verification:
    """What ``report verify`` found: ``ok`` only when nothing differs."""

    checkpoint_size: int = 0
    problems: list[str] = field(default_factory=list)
    first_changed_entry: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def providers_of(policy: PolicySet) -> dict[str, str]:
    """Each catalogued resource's provider."""
    return {r.id: r.provider for r in policy.resources.values()}


def labels_of(policy: PolicySet) -> dict[str, dict[str, str]]:
    """The names a report prints beside ids (not figures: never compared)."""
    return {
        "departments": {d.id: d.name for d in policy.departments.values()},
        "items": {i.code: i.name for i in policy.items.values()},
        "resources": {r.id: r.name for r in policy.resources.values()},
    }


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _entry(row: sa.RowMapping) -> Entry:
    return Entry(
        index=int(row["idx"]),
        at=_aware(row["at"]),
        event=row["event"],
        decision=row["decision"],
        department=row["department"],
        service_item=row["service_item"],
        case_number=row["case_number"],
        resource=row["resource"],
        subject_hmac=row["subject_hmac"],
        reason_code=row["reason_code"],
        detail=row["detail"],
        withholds=row["withholds"],
    )


@dataclass
class _Read:
    entries: list[Entry]
    root: str
    count: int
    first_changed: int | None  # the first entry that no longer hashes to its stored leaf
    gap: int | None  # the first index missing


def _read(conn: sa.Connection, size: int) -> _Read:
    """Entries ``1..size``, the root they give, and where they differ from the stored tree."""
    tree = merkle.MemoryTree()
    entries: list[Entry] = []
    first_changed = gap = None
    stored: dict[int, bytes] = {}
    expected = 1
    for row in stored_entries(conn, upto=size):
        index = int(row["idx"])
        if index != expected and gap is None:
            gap = expected
        expected = index + 1
        leaf = merkle.leaf_hash(leaf_bytes(row))
        if index - 1 not in stored:
            stored = stored_leaves(conn, index - 1, index - 1 + ENTRY_PAGE)
        if first_changed is None and stored.get(index - 1) != leaf:
            first_changed = index
        tree.append(leaf)
        entries.append(_entry(row))
    root = merkle.root(tree.size, tree).hex() if tree.size else merkle.EMPTY_ROOT.hex()
    return _Read(entries, root, tree.size, first_changed, gap)


def check_checkpoint_token(
    token: str, jwks: Mapping[str, Any], issuer: str
) -> tuple[int, str, dt.datetime]:
    """The size, root and signing time a checkpoint token signs; InvalidInput naming why
    it is not a checkpoint of this gateway."""
    try:
        # The key its kid names among the gateway's (ES256 or SM2), in force when it was
        # signed, in that key's algorithm.
        _, claims = verify_gateway_jws(token, jwks=jwks, typ=TokenType.AUDIT_CHECKPOINT)
    except GatewayKeyRefused as exc:
        raise InvalidInput("checkpoint.token", f"does not verify ({exc})") from None
    if claims.get("iss") != issuer:
        raise InvalidInput("checkpoint.token", "is not this gateway's (iss)")
    if not isinstance(claims.get("iat"), int):
        raise InvalidInput("checkpoint.token", "has no signing time (iat)")
    size, root = claims.get("size"), claims.get("root")
    if not isinstance(size, int) or not isinstance(root, str):
        raise InvalidInput("checkpoint.token", "has no size and root")
    return size, root, dt.datetime.fromtimestamp(int(claims["iat"]), dt.UTC)


def _unverified_iat(token: str) -> object:
    """The ``iat`` a stored checkpoint says (not verified here: the report's verification
    checks the token)."""
    try:
        claims = claims_of(parse_compact(token, allowed_members={"alg", "kid", "typ"}))
    except JoseError:
        return None
    return claims.get("iat") if claims is not None else None


class ReportService:
    """Computes and verifies reports over one gateway's stored log."""

    def __init__(
        self,
        *,
        engine: sa.Engine,
        gateway_id: str,
        gateway_jwks: Callable[[], Mapping[str, Any]],
        policy: Callable[[], PolicySet],
        office: str = DEFAULT_OFFICE,
    ) -> None:
        self._engine = engine
        self._gateway_id = gateway_id
        self._jwks = gateway_jwks
        self._policy = policy
        self._office = office

    def _checkpoint(self, conn: sa.Connection, size: int | None) -> CheckpointRef:
        query = sa.select(audit_checkpoints)
        if size is None:
            query = query.order_by(audit_checkpoints.c.size.desc()).limit(1)
        else:
            query = query.where(audit_checkpoints.c.size == size)
        row = conn.execute(query).first()
        if row is None:
            if size is None:
                raise ReportUnavailable("the log has no signed checkpoint yet")
            raise InvalidInput("size", f"no signed checkpoint of {size} entries")
        # The signed time is the token's (whole seconds), what a verifier reads from it.
        iat = _unverified_iat(row.token)
        at = dt.datetime.fromtimestamp(int(iat), dt.UTC) if isinstance(iat, int) else _aware(row.at)
        return CheckpointRef(
            size=int(row.size), root=str(row.root), signed_at=at.isoformat(), token=row.token
        )

    def report(
        self,
        period: Period,
        *,
        now: dt.datetime,
        size: int | None = None,
        office: str | None = None,
    ) -> Report:
        """The full report of ``period`` at the latest signed checkpoint (or the one of
        ``size`` entries). ReportUnavailable when the stored entries do not give its root."""
        if size is not None and size < 1:
            raise InvalidInput("size", "must be at least 1")
        with self._engine.connect() as conn:
            checkpoint = self._checkpoint(conn, size)
            read = _read(conn, checkpoint.size)
        if read.count != checkpoint.size or read.root != checkpoint.root:
            raise ReportUnavailable(
                f"the stored entries 1..{checkpoint.size} no longer give the root of the signed "
                f"checkpoint ({_where(read)}): run `gateway audit verify`"
            )
        policy = self._policy()
        return build_report(
            read.entries,
            period,
            checkpoint=checkpoint,
            providers=providers_of(policy),
            labels=_labels_with_providers(policy),
            office=office or self._office,
            now=now,
        )

    def verify(self, published: Mapping[str, Any], *, now: dt.datetime) -> Verification:
        """Recompute ``published`` (a report as JSON, full or public form) from the stored
        entries at the checkpoint it names; every difference found."""
        result = Verification()
        try:
            doc = _parsed(published)
        except InvalidInput as exc:
            result.problems.append(f"not a report: {exc}")
            return result
        stated = doc.checkpoint
        result.checkpoint_size = stated.size
        try:
            size, root, signed_at = check_checkpoint_token(
                stated.token, self._jwks(), self._gateway_id
            )
        except InvalidInput as exc:
            result.problems.append(f"the report's checkpoint {exc}")
            return result
        if (size, root) != (stated.size, stated.root):
            result.problems.append(
                f"the report names checkpoint {stated.size} ({stated.root}), its signed token "
                f"says {size} ({root})"
            )
            return result
        with self._engine.connect() as conn:
            read = _read(conn, size)
        if read.count != size or read.root != root:
            result.first_changed_entry = read.first_changed or read.gap
            result.problems.append(
                f"the stored entries 1..{size} no longer give the signed root {root} "
                f"(they give {read.root}; {_where(read)}): the log was changed after the "
                "report was computed"
            )
            return result
        providers = {**providers_of(self._policy())}
        for row in published.get("figures", {}).get("providers", []):
            if isinstance(row, Mapping) and isinstance(row.get("resource"), str):
                providers[row["resource"]] = str(row.get("provider", ""))
        checkpoint = CheckpointRef(
            size=size, root=root, signed_at=signed_at.isoformat(), token=stated.token
        )
        recomputed = build_report(
            read.entries,
            doc.period,
            checkpoint=checkpoint,
            providers=providers,
            labels={},
            office=doc.office,
            now=now,
        )
        if doc.form == "public":
            if doc.threshold is None or doc.threshold < 1:
                result.problems.append("a public report must name its threshold (>= 1)")
                return result
            expected = public_view(recomputed, threshold=doc.threshold)
        else:
            expected = report_dict(recomputed)
        result.problems += differences(dict(published), expected)
        return result


def _labels_with_providers(policy: PolicySet) -> dict[str, dict[str, str]]:
    labels = labels_of(policy)
    labels["providers"] = {
        d: labels["departments"].get(d, d) for d in {r.provider for r in policy.resources.values()}
    }
    return labels


def _where(read: _Read) -> str:
    if read.gap is not None:
        return f"entries missing from {read.gap}"
    if read.first_changed is not None:
        return f"entry {read.first_changed} differs from the leaf written with it"
    return f"{read.count} entries stored"


class _Head(msgspec.Struct, kw_only=True):
    """What verification needs to read first from a published report."""

    format: str
    form: str
    office: str = ""
    period: Period
    checkpoint: CheckpointRef
    threshold: int | None = None


def _parsed(published: Mapping[str, Any]) -> _Head:
    try:
        head = msgspec.convert(published, _Head)
    except msgspec.ValidationError as exc:
        raise InvalidInput("report", str(exc)) from None
    if head.format != FORMAT:
        raise InvalidInput("format", f"must be {FORMAT!r}")
    if head.form not in ("full", "public"):
        raise InvalidInput("form", "must be 'full' or 'public'")
    if head.period.end <= head.period.start:
        raise InvalidInput("period", "ends before it starts")
    return head
