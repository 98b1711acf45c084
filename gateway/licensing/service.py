"""Licences and seals on the wire: issuance, status changes, verification, public documents.

Each signed endpoint follows the lookups' order of work: verify the token → parse the claims
→ check the department's role → admit (replay, rate limit) → do the work in the store → write
the durable audit entry → sign the answer naming that entry. A refusal at any step is audited
before it is answered; nothing is released (not even a verdict) without its entry.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from gateway.audit import Outcome
from gateway.cache import Admission
from gateway.core.answers import answer_claims
from gateway.core.identifiers import LicenceId
from gateway.core.jose import JoseError, parse_compact
from gateway.core.jose import verify as verify_signature
from gateway.core.keyring import DepartmentKey, KeyStatus
from gateway.core.licences import (
    STATUS_MESSAGES,
    LicenceContent,
    Verification,
    check_issuance,
    content_digest,
    parse_qr_payload,
    peek_licence_id,
    qr_payload,
    verify_identifier,
    verify_presented,
    verify_qr,
)
from gateway.core.masks import parse_mask
from gateway.core.policy import Role
from gateway.core.protocol import AuditEvent, TokenType
from gateway.core.seals import (
    RevocationReason,
    Seal,
    SealRegistry,
    SealStatus,
    registry_snapshot_claims,
)
from gateway.core.status_lists import StatusRef, status_list_claims
from gateway.core.wire import WireError, decode_json
from gateway.errors import InvalidIdentifier, InvalidInput
from gateway.exchange import (
    Admit,
    AuditDraft,
    Done,
    Exchange,
    Received,
    SignedAnswer,
    SignedExchanges,
)
from gateway.licensing.claims import (
    LICENCE_TOKEN_MAX_BYTES,
    IssueRequest,
    ReserveRequest,
    SealRegistration,
    StatusRequest,
    VerificationRequest,
    parse_issue_claims,
    parse_reserve_claims,
    parse_seal_registration_claims,
    parse_status_claims,
    parse_verification_claims,
)
from gateway.licensing.store import LicenceStore

__all__ = ["ISSUE", "REGISTER_SEAL", "RESERVE", "STATUS", "VERIFY", "LicensingService"]

# The signed exchanges of this feature.
RESERVE = Exchange(
    request=TokenType.LICENCE_RESERVE,
    answer=TokenType.LICENCE_RESERVED,
    parse=parse_reserve_claims,
    refused=AuditEvent.LICENCE_ISSUE_REFUSED,
    done=AuditEvent.LICENCE_RESERVED,
    role=Role.ISSUER,
)
ISSUE = Exchange(
    request=TokenType.LICENCE_ISSUE,
    answer=TokenType.LICENCE_ISSUED,
    parse=parse_issue_claims,
    refused=AuditEvent.LICENCE_ISSUE_REFUSED,
    done=AuditEvent.LICENCE_ISSUED,
    role=Role.ISSUER,
    max_bytes=LICENCE_TOKEN_MAX_BYTES,
)
STATUS = Exchange(
    request=TokenType.LICENCE_STATUS,
    answer=TokenType.LICENCE_STATUS_CHANGED,
    parse=parse_status_claims,
    refused=AuditEvent.LICENCE_STATUS_REFUSED,
    done=AuditEvent.LICENCE_STATUS_CHANGED,
    role=Role.ISSUER,
)
REGISTER_SEAL = Exchange(
    request=TokenType.SEAL_REGISTER,
    answer=TokenType.SEAL_REGISTERED,
    parse=parse_seal_registration_claims,
    refused=AuditEvent.SEAL_REFUSED,
    done=AuditEvent.SEAL_REGISTERED,
    role=Role.ISSUER,
)
# Every registered department's clerks verify licences: no role.
VERIFY = Exchange(
    request=TokenType.VERIFICATION,
    answer=TokenType.VERIFICATION_RECEIPT,
    parse=parse_verification_claims,
    refused=AuditEvent.VERIFICATION_REFUSED,
    done=AuditEvent.VERIFICATION_PERFORMED,
    max_bytes=LICENCE_TOKEN_MAX_BYTES,
)

_NAME_MASK = parse_mask("name")


def _storable_text(value: object) -> str | None:
    """A purpose value from a receipt this gateway signed (so already checked when it was
    made), as the entry's text; None if it is not text."""
    return value[:256] if isinstance(value, str) else None


def _summary(content: LicenceContent) -> dict[str, Any]:
    """What a clerk sees of a verified licence: enough to compare with the paper, with the
    holder's name masked (the clerk has the licence in hand; the receipt may travel)."""
    return {
        "type_code": content.type_code,
        "type_name": content.type_name,
        "issuer_name": content.issuer_name,
        "issuer_uscc": content.issuer_uscc,
        "holder_name": _NAME_MASK.apply(content.holder_name),
        "issue_date": content.issue_date.isoformat(),
        "valid_from": content.valid_from.isoformat(),
        "valid_until": None if content.valid_until is None else content.valid_until.isoformat(),
        "content_sha256": content_digest(content).hex(),
    }


class LicensingService:
    """The licence endpoints of one gateway process."""

    def __init__(
        self,
        *,
        exchanges: SignedExchanges,
        store: LicenceStore,
        on_change: Callable[[str], Awaitable[None]],
        status_list_ttl: dt.timedelta,
        registry_ttl: dt.timedelta,
    ) -> None:
        self._exchanges = exchanges
        self._policy = exchanges.policy
        self._store = store
        self._on_change = on_change  # called with a licence type code whose records changed
        self._status_list_ttl = status_list_ttl
        self._registry_ttl = registry_ttl
        self._registry: tuple[int, SealRegistry] | None = None

    def _uscc_of(self, department: str) -> str:
        return self._policy.current.departments[department].uscc

    async def registry(self) -> SealRegistry:
        """The seal registry, reloaded only when a seal changed (one small read to know)."""
        return await asyncio.to_thread(lambda: self._registry_at(self._store.registry_revision()))

    def _registry_at(self, revision: int) -> SealRegistry:
        """The registry as of ``revision`` or later (keys parsed once per change)."""
        cached = self._registry
        if cached is None or cached[0] < revision:
            cached = self._store.registry()
            self._registry = cached
        return cached[1]

    # --- issuers --------------------------------------------------------------------------

    async def reserve(self, body: bytes, *, now: float) -> SignedAnswer:
        """Reserve the status entry of a licence the issuer is about to seal."""

        async def work(received: Received[ReserveRequest], _a: Admit, _b: Admission) -> Done:
            request = received.request

            def reserve() -> StatusRef:
                try:
                    lid = LicenceId.parse(request.licence_id)
                except InvalidIdentifier as exc:
                    raise InvalidIdentifier("licence_id", exc.reason) from None
                if lid.issuer.value != self._uscc_of(request.issuer):
                    raise InvalidInput("licence_id", "its issuer USCC is not yours")
                return self._store.reserve(
                    licence_id=lid, department=request.issuer, at=received.audit.at
                )

            ref = await asyncio.to_thread(reserve)
            return Done(
                {
                    "licence_id": request.licence_id,
                    "status": {"list_id": ref.list_id, "index": ref.index},
                },
                audit={"detail": f"{request.licence_id} -> {ref.list_id}#{ref.index}"},
            )

        return await self._exchanges.run(RESERVE, body, now=now, work=work)

    async def issue(self, body: bytes, *, now: float) -> SignedAnswer:
        """Check and publish a sealed licence; a newer version supersedes the current one."""

        async def work(received: Received[IssueRequest], _a: Admit, _b: Admission) -> Done:
            request = received.request
            registry = await self.registry()
            when = dt.datetime.fromtimestamp(now, dt.UTC)

            def publish() -> Any:
                content = check_issuance(
                    request.sealed,
                    sender_department=request.issuer,
                    sender_uscc=self._uscc_of(request.issuer),
                    registry=registry,
                    now=when,
                )
                if content.status is None:
                    raise InvalidInput(
                        "content.status",
                        "is required: reserve it first (POST /v1/licences:reserve)",
                    )
                return self._store.publish(
                    content,
                    request.sealed,
                    department=request.issuer,
                    operator=request.operator,
                    at=received.audit.at,
                )

            published = await asyncio.to_thread(publish)
            content = published.record.content
            await self._on_change(content.type_code)
            return Done(
                {
                    "licence_id": content.licence_id,
                    "status": msgspec.to_builtins(published.record.status_ref),
                    "qr": qr_payload(content),
                    "content_sha256": content_digest(content).hex(),
                    "supersedes": published.superseded,
                },
                audit={
                    "resource": f"licence:{content.type_code}",
                    "subject_hmac": self._exchanges.hash_subject(
                        str(content.holder_id_type), content.holder_id
                    ),
                    "detail": content.licence_id
                    + (f" supersedes {published.superseded}" if published.superseded else ""),
                },
            )

        return await self._exchanges.run(ISSUE, body, now=now, work=work)

    async def change_status(self, body: bytes, *, licence_id: str, now: float) -> SignedAnswer:
        """Suspend, reinstate, revoke, withdraw or cancel one of the issuer's licences."""

        async def work(received: Received[StatusRequest], _a: Admit, _b: Admission) -> Done:
            request = received.request
            received.audit.reason = request.reason

            def change() -> Any:
                if request.licence_id != licence_id:
                    raise InvalidInput("licence_id", "does not match the identifier in the path")
                changed = self._store.change_status(
                    licence_id,
                    request.action,
                    department=request.issuer,
                    operator=request.operator,
                    reason=request.reason,
                    at=received.audit.at,
                )
                return changed, self._store.get(licence_id)

            changed, record = await asyncio.to_thread(change)
            await self._on_change(record.content.type_code)
            return Done(
                {
                    "licence_id": licence_id,
                    "action": str(request.action),
                    "previous": str(changed.previous),
                    "status": str(changed.status),
                    "at": changed.at.isoformat(),
                },
                audit={
                    "resource": f"licence:{record.content.type_code}",
                    "detail": f"{licence_id}: {changed.previous} -> {changed.status}",
                },
            )

        return await self._exchanges.run(STATUS, body, now=now, work=work)

    async def register_seal(self, body: bytes, *, now: float) -> SignedAnswer:
        """An issuer registers one of its seals, proving it holds the seal's private key."""

        async def work(received: Received[SealRegistration], _a: Admit, _b: Admission) -> Done:
            request = received.request

            def register() -> Seal:
                seal = self._seal_of(request)
                self._store.register_seal(seal, at=received.audit.at, by=request.owner)
                return seal

            seal = await asyncio.to_thread(register)
            kid = SealRegistry.kid_of(seal)
            return Done(
                {"seal_id": seal.seal_id, "kid": kid, "status": str(seal.status)},
                audit={"detail": f"{seal.seal_id} {kid}"},
            )

        return await self._exchanges.run(REGISTER_SEAL, body, now=now, work=work)

    def _seal_of(self, request: SealRegistration) -> Seal:
        jwk = {k: v for k, v in request.jwk.items() if k not in ("kid", "alg", "use", "key_ops")}
        inferred = {"OKP": "EdDSA"}.get(
            str(jwk.get("kty")), "SM2" if jwk.get("crv") == "SM2" else "ES256"
        )
        alg = str(request.jwk.get("alg") or inferred)
        try:
            key = DepartmentKey.from_jwk(
                {**jwk, "alg": alg}, department=request.owner, status=KeyStatus.ACTIVE
            )
        except Exception as exc:  # any unusable key: say why, in the field's name
            raise InvalidInput("seal.jwk", str(exc) or "is not a usable public key") from None
        try:
            proof = parse_compact(request.proof, allowed_members=("alg", "kid", "typ"))
            if not verify_signature(proof, alg=alg, key=key.public_key):
                raise JoseError("bad-signature")
            payload = decode_json(proof.payload)
        except (JoseError, WireError):
            raise InvalidInput("proof", "does not verify with the seal's key") from None
        if (
            proof.header.typ != TokenType.SEAL_PROOF
            or not isinstance(payload, dict)
            or payload.get("seal_id") != request.seal_id
            or payload.get("jti") != request.jti
        ):
            raise InvalidInput("proof", "must sign this request's seal_id and jti")
        return Seal(
            seal_id=request.seal_id,
            name=request.name,
            type=request.type,
            owner=request.owner,
            owner_uscc=self._uscc_of(request.owner),
            jwk=jwk,
            alg=alg,
            valid_from=request.valid_from,
            valid_until=request.valid_until,
        )

    # --- administrators -------------------------------------------------------------------

    async def change_seal(
        self,
        seal_id: str,
        *,
        action: str,
        reason: str,
        revocation_reason: str | None,
        by: str,
        now: float,
    ) -> Seal:
        """An administrator suspends, reinstates or revokes a seal (audited either way)."""
        statuses = {
            "suspend": SealStatus.SUSPENDED,
            "reinstate": SealStatus.ACTIVE,
            "revoke": SealStatus.REVOKED,
        }
        at = dt.datetime.fromtimestamp(now, dt.UTC)
        draft = AuditDraft(
            at=at,
            started=time.perf_counter(),
            operator=by,
            reason=reason,
            policy_version=self._policy.current.version,
        )
        try:
            if action not in statuses:
                raise InvalidInput("action", "must be suspend, reinstate or revoke")
            try:
                why = None if revocation_reason is None else RevocationReason(revocation_reason)
            except ValueError:
                raise InvalidInput(
                    "revocation_reason", f"must be one of {', '.join(RevocationReason)}"
                ) from None
            seal = await asyncio.to_thread(
                self._store.change_seal,
                seal_id,
                statuses[action],
                at=at,
                by=by,
                reason=reason,
                revocation_reason=why,
            )
        except InvalidInput as exc:
            await self._exchanges.refuse(exc, draft, AuditEvent.SEAL_REFUSED)
            raise
        await self._exchanges.audit.append(
            draft.entry(
                AuditEvent.SEAL_STATUS_CHANGED,
                Outcome.ALLOWED,
                department=seal.owner,
                detail=f"{seal_id} -> {seal.status}"
                + (f" ({revocation_reason})" if revocation_reason else ""),
            )
        )
        return seal

    async def seals(self) -> list[Seal]:
        """Every seal with its history."""
        return list(await self.registry())

    # --- clerks ---------------------------------------------------------------------------

    async def verify(self, body: bytes, *, now: float) -> SignedAnswer:
        """Verify a licence by identifier, QR payload or sealed document; a signed receipt."""

        async def work(received: Received[VerificationRequest], _a: Admit, _b: Admission) -> Done:
            request = received.request
            received.audit.service_item = request.purpose.item
            received.audit.case_number = request.purpose.case
            received.audit.reason = request.purpose.reason
            when = dt.datetime.fromtimestamp(now, dt.UTC)
            verification = await self._verify_now(request, when)
            claims, audit = self._receipt_parts(request, verification, when)
            return Done(claims, audit=audit)

        return await self._exchanges.run(VERIFY, body, now=now, work=work)

    def _receipt_parts(
        self, request: VerificationRequest, verification: Verification, when: dt.datetime
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The receipt's claims (before :func:`answer_claims`) and the audit entry's fields
        of one verification."""
        content = verification.content
        given = request.input
        audit: dict[str, Any] = {
            "reason_code": str(verification.verdict),
            "detail": f"{given.kind} {verification.licence_id or '?'}: {verification.verdict}",
        }
        if content is not None:
            audit["resource"] = f"licence:{content.type_code}"
            audit["subject_hmac"] = self._exchanges.hash_subject(
                str(content.holder_id_type), content.holder_id
            )
        record_ref = content.status if content is not None else None
        # Not yet through the receipt's structure: the pipeline takes every answer through
        # its own, and the console (which signs its receipts itself) does so before it signs.
        claims: dict[str, Any] = {
            "verdict": str(verification.verdict),
            "checks": msgspec.to_builtins(verification.checks),
            "licence_id": verification.licence_id,
            "input": {
                "kind": given.kind,
                "sha256": hashlib.sha256(given.value.encode()).hexdigest(),
            },
            "licence": None if content is None else _summary(content),
            "status": None if record_ref is None else msgspec.to_builtins(record_ref),
            "checked_at": when.isoformat(),
            "purpose": msgspec.to_builtins(request.purpose),
            "operator": request.operator,
        }
        return claims, audit

    async def verify_for_console(
        self,
        *,
        department: str,
        operator: str,
        purpose_item: str,
        purpose_case: str,
        reason: str,
        kind: str,
        value: str,
        now: float,
    ) -> tuple[Verification, str, int]:
        """Verify for a clerk logged in to the web console (the session stands in for the
        department's signed token): the same checks and audit entry as :meth:`verify`.
        The verification, the receipt signed for ``department``, and its audit index.
        InvalidInput (not audited: nothing was verified) names an unusable value."""
        if kind not in {"licence_id", "qr", "licence"}:
            raise InvalidInput("kind", "one of licence_id, qr, licence")
        request = parse_verification_claims(
            department,
            {
                "operator": operator,
                "purpose": {"item": purpose_item, "case": purpose_case, "reason": reason},
                kind: value,
            },
        )
        when = dt.datetime.fromtimestamp(now, dt.UTC)
        draft = AuditDraft(
            at=when,
            started=time.perf_counter(),
            department=department,
            operator=request.operator,
            service_item=request.purpose.item,
            case_number=request.purpose.case,
            reason=request.purpose.reason,
            policy_version=self._policy.current.version,
            request_hash=hashlib.sha256(value.strip().encode()).hexdigest(),
        )
        verification = await self._verify_now(request, when)
        parts, audit = self._receipt_parts(request, verification, when)
        claims = answer_claims(TokenType.VERIFICATION_RECEIPT, parts)
        ex = self._exchanges
        index = await ex.audit.append(
            draft.entry(AuditEvent.VERIFICATION_PERFORMED, Outcome.ALLOWED, **audit)
        )
        iat = int(now)
        receipt = ex.signer.sign(
            {
                "iss": ex.gateway_id,
                "aud": department,
                "iat": iat,
                "exp": iat + ex.answer_lifetime,
                "jti": uuid.uuid4().hex,
                **claims,
                "audit": {"index": index},
            },
            typ=TokenType.VERIFICATION_RECEIPT,
        )
        return verification, receipt, index

    async def console_receipt(
        self, token: str, *, department: str, operator: str, now: float
    ) -> tuple[dict[str, Any], LicenceContent | None] | None:
        """A receipt a clerk of ``department`` brings back to print: its claims if the
        gateway signed it for that department (expiry does not matter: it records a check
        already made), with the licence content it was about if the stored record still
        holds exactly that content (the receipt's ``content_sha256``); None if the token is
        not such a receipt. The receipt masks the holder; the content lets the printout say
        what the licence says, as the verification page did — so the print is an access
        too: its entry (``licence:receipt:printed``, the clerk as operator, the receipt's
        purpose and audit index) is durable before anything is returned."""
        claims = self._own_receipt(token, department)
        if claims is None:
            return None
        summary = claims.get("licence")
        licence_id = claims.get("licence_id")
        content: LicenceContent | None = None
        if isinstance(summary, dict) and isinstance(licence_id, str):
            record = await asyncio.to_thread(self._store.get, licence_id)
            if record is not None and content_digest(record.content).hex() == summary.get(
                "content_sha256"
            ):
                content = record.content
        purpose = claims.get("purpose")
        purpose = purpose if isinstance(purpose, dict) else {}
        audit = claims.get("audit")
        of_entry = audit.get("index") if isinstance(audit, dict) else None
        draft = AuditDraft(
            at=dt.datetime.fromtimestamp(now, dt.UTC),
            started=time.perf_counter(),
            department=department,
            operator=operator,
            service_item=_storable_text(purpose.get("item")),
            case_number=_storable_text(purpose.get("case")),
            reason=_storable_text(purpose.get("reason")),
            policy_version=self._policy.current.version,
            request_hash=hashlib.sha256(token.strip().encode()).hexdigest(),
        )
        fields: dict[str, Any] = {
            "reason_code": "printed",
            "detail": f"receipt of entry {of_entry if isinstance(of_entry, int) else '?'}",
        }
        if content is not None:
            fields["resource"] = f"licence:{content.type_code}"
            fields["subject_hmac"] = self._exchanges.hash_subject(
                str(content.holder_id_type), content.holder_id
            )
        await self._exchanges.audit.append(
            draft.entry(AuditEvent.RECEIPT_PRINTED, Outcome.ALLOWED, **fields)
        )
        return claims, content

    def _own_receipt(self, token: str, department: str) -> dict[str, Any] | None:
        """The claims of ``token`` if it is a verification receipt this gateway signed for
        ``department``; else None."""
        signer = self._exchanges.signer
        try:
            compact = parse_compact(token.strip(), allowed_members={"alg", "kid", "typ"})
        except JoseError:
            return None
        header = compact.header
        if header.typ != TokenType.VERIFICATION_RECEIPT:
            return None
        try:
            claims = decode_json(compact.payload)
        except WireError:
            return None
        if not isinstance(claims, dict) or claims.get("aud") != department:
            return None
        # Any of the gateway's keys that was in force when the receipt was signed: a receipt
        # printed after a rotation was signed by the key before it.
        # ... with that key's algorithm (ES256 or SM2), never the header's choice.
        found = signer.verification_key(kid=header.kid, iat=claims.get("iat"))
        if found is None or not verify_signature(compact, alg=found[0], key=found[1]):
            return None
        return claims

    async def _verify_now(self, request: VerificationRequest, now: dt.datetime) -> Verification:
        # One read (~30 µs on SQLite) and the checks: on the loop where the read is local.
        return await self._store.reads.run(self._verification, request, now)

    def _verification(self, request: VerificationRequest, now: dt.datetime) -> Verification:
        """Read what the input names (with the registry's revision, in one statement) and
        verify it."""
        given = request.input
        if given.kind == "licence_id":
            licence_id: str | None = given.value
        elif given.kind == "qr":
            try:
                licence_id = parse_qr_payload(given.value).licence_id.value
            except InvalidInput:
                licence_id = None  # verify_qr reports the malformed payload as a check
        else:
            licence_id = peek_licence_id(given.value)
        revision, record = self._store.get_with_revision(licence_id)
        registry = self._registry_at(revision)
        if given.kind == "licence_id":
            return verify_identifier(given.value, record=record, registry=registry, now=now)
        if given.kind == "qr":
            return verify_qr(given.value, record=record, registry=registry, now=now)
        return verify_presented(given.value, record=record, registry=registry, now=now)

    # --- public documents -----------------------------------------------------------------

    async def signed_status_list(self, list_id: str, *, now: float) -> str | None:
        """The signed status list ``list_id`` as it stands, or None if there is none."""
        status_list = await asyncio.to_thread(self._store.status_list, list_id)
        if status_list is None:
            return None
        claims = status_list_claims(
            status_list,
            issuer=self._exchanges.gateway_id,
            now=dt.datetime.fromtimestamp(now, dt.UTC),
            ttl=self._status_list_ttl,
            status_messages=STATUS_MESSAGES,
        )
        return self._exchanges.signer.sign(claims, typ=TokenType.STATUS_LIST)

    async def signed_registry(self, *, now: float) -> str:
        """A signed snapshot of the seal registry, for offline verifiers."""
        claims = registry_snapshot_claims(
            await self.registry(),
            issuer=self._exchanges.gateway_id,
            now=dt.datetime.fromtimestamp(now, dt.UTC),
            ttl=self._registry_ttl,
        )
        return self._exchanges.signer.sign(claims, typ=TokenType.SEAL_REGISTRY)
