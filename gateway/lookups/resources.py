"""A provider signals that records of its resource changed: every cached copy is dropped."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.cache import Admission
from gateway.core.lookup import Invalidation, parse_invalidation_claims
from gateway.core.protocol import AuditEvent, TokenType
from gateway.errors import InvalidInput, PolicyDenied
from gateway.exchange import Admit, Done, Exchange, Received, SignedAnswer, SignedExchanges

__all__ = ["INVALIDATE", "ResourceService"]

INVALIDATE = Exchange(
    request=TokenType.INVALIDATE,
    answer=TokenType.INVALIDATED,
    parse=parse_invalidation_claims,
    refused=AuditEvent.CACHE_REFUSED,
    done=AuditEvent.CACHE_INVALIDATED,
)


class ResourceService:
    """Signed cache invalidation by a resource's provider."""

    def __init__(
        self, *, exchanges: SignedExchanges, invalidate: Callable[[str], Awaitable[None]]
    ) -> None:
        self._exchanges = exchanges
        self._invalidate = invalidate

    async def invalidate(self, body: bytes, *, resource_id: str, now: float) -> SignedAnswer:
        """Drop the cached records of ``resource_id`` for the provider's signed request."""

        def check(received: Received[Invalidation]) -> Admit:
            signal = received.request
            received.audit.reason = signal.reason
            received.audit.resource = resource_id
            if signal.resource != resource_id:
                raise InvalidInput("resource", "does not match the resource in the path")
            if received.policy.resource(resource_id).provider != signal.provider:
                raise PolicyDenied("not-provider", "only the resource's provider may do this")
            return Admit()

        async def work(
            _received: Received[Invalidation], _admit: Admit, _admission: Admission
        ) -> Done:
            await self._invalidate(resource_id)
            return Done({"resource": resource_id, "invalidated": True})

        return await self._exchanges.run(INVALIDATE, body, now=now, check=check, work=work)
