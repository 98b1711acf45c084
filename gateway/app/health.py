"""The process's own routes: liveness, readiness and the gateway's public keys.

Readiness asks each part the composition root built whether it can serve now, so it lives
here with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Response, get
from litestar.di import NamedDependency

from gateway.cache import RequestGuard
from gateway.core.keyring import GatewaySigner
from gateway.core.tokens import RequestTokenVerifier
from gateway.http.openapi import problems
from gateway.http.problems import problem_response
from gateway.policy import PolicyHolder, PolicyWatcher
from gateway.registry.keys import KeyAdministration
from gateway.storage.readiness import ReadinessProbe

__all__ = ["ROUTES", "Readiness", "healthz", "jwks", "readyz"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Readiness:
    """Whether this process can serve: the store takes a write (a full disk or a frozen
    database is not ready) within a bound, the cache answers, the key ring holds keys."""

    probe: ReadinessProbe
    guard: RequestGuard
    verifier: RequestTokenVerifier
    signer: GatewaySigner  # this host holds the active gateway key's private half
    policy: PolicyHolder
    watcher: PolicyWatcher

    async def check(self) -> tuple[dict[str, bool], str | None, dict[str, Any]]:
        """The checks, the store's problem (if any) and the policy's state."""
        store_problem = await self.probe.check()
        checks = {
            "database": store_problem is None,
            "cache": await self.guard.ping(),
            "keys": len(self.verifier.keyring) > 0 and self.signer.can_sign,
        }
        checked = self.watcher.last_checked
        policy = {
            "version": self.policy.current.version,
            "last_checked": checked.isoformat() if checked else None,
            "refused_change": self.watcher.last_refusal,
        }
        return checks, store_problem, policy


@get(
    "/.well-known/jwks.json",
    summary="The gateway's public signing keys",
    description=(
        "网关的公开签名密钥（JWKS）。Verify every answer, receipt, checkpoint and status "
        "list the gateway signs against these keys (select by `kid`). Public. Each key says "
        "its `status`: `active` signs now, `next` will (published ahead of use), `retired` "
        "signs nothing any more and vouches only for what was signed before its `exp`; a key "
        "with `nbf` only for what was signed from then on (seconds since the epoch). Cached "
        "for `Cache-Control: max-age` seconds; a next key is listed at least twice that long "
        "before it signs."
    ),
    tags=["keys"],
    cache_control=None,
    responses=problems(503),
)
async def jwks(keys: NamedDependency[KeyAdministration]) -> Response[Any]:
    published = keys.jwks()
    if not published["keys"]:
        # The key set could not be read: an empty or partial JWKS cached by verifiers would
        # make them refuse good answers for max-age seconds.
        return problem_response(
            503, "store-unavailable", "A required store is unavailable", "gateway keys"
        )
    return Response(published, headers={"Cache-Control": f"public, max-age={keys.jwks_max_age}"})


@get(
    "/healthz",
    summary="Liveness: the process answers",
    description="存活检查：进程能应答。The process answers; nothing else is checked.",
    tags=["health"],
)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/readyz",
    summary="Readiness: database, cache and keys",
    description=(
        "就绪检查。The database takes a write, the cache answers, keys are loaded; the policy "
        "version in force. 503 with the failing checks when not ready."
    ),
    tags=["health"],
    responses=problems(503),
)
async def readyz(readiness: NamedDependency[Readiness]) -> Response[Any]:
    checks, store_problem, policy = await readiness.check()
    if all(checks.values()):
        return Response(
            {
                "status": "ready",
                "checks": checks,
                "policy_version": policy["version"],
                "policy": policy,
            }
        )
    failing = ", ".join(name for name, ok in checks.items() if not ok)
    detail = f"failing: {failing}" + (f" ({store_problem})" if store_problem else "")
    return problem_response(503, "not-ready", "Not ready", detail, checks=checks)


#: Every route of this module, for the app factory.
ROUTES = [jwks, healthz, readyz]
