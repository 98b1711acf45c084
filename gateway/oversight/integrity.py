"""What the officers' pages show of the log's integrity: the latest signed checkpoint, one
entry with its inclusion proof checked here, a full verification on demand (its last result
kept by the service, per process), and hourly counts for the charts."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

from gateway.audit.transparency import TransparencyLog
from gateway.audit.tree import leaf_bytes
from gateway.audit.verify import verify_log
from gateway.core import merkle
from gateway.core.keyring import GatewayKeyRefused, verify_gateway_jws
from gateway.core.protocol import TokenType
from gateway.oversight.alerts import READ_EVENTS
from gateway.oversight.search import entry_json
from gateway.storage.schema import audit_entries

__all__ = ["IntegrityService"]

#: (department, UTC hour, lookups) and (UTC hour, refusals).
HourlyCounts = tuple[list[tuple[str, str, int]], list[tuple[str, int]]]


def _hour_bucket(dialect: str) -> sa.ColumnElement[str]:
    e = audit_entries.c
    if dialect == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", e.at), 'YYYY-MM-DD"T"HH24')
    return sa.func.strftime("%Y-%m-%dT%H", e.at)


class IntegrityService:
    """The log's integrity as security officers see it. Construct once per process."""

    def __init__(
        self,
        *,
        engine: sa.Engine,
        transparency: TransparencyLog,
        gateway_jwks: Callable[[], Mapping[str, Any]],
        gateway_id: str,
    ) -> None:
        self._engine = engine
        self._transparency = transparency
        # The JWKS as this process publishes it now: a rotation reaches it without a restart.
        self._jwks = gateway_jwks
        self._gateway_id = gateway_id
        self._last_verification: dict[str, Any] | None = None

    @property
    def last_verification(self) -> dict[str, Any] | None:
        """The result of the last verification asked for in this process, if any."""
        return self._last_verification

    async def verify(self, *, by: str, now: float) -> dict[str, Any]:
        """Recompute the whole tree (in a thread) and keep the result."""
        report = await asyncio.to_thread(
            verify_log, self._engine, gateway_jwks=self._jwks(), issuer=self._gateway_id
        )
        self._last_verification = {
            "ok": report.ok,
            "at": dt.datetime.fromtimestamp(now, dt.UTC).isoformat().replace("+00:00", "Z"),
            "entries": report.entries,
            "tree_size": report.tree_size,
            "checkpoints": report.checkpoints,
            "first_bad_entry": report.first_bad_entry,
            # Code and numbers for the page's own sentence, the English one for ?lang=en.
            "problems": [
                {"code": str(p.code), "details": dict(p.details), "message": p.message}
                for p in report.found
            ],
            "by": by,
        }
        return self._last_verification

    def checkpoint_claims(self) -> tuple[dict[str, Any] | None, str | None]:
        """The latest checkpoint's claims, its signature checked with the gateway's key, or
        ``(None, "signature_bad")`` (synchronous; call through a thread)."""
        latest = self._transparency.latest()
        if latest is None:
            return None, None
        try:
            _, claims = verify_gateway_jws(
                latest.token, jwks=self._jwks(), typ=TokenType.AUDIT_CHECKPOINT
            )
        except GatewayKeyRefused:
            return None, "signature_bad"
        claims["at"] = latest.at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        return claims, None

    async def entry_with_proof(self, index: int) -> dict[str, Any] | None:
        """The entry, its leaf, its inclusion proof in the latest signed checkpoint (status
        ``verified``, ``failed``, or ``pending`` while no checkpoint covers it yet) and the
        seconds between two checkpoints (``checkpoint_interval``); None if no such entry."""
        return await asyncio.to_thread(self._entry_with_proof, index)

    def _entry_with_proof(self, index: int) -> dict[str, Any] | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(audit_entries).where(audit_entries.c.idx == index)).first()
        if row is None:
            return None
        leaf = leaf_bytes(row._mapping)
        leaf_hash = merkle.leaf_hash(leaf)
        claims, problem = self.checkpoint_claims()
        # "pending": no signed checkpoint covers the entry yet (the next one will, within
        # the checkpoint interval); every key is there whatever the status.
        proof: dict[str, Any] = {
            "status": "pending",
            "problem": problem,
            "checkpoint": claims,
            "hashes": [],
        }
        if claims is not None and index <= int(claims["size"]):
            size = int(claims["size"])
            answer = self._transparency.inclusion(index, size)
            hashes = [bytes.fromhex(h) for h in answer["proof"]]
            ok = merkle.verify_inclusion(
                leaf_hash, index - 1, size, hashes, bytes.fromhex(str(claims["root"]))
            )
            proof.update(
                status="verified" if ok else "failed",
                problem=None if ok else "root_mismatch",
                hashes=answer["proof"],
            )
        elif problem is not None:
            proof["status"] = "failed"
        return {
            "entry": entry_json(row, int(claims["size"]) if claims else 0),
            "leaf": leaf.decode("utf-8", errors="replace"),
            "leaf_hash": leaf_hash.hex(),
            "proof": proof,
            "checkpoint_interval": self._transparency.interval,
        }

    async def hourly_counts(self, since: dt.datetime) -> HourlyCounts:
        """Allowed reads per department and hour, refusals per hour, since ``since``."""
        return await asyncio.to_thread(self._hourly_counts, since)

    def _hourly_counts(self, since: dt.datetime) -> HourlyCounts:
        e = audit_entries.c
        bucket = _hour_bucket(self._engine.dialect.name).label("hour")
        lookups = (
            sa.select(e.department, bucket, sa.func.count())
            .where(
                e.at >= since.astimezone(dt.UTC),
                e.event.in_(sorted(READ_EVENTS)),
                e.decision == "allowed",
                e.department.is_not(None),
            )
            .group_by(e.department, bucket)
        )
        refusals = (
            sa.select(bucket, sa.func.count())
            .where(e.at >= since.astimezone(dt.UTC), e.decision == "refused")
            .group_by(bucket)
        )
        with self._engine.connect() as conn:
            a = [(str(r[0]), str(r[1]), int(r[2])) for r in conn.execute(lookups)]
            b = [(str(r[0]), int(r[1])) for r in conn.execute(refusals)]
        return a, b
