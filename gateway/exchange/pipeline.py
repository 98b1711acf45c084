"""The one pipeline of every signed endpoint (see :mod:`gateway.exchange`)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from hashlib import sha256
from typing import Any, TypeVar

from gateway.audit import AuditEntry, AuditLog, Outcome, SubjectHasher
from gateway.audit.promises import CURRENT_CLAIM, TokenClaim
from gateway.cache import Admission, RequestGuard
from gateway.core.answers import answer_claims
from gateway.core.keyring import GatewaySigner
from gateway.core.protocol import AuditEvent, TokenType
from gateway.core.tokens import RequestTokenVerifier, VerifiedToken
from gateway.errors import Error, InvalidInput, PolicyDenied, StoreUnavailable, TokenRejected
from gateway.exchange.draft import AuditDraft
from gateway.exchange.spec import Admit, Done, Exchange, Received, SignedAnswer
from gateway.policy import PolicyHolder
from gateway.telemetry.context import RequestRecord, current_request

__all__ = ["Check", "SignedExchanges", "Work"]

R = TypeVar("R")

#: Before admission: decide what to admit (or refuse, by raising an Error).
Check = Callable[[Received[R]], Admit | Awaitable[Admit]]
#: After admission: the endpoint's own work; its Errors are audited by the pipeline.
Work = Callable[[Received[R], Admit, Admission], Awaitable[Done]]


class SignedExchanges:
    """Runs every signed exchange of one gateway process. Construct once per process."""

    def __init__(
        self,
        *,
        gateway_id: str,
        policy: PolicyHolder,
        verifier: RequestTokenVerifier,
        guard: RequestGuard,
        audit: AuditLog,
        signer: GatewaySigner,
        subject_hasher: SubjectHasher,
        answer_lifetime: int = 300,
    ) -> None:
        self.gateway_id = gateway_id
        self.policy = policy
        self.verifier = verifier
        self.guard = guard
        self.audit = audit
        self.signer = signer
        self.hash_subject = subject_hasher
        self.answer_lifetime = answer_lifetime

    # --- the pipeline ---------------------------------------------------------------------

    async def run(
        self,
        spec: Exchange[R],
        token: bytes,
        *,
        now: float,
        work: Work[R],
        check: Check[R] | None = None,
    ) -> SignedAnswer:
        """verify → parse → check → admit → work → audit → sign.

        Every refusal is an audit entry, durable before the error is raised; the error names
        its entry (``audit_index``).
        """
        received, done, index = await self._run(spec, token, now=now, work=work, check=check)
        return SignedAnswer(self.answer(received, done.claims, index), index)

    async def run_unsigned(
        self,
        spec: Exchange[R],
        token: bytes,
        *,
        now: float,
        work: Work[R],
        check: Check[R] | None = None,
    ) -> tuple[Done, int]:
        """The same pipeline for an exchange answered with what the work made (a stream, a
        leaf): the work's :class:`Done` and the index of its entry."""
        _received, done, index = await self._run(spec, token, now=now, work=work, check=check)
        return done, index

    async def _run(
        self,
        spec: Exchange[R],
        token: bytes,
        *,
        now: float,
        work: Work[R],
        check: Check[R] | None,
    ) -> tuple[Received[R], Done, int]:
        received = await self.receive(spec, token, now=now)
        record = current_request()
        started = time.perf_counter()
        try:
            self._check_role(received)
            admit = Admit() if check is None else check(received)
            if not isinstance(admit, Admit):
                admit = await admit
        except Error as exc:
            _spent(record, "decide", started)
            await self._refused(exc, received)
            raise
        _spent(record, "decide", started)
        admission = await self.admit(received, admit)
        try:
            done = await work(received, admit, admission)
        except Error as exc:
            await self._refused(exc, received)
            raise
        if spec.answer is not None:
            # Through the answer's structure before its entry is written: an answer unlike its
            # documented schema is a bug, and must not leave an entry saying it was answered.
            # (Lookups write their entries inside the work, so theirs is checked after it.)
            done = replace(done, claims=_documented(spec.answer, done.claims))
        index = done.index
        if index is None:
            assert spec.done is not None, "an exchange without a done event writes its entries"
            index = await self.audit.append(
                received.audit.entry(spec.done, Outcome.ALLOWED, **done.audit)
            )
        if record is not None:
            record.audit_index = index
            record.resource = record.resource or received.audit.resource
            record.service_item = record.service_item or received.audit.service_item
        return received, done, index

    async def receive(self, spec: Exchange[R], token: bytes, *, now: float) -> Received[R]:
        """Verify the token, then parse its claims; audit either refusal. No promise is made
        yet (nothing is admitted)."""
        CURRENT_CLAIM.set(None)
        policy = self.policy.current
        started = time.perf_counter()
        audit = AuditDraft(
            at=dt.datetime.fromtimestamp(now, dt.UTC),
            started=started,
            request_hash=sha256(token.strip()).hexdigest(),
            policy_version=policy.version,
        )
        record = current_request()
        if record is not None:
            record.exchange = _exchange_name(spec.request)
        try:
            verified = self.verifier.verify(
                token, typ=spec.request, now=now, max_bytes=spec.max_bytes
            )
        except TokenRejected as exc:
            _spent(record, "verify", started)
            # Only the key's owner is recorded, never unverified claims.
            audit.department = exc.claimed_issuer
            await self.refuse(exc, audit, spec.refused)
            raise
        audit.department = verified.department
        try:
            request = spec.parse(verified.department, verified.claims)
        except InvalidInput as exc:
            _spent(record, "verify", started)
            await self.refuse(exc, audit, spec.refused)
            raise
        _spent(record, "verify", started)
        if record is not None:
            record.department = verified.department
        operator = getattr(request, "operator", None)
        if isinstance(operator, str):
            audit.operator = operator
        return Received(spec, verified, request, audit, now, policy)

    def _check_role(self, received: Received[Any]) -> None:
        role = received.spec.role
        if role is None:
            return
        department = received.policy.departments.get(received.token.department)
        if department is None or role not in department.roles:
            raise PolicyDenied(f"not-{role}", f"only a department with role {role} may do this")

    async def admit(self, received: Received[Any], admit: Admit) -> Admission:
        """Closed case, rate limit, replay, quotas and cache reads in one guard call;
        refusals audited.

        Once admitted, the request's promises (its token used once, its case open) follow it:
        every entry it appends from here on is checked against the durable store in the
        audit writer's transaction (:mod:`gateway.audit.promises`), whatever the guard knew.
        """
        token = received.token
        nonce = uuid.uuid4().hex
        record = current_request()
        started = time.perf_counter()
        try:
            admission = await self.guard.admit(
                department=token.department,
                jti=token.jti,
                replay_ttl=token.expires_at - received.now + 2 * self.verifier.leeway,
                now=received.now,
                cost=admit.cost,
                case=admit.case,
                quotas=admit.quotas,
                probes=admit.probes,
                nonce=nonce,
            )
        except Error as exc:
            _spent(record, "admit", started)
            await self._refused(exc, received)
            raise
        _spent(record, "admit", started)
        CURRENT_CLAIM.set(
            TokenClaim(
                department=token.department,
                jti=token.jti,
                nonce=nonce,
                expires_at=token.expires_at + 2 * self.verifier.leeway,
                case=admit.case,
                refused_event=received.spec.refused,
            )
        )
        return admission

    async def _refused(self, exc: Error, received: Received[Any]) -> None:
        if isinstance(exc, StoreUnavailable) and exc.store == "audit log":
            # The request's own entry could not be made durable: a refusal entry would meet
            # the same store, and its failure must not replace this one (which says whether
            # the first entry may have landed, and so whether the token may be resent).
            return
        if exc.audit_index is None:  # not yet on the record (work may have audited it)
            await self.refuse(exc, received.audit, received.spec.refused)

    async def refuse(self, exc: Error, audit: AuditDraft, event: AuditEvent | str) -> int:
        """Audit a refusal (durably) and attach the entry's index to ``exc``."""
        detail = exc.reason if isinstance(exc, TokenRejected) else str(exc)
        index = await self.audit.append(
            audit.entry(event, Outcome.REFUSED, reason_code=exc.audit_code, detail=detail[:500])
        )
        exc.audit_index = index
        record = current_request()
        if record is not None:
            record.audit_index, record.outcome = index, exc.audit_code
            record.resource = record.resource or audit.resource
            record.service_item = record.service_item or audit.service_item
        return index

    async def release_unanswered(self, failure: StoreUnavailable) -> bool | None:
        """After ``failure`` answered nothing: forget the request's ``jti`` in the guard, so
        that resending the same token works. ``None`` if it was never admitted, ``True`` if a
        resend will be admitted, ``False`` if the token is (or may be) used: an entry of it is
        durable, its last commit's outcome is unknown, or the guard could not be told."""
        claim = CURRENT_CLAIM.get()
        if claim is None:
            return None
        if claim.durable or failure.in_doubt:
            return False
        return await self.guard.release(
            department=claim.department, jti=claim.jti, nonce=claim.nonce
        )

    async def record_internal_error(
        self,
        *,
        error: str,
        route: str,
        department: str | None,
        request_hash: str | None,
        now: float,
    ) -> int:
        """The entry of a request that ended in an unexpected exception (durable before its
        500 leaves). ``error`` is the exception's type and ``route`` the method and path
        template — never the exception's text or the raw path, which may carry a subject."""
        return await self.audit.append(
            AuditEntry(
                at=dt.datetime.fromtimestamp(now, dt.UTC),
                event=AuditEvent.INTERNAL_ERROR,
                decision=Outcome.REFUSED,
                department=department,
                request_hash=request_hash,
                policy_version=self.policy.current.version,
                reason_code="internal-error",
                detail=f"{error} in {route}",
            )
        )

    # --- answers --------------------------------------------------------------------------

    def answer(self, received: Received[Any], claims: Mapping[str, Any], index: int) -> str:
        """The signed answer to ``received``, naming the entry ``index``."""
        typ = received.spec.answer
        assert typ is not None, "an unsigned exchange has no answer to sign"
        return self.sign_answer(
            {**claims, "audit": {"index": index}},
            token=received.token,
            typ=typ,
            now=received.now,
            documented=True,  # :meth:`_run` took them through the structure
        )

    def sign_answer(
        self,
        claims: Mapping[str, Any],
        *,
        token: VerifiedToken,
        typ: TokenType | str,
        now: float,
        documented: bool = False,
    ) -> str:
        """Sign an answer to ``token``: for its department, bound to the request's hash.

        Its own claims (all but ``audit``) go through the answer's structure
        (:func:`~gateway.core.answers.answer_claims`), the one its documented schema is made
        from — unless ``documented``: the pipeline took them through it already."""
        record = current_request()
        started = time.perf_counter()
        ordered = claims if documented else _documented(typ, claims)
        iat = int(now)
        signed = self.signer.sign(
            {
                "iss": self.gateway_id,
                "aud": token.department,
                "iat": iat,
                "exp": iat + self.answer_lifetime,
                "jti": uuid.uuid4().hex,
                "request": {"jti": token.jti, "sha256": token.sha256},
                **ordered,
            },
            typ=str(typ),
            alg=self.signer.algorithm_for(token.alg),
        )
        _spent(record, "sign", started)
        return signed


def _spent(record: RequestRecord | None, phase: str, started: float) -> None:
    """Add the time since ``started`` to ``phase`` of the request's telemetry (if any)."""
    if record is not None:
        record.add(phase, time.perf_counter() - started)


def _exchange_name(typ: TokenType) -> str:
    """The exchange's name in metrics and logs: its request's ``typ`` without the framing
    (``yiwang-lookup+jwt`` → ``lookup``)."""
    return str(typ).removeprefix("yiwang-").removesuffix("+jwt")


def _documented(typ: TokenType | str, claims: Mapping[str, Any]) -> dict[str, Any]:
    """``claims`` with its own members (all but ``audit``) taken through the answer's
    structure, in the order the work gave them: ``audit`` stays where it was (a lookup's comes
    before ``policy_version``), so the payload is the one signed before the structures."""
    own = answer_claims(typ, {k: v for k, v in claims.items() if k != "audit"})
    return {k: claims[k] if k == "audit" else own[k] for k in claims}
