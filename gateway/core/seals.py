"""Electronic seals (电子印章) of issuing departments, and the registry of them.

A :class:`Seal` is a department's registered public key for sealing licences, with a validity
window (district calendar dates, inclusive) and a status history. Status changes are pure
functions (:func:`change_seal_status`) that return a new seal with the change appended; nothing
is ever removed from the history.

When does a seal count as valid for a licence? (:meth:`SealRegistry.seal_problem`)

* The licence's issue date must lie in the seal's validity window.
* The seal must have been ``active`` for the **whole** issue date (district day). Licences
  carry a date, not a time, so a seal suspended or revoked at any moment of day D cannot vouch
  for a licence dated D: the issuer cannot prove the seal was used before the change.
* Suspension and revocation do **not** reach back: licences issued (dated) before the change
  stay valid, because the seal was genuinely valid when it was used ...
* ... **except** revocation for ``key-compromise``: whoever holds a compromised key can seal
  licences with any back-date, so from the moment of that revocation every licence sealed with
  the key is seal-invalid, whatever its date.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import msgspec

from gateway.core.keyring import (
    ALLOWED_ALGORITHMS,
    DepartmentKey,
    KeyId,
    KeyStatus,
    PublicKey,
    jwk_thumbprint,
)
from gateway.core.policy import DISTRICT_TZ
from gateway.core.protocol import TokenType
from gateway.core.status_lists import verify_gateway_claims
from gateway.errors import ConfigurationError, InvalidInput

__all__ = [
    "RevocationReason",
    "Seal",
    "SealEvent",
    "SealRegistry",
    "SealStatus",
    "SealTransitionRefused",
    "change_seal_status",
    "registry_from_snapshot",
    "registry_snapshot_claims",
]

#: The ``typ`` header of a signed snapshot of the seal registry.


class SealStatus(enum.StrEnum):
    """Current state of a seal."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


class RevocationReason(enum.StrEnum):
    """Why a seal was revoked; only ``key-compromise`` reaches back to older licences."""

    KEY_COMPROMISE = "key-compromise"
    SUPERSEDED = "superseded"  # replaced by a new seal (e.g. key rotation)
    CESSATION = "cessation"  # department merged, renamed or dissolved
    OTHER = "other"


class SealEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One status change of a seal: when, to what, by whom, why."""

    at: dt.datetime
    status: SealStatus
    by: str
    reason: str
    revocation_reason: RevocationReason | None = None


class Seal(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A registered e-seal: its public key, owner, validity window and status history.

    ``valid_from``/``valid_until`` are district calendar dates, both inclusive. ``status`` is
    the current status and always equals the last event's (``active`` if there is none).
    """

    seal_id: str
    name: str  # e.g. "某某区行政审批局行政审批专用章"
    type: str  # e.g. "administrative-approval", "licence", "official"
    owner: str  # department id
    owner_uscc: str
    jwk: dict[str, Any]  # public key; its kid is the RFC 7638 thumbprint
    alg: str
    valid_from: dt.date
    valid_until: dt.date
    status: SealStatus = SealStatus.ACTIVE
    history: tuple[SealEvent, ...] = ()

    def status_at(self, when: dt.datetime) -> SealStatus:
        """The seal's status at ``when`` according to its history."""
        status = SealStatus.ACTIVE
        for event in self.history:
            if event.at <= when:
                status = event.status
        return status

    def compromised_at(self) -> dt.datetime | None:
        """When the seal was revoked for key compromise, if it was."""
        for event in self.history:
            if event.revocation_reason is RevocationReason.KEY_COMPROMISE:
                return event.at
        return None


class SealTransitionRefused(InvalidInput):
    """A seal status change that its current status does not allow."""


_SEAL_TRANSITIONS = {
    SealStatus.ACTIVE: {SealStatus.SUSPENDED, SealStatus.REVOKED},
    SealStatus.SUSPENDED: {SealStatus.ACTIVE, SealStatus.REVOKED},
    SealStatus.REVOKED: set(),  # final: a revoked key never comes back
}


def change_seal_status(
    seal: Seal,
    status: SealStatus,
    *,
    at: dt.datetime,
    by: str,
    reason: str,
    revocation_reason: RevocationReason | None = None,
) -> Seal:
    """The seal with its status changed to ``status`` at ``at``, the change kept in history.

    Allowed: active → suspended, suspended → active (reinstate), active|suspended → revoked.
    A revocation must say why (``revocation_reason``); other changes must not.
    """
    if status not in _SEAL_TRANSITIONS[seal.status]:
        raise SealTransitionRefused("status", f"a {seal.status} seal cannot become {status}")
    if (status is SealStatus.REVOKED) != (revocation_reason is not None):
        raise SealTransitionRefused("revocation_reason", "required when revoking and only then")
    if at.tzinfo is None:
        raise SealTransitionRefused("at", "must carry a time zone")
    if seal.history and at < seal.history[-1].at:
        raise SealTransitionRefused("at", "must not precede the last change")
    event = SealEvent(at, status, by, reason, revocation_reason)
    return msgspec.structs.replace(seal, status=status, history=(*seal.history, event))


def _day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(), DISTRICT_TZ)
    return start, start + dt.timedelta(days=1)


class SealRegistry:
    """Immutable snapshot of the registered seals, with their keys parsed once."""

    def __init__(self, seals: Iterable[Seal]) -> None:
        self._by_id: dict[str, Seal] = {}
        self._by_kid: dict[str, tuple[Seal, PublicKey]] = {}
        for seal in seals:
            # DepartmentKey enforces the allowed algorithms (ES256, EdDSA, SM2), public-only
            # keys, the key being the algorithm's, and kid = thumbprint; the seal's status is
            # tracked here, not in KeyStatus.
            if seal.alg not in ALLOWED_ALGORITHMS:
                raise ConfigurationError([f"seal {seal.seal_id}: alg {seal.alg!r} not allowed"])
            key = DepartmentKey.from_jwk(
                {**seal.jwk, "alg": seal.alg}, department=seal.owner, status=KeyStatus.ACTIVE
            )
            if seal.seal_id in self._by_id or key.kid in self._by_kid:
                raise ConfigurationError([f"seal {seal.seal_id}: id or key registered twice"])
            self._by_id[seal.seal_id] = seal
            self._by_kid[key.kid] = (seal, key.public_key)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Seal]:
        return iter(self._by_id.values())

    def by_id(self, seal_id: str) -> Seal | None:
        """The seal registered under ``seal_id``, whatever its status."""
        return self._by_id.get(seal_id)

    def by_kid(self, kid: str) -> Seal | None:
        """The seal whose key has thumbprint ``kid``, whatever its status."""
        entry = self._by_kid.get(kid)
        return entry[0] if entry else None

    def public_key(self, kid: str) -> PublicKey | None:
        """The parsed public key of the seal with thumbprint ``kid``."""
        entry = self._by_kid.get(kid)
        return entry[1] if entry else None

    @staticmethod
    def kid_of(seal: Seal) -> KeyId:
        """The seal's key id (RFC 7638 thumbprint of its public JWK)."""
        return jwk_thumbprint(seal.jwk)

    @staticmethod
    def was_valid_at(seal: Seal, when: dt.datetime) -> bool:
        """Whether the seal could seal at the instant ``when`` (window and status only)."""
        day = when.astimezone(DISTRICT_TZ).date()
        return (
            seal.valid_from <= day <= seal.valid_until and seal.status_at(when) is SealStatus.ACTIVE
        )

    @staticmethod
    def seal_problem(seal: Seal, issue_date: dt.date, now: dt.datetime) -> str | None:
        """Why ``seal`` cannot vouch, at ``now``, for a licence dated ``issue_date``; or None.

        See the module docstring for the rule.
        """
        if not seal.valid_from <= issue_date <= seal.valid_until:
            return (
                f"seal {seal.seal_id} is valid {seal.valid_from}..{seal.valid_until},"
                f" not on {issue_date}"
            )
        compromised = seal.compromised_at()
        if compromised is not None and compromised <= now:
            return f"seal {seal.seal_id} was revoked for key compromise at {compromised}"
        start, end = _day_bounds(issue_date)
        if seal.status_at(start) is not SealStatus.ACTIVE or any(
            start <= e.at < end and e.status is not SealStatus.ACTIVE for e in seal.history
        ):
            return f"seal {seal.seal_id} was not active throughout {issue_date}"
        return None


def registry_snapshot_claims(
    registry: SealRegistry, *, issuer: str, now: dt.datetime, ttl: dt.timedelta
) -> dict[str, Any]:
    """Claims of a signed snapshot of the seal registry (signed by ``GatewaySigner``).

    With the gateway's JWKS and a status list, it lets a verifier check sealed licences offline.
    """
    iat = int(now.timestamp())
    return {
        "iss": issuer,
        "iat": iat,
        "exp": iat + int(ttl.total_seconds()),
        "seals": [msgspec.to_builtins(seal) for seal in registry],
    }


def registry_from_snapshot(
    token: str, *, gateway_jwk: Mapping[str, Any], issuer: str, now: dt.datetime
) -> SealRegistry:
    """Verify a signed registry snapshot and rebuild the registry it carries."""
    claims = verify_gateway_claims(
        token, gateway_jwk=gateway_jwk, typ=TokenType.SEAL_REGISTRY, issuer=issuer, now=now
    )
    try:
        seals = msgspec.convert(claims.get("seals"), tuple[Seal, ...])
    except msgspec.ValidationError as exc:
        raise InvalidInput("seals", str(exc)) from None
    return SealRegistry(seals)
