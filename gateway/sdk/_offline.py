"""Offline verification of sealed licences from the gateway's public documents."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.core.jose import JoseError, claims_of, parse_compact
from gateway.core.keyring import GatewayKeyRefused, gateway_key_for
from gateway.core.licences import STATUS_MESSAGES, Verification, verify_sealed
from gateway.core.seals import SealRegistry, registry_from_snapshot
from gateway.core.status_lists import StatusList, StatusListRejected, verify_status_list_token
from gateway.sdk._http import get, quoted

__all__ = ["OfflineVerifier", "PublicDocuments", "sealed_status_list_id"]


def sealed_status_list_id(sealed: str) -> str | None:
    """The status list a sealed licence names, read **without** verifying anything.

    Only to choose which whole list to fetch before an :class:`OfflineVerifier` checks the
    licence; None if the document does not name one (verification then says ``not-found``).
    """
    try:
        claims = claims_of(parse_compact(sealed, allowed_members={"alg", "kid", "typ"}))
    except JoseError:
        return None
    status = claims.get("status") if claims is not None else None
    list_id = status.get("list_id") if isinstance(status, dict) else None
    return list_id if isinstance(list_id, str) else None


@dataclass(frozen=True, slots=True)
class PublicDocuments:
    """The gateway's public documents an offline verifier needs, exactly as served.

    ``status_lists`` maps each list id to its signed JWT. Fetching a whole list tells the
    gateway nothing about which licence on it is being checked.
    """

    jwks: dict[str, Any]
    registry: str
    status_lists: dict[str, str]

    @classmethod
    def fetch(cls, http: httpx.Client, *, list_ids: Iterable[str]) -> PublicDocuments:
        """GET the JWKS, the seal registry snapshot and the named status lists (no credentials)."""
        jwks = get(http, "/.well-known/jwks.json").json()
        registry = get(http, "/v1/seals/registry").text
        lists = {i: get(http, f"/v1/status-lists/{quoted(i)}").text for i in set(list_ids)}
        return cls(jwks, registry, lists)

    def verifier(self, *, issuer: str, now: dt.datetime) -> OfflineVerifier:
        """An :class:`OfflineVerifier` over these documents, checked at ``now``."""
        return OfflineVerifier(
            jwks=self.jwks,
            registry=self.registry,
            status_lists=self.status_lists.values(),
            issuer=issuer,
            now=now,
        )


def _unverified(token: str) -> tuple[object, object, object]:
    """The ``kid`` of ``token`` and its ``iat`` and ``exp`` claims, read **without**
    verifying: only to choose the key whose signature check then says whether the payload is
    the gateway's (a garbled payload reads as no time, which no retired key vouches for)."""
    try:
        jws = parse_compact(token, allowed_members={"alg", "kid", "typ"})
    except JoseError as exc:
        raise StatusListRejected(f"not a gateway JWS: {exc.reason}") from None
    claims = claims_of(jws)
    if claims is None:
        return jws.header.kid, None, None
    return jws.header.kid, claims.get("iat"), claims.get("exp")


def _gateway_jwk(jwks: Mapping[str, Any], token: str) -> dict[str, Any]:
    """The gateway's key (ES256 or SM2) that signed ``token``, chosen by ``kid`` from the
    JWKS, and in force when ``token`` says it was signed (its ``iat``; a retired key vouches
    only for what it signed before its retirement)."""
    kid, signed_at, _ = _unverified(token)
    try:
        jwk = gateway_key_for(jwks, kid=kid, iat=signed_at)
    except GatewayKeyRefused as exc:
        raise StatusListRejected(str(exc)) from None
    return {k: v for k, v in jwk.items() if k not in ("status", "nbf", "exp")}


def _expiry(token: str) -> dt.datetime:
    # Only called on a token whose signature and exp were just verified.
    _, _, exp = _unverified(token)
    assert isinstance(exp, int)
    return dt.datetime.fromtimestamp(exp, dt.UTC)


class OfflineVerifier:
    """Verifies sealed licences with no call to the gateway and no department key.

    Built from the gateway's JWKS, its signed seal registry snapshot and signed status lists,
    each verified once here (signature by the gateway key its ``kid`` names, ``typ``,
    ``iss`` = ``issuer``, not expired at ``now``). Raises :class:`StatusListRejected` (or
    another :class:`~gateway.errors.Error`) if any document does not verify. The documents
    stop being trustworthy when the first of them expires (:attr:`expires_at`): after that,
    :meth:`verify` refuses, so a stale revocation list is never used silently.
    """

    def __init__(
        self,
        *,
        jwks: Mapping[str, Any],
        registry: str,
        status_lists: Iterable[str],
        issuer: str,
        now: dt.datetime,
    ) -> None:
        self.registry: SealRegistry = registry_from_snapshot(
            registry, gateway_jwk=_gateway_jwk(jwks, registry), issuer=issuer, now=now
        )
        expiries = [_expiry(registry)]
        self.status_lists: dict[str, StatusList] = {}
        for token in status_lists:
            status_list, messages = verify_status_list_token(
                token, gateway_jwk=_gateway_jwk(jwks, token), issuer=issuer, now=now
            )
            # verify_sealed reads values with the meanings this code knows; a list that says
            # otherwise would be misread, so it is refused rather than interpreted.
            if any(STATUS_MESSAGES.get(v) != m for v, m in messages.items()):
                raise StatusListRejected(f"status list {status_list.list_id}: unknown meanings")
            self.status_lists[status_list.list_id] = status_list
            expiries.append(_expiry(token))
        #: When the first of the documents expires; fetch them again before then.
        self.expires_at: dt.datetime = min(expiries)

    def verify(self, sealed: str, *, now: dt.datetime) -> Verification:
        """Verify the sealed licence ``sealed`` at ``now``: every check and the verdict."""
        if now >= self.expires_at:
            raise StatusListRejected(
                f"the gateway's documents expired at {self.expires_at:%Y-%m-%d %H:%M:%S}Z;"
                " fetch them again"
            )
        return verify_sealed(
            sealed, registry=self.registry, now=now, status_lists=self.status_lists
        )
