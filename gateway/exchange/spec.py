"""The declarative parts of a signed exchange: the spec, and what each step hands on."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from gateway.cache import CacheProbe, QuotaClaim
from gateway.core.policy import PolicySet, Role
from gateway.core.protocol import AuditEvent, TokenType
from gateway.core.tokens import VerifiedToken
from gateway.exchange.draft import AuditDraft

__all__ = ["Admit", "Done", "Exchange", "Received", "SignedAnswer"]

R = TypeVar("R")


@dataclass(frozen=True, slots=True, kw_only=True)
class Exchange(Generic[R]):
    """One signed endpoint, declared.

    ``parse`` turns the verified claims into the typed request (raising
    :class:`~gateway.errors.InvalidInput`); ``done`` is the event of the entry the pipeline
    writes when the work succeeds (``None`` when the work writes its own entries, as a batch
    does); ``role`` is the role the sender's department must hold; ``max_bytes`` lifts the
    token cap for endpoints whose tokens carry more than a lookup's (a batch, a sealed
    licence).
    """

    request: TokenType
    answer: TokenType | None  # None: answered with what the work made, unsigned
    parse: Callable[[str, dict[str, Any]], R]
    refused: AuditEvent
    done: AuditEvent | None
    role: Role | None = None
    max_bytes: int | None = None


@dataclass(slots=True)
class Received(Generic[R]):
    """A request whose token verified and whose claims parsed: what the work gets."""

    spec: Exchange[R]
    token: VerifiedToken
    request: R
    audit: AuditDraft  # fields of this request's entries so far (fill in as more is known)
    now: float  # epoch seconds at arrival: every check of this request uses this instant
    #: The policy set in force when the request arrived: one set for the whole request,
    #: even across a reload.
    policy: PolicySet


@dataclass(frozen=True, slots=True)
class Admit:
    """What the guard is asked besides replay and rate: the case to check, the daily quotas
    to count, the cache to read, the cost (lookups) of the request; ``plan`` is handed on to
    the work unchanged (what the check decided)."""

    case: str | None = None
    quotas: Sequence[QuotaClaim] = ()
    probes: Sequence[CacheProbe] = ()
    cost: int = 1
    plan: Any = None


@dataclass(frozen=True, slots=True)
class Done:
    """What the work produced: the answer's claims, and either the fields of the entry the
    pipeline writes (``audit``) or the index of the entry the work wrote itself (``index``)."""

    claims: Mapping[str, Any]
    audit: Mapping[str, Any] = field(default_factory=dict)
    index: int | None = None
    #: For an exchange answered unsigned (a stream, a leaf): what to answer with.
    value: Any = None


@dataclass(frozen=True, slots=True)
class SignedAnswer:
    """The signed answer (a compact JWS) and the index of its audit entry."""

    token: str
    audit_index: int
