"""Reading an entry's leaf — the exact bytes hashed into the tree — as auditors and
departments may: auditors any leaf, a department the leaves of its own entries only (another
department's leaf would show whom it looked up: the keyed subject links its lookups to
everyone else's of that person). A department's read is a signed exchange, audited."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec

from gateway.audit.transparency import TransparencyLog
from gateway.cache import Admission
from gateway.core.protocol import AuditEvent, TokenType
from gateway.core.wire import MAX_INDEX, Name, convert
from gateway.errors import InvalidInput, PolicyDenied, RecordNotFound
from gateway.exchange import Admit, Done, Exchange, Received, SignedExchanges

__all__ = ["LEAF", "LeafReader"]


class LeafClaims(msgspec.Struct, frozen=True):
    """A department's request for one leaf."""

    operator: Name
    index: Annotated[int, msgspec.Meta(ge=1, le=MAX_INDEX)]


def _parse(_department: str, claims: dict[str, Any]) -> LeafClaims:
    return convert(claims, LeafClaims)


LEAF = Exchange(
    request=TokenType.AUDIT_LEAF,
    answer=None,  # the leaf itself
    parse=_parse,
    refused=AuditEvent.LEAF_REFUSED,
    done=AuditEvent.LEAF_READ,
)


class LeafReader:
    """Leaves for those who may read them."""

    def __init__(self, *, exchanges: SignedExchanges, transparency: TransparencyLog) -> None:
        self._exchanges = exchanges
        self._transparency = transparency

    async def for_auditor(self, index: int) -> bytes:
        """Any entry's leaf (the caller checked the auditor role)."""
        leaf = await asyncio.to_thread(self._transparency.leaf, index)
        if leaf is None:
            raise RecordNotFound(f"no audit entry {index}")
        return leaf

    async def for_department(self, token: bytes, index: int, *, now: float) -> bytes:
        """The leaf of one of the sender's own entries, for its signed request."""

        def check(received: Received[LeafClaims]) -> Admit:
            if received.request.index != index:
                raise InvalidInput("index", "does not match the index in the path")
            return Admit()

        async def work(received: Received[LeafClaims], _a: Admit, _b: Admission) -> Done:
            found = await asyncio.to_thread(self._transparency.leaf_with_owner, index)
            if found is None:
                raise RecordNotFound(f"no audit entry {index}")
            leaf, owner = found
            if owner != received.token.department:
                raise PolicyDenied("not-own-entry", "the entry is not about this department")
            return Done({}, audit={"detail": f"leaf of entry {index}"}, value=leaf)

        done, _index = await self._exchanges.run_unsigned(
            LEAF, token, now=now, check=check, work=work
        )
        value: bytes = done.value
        return value
