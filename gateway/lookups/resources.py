"""A provider signals that records of its resource changed: every cached copy is dropped."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.audit import AuditEntry, Outcome
from gateway.core.lookup import parse_invalidation_claims
from gateway.core.tokens import INVALIDATE_REQUEST_TYP, INVALIDATE_RESULT_TYP
from gateway.errors import InvalidInput, PolicyDenied
from gateway.lookups.base import SignedRequests, elapsed_ms
from gateway.lookups.service import LookupAnswer, PolicyHolder

__all__ = ["ResourceService"]

EVENT_INVALIDATED = "resource:cache:invalidated"
EVENT_REFUSED = "resource:cache:refused"


class ResourceService:
    """Signed cache invalidation by a resource's provider."""

    def __init__(
        self,
        *,
        requests: SignedRequests,
        policy: PolicyHolder,
        invalidate: Callable[[str], Awaitable[None]],
    ) -> None:
        self._requests = requests
        self._policy = policy
        self._invalidate = invalidate

    async def invalidate(self, body: bytes, *, resource_id: str, now: float) -> LookupAnswer:
        """Drop the cached records of ``resource_id`` for the provider's signed request."""
        rq = self._requests
        policy = self._policy.current
        received = await rq.receive(
            body,
            typ=INVALIDATE_REQUEST_TYP,
            now=now,
            policy_version=policy.version,
            event=EVENT_REFUSED,
            parse=parse_invalidation_claims,
        )
        token, signal, base, started = (
            received.token,
            received.request,
            received.base,
            received.started,
        )
        base.update(operator=signal.operator, reason=signal.reason, resource=resource_id)
        try:
            if signal.resource != resource_id:
                raise InvalidInput("resource", "does not match the resource in the path")
            resource = policy.resource(resource_id)
            if resource.provider != signal.provider:
                raise PolicyDenied("not-provider", "only the resource's provider may do this")
        except (InvalidInput, PolicyDenied) as exc:
            await rq.refuse(exc, base, EVENT_REFUSED, started)
            raise
        await rq.admit(token, now=now, base=base, event=EVENT_REFUSED, started=started)
        await self._invalidate(resource_id)
        index = await rq.audit.append(
            AuditEntry(
                **base,
                event=EVENT_INVALIDATED,
                decision=Outcome.ALLOWED,
                latency_ms=elapsed_ms(started),
            )
        )
        answer = rq.sign_answer(
            {"resource": resource_id, "invalidated": True, "audit": {"index": index}},
            token=token,
            typ=INVALIDATE_RESULT_TYP,
            now=now,
        )
        return LookupAnswer(answer, index)
