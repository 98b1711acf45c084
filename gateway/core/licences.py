"""Electronic licences (电子证照): content, sealing, issuance checks, status and verification.

A licence is its :class:`LicenceContent` serialised as canonical JSON (RFC 8785, optional
fields left out when unset) and sealed as a compact JWS by one of the issuer's e-seals
(header ``alg``, ``kid`` = the seal key's thumbprint, ``typ`` = :data:`TokenType.LICENCE`). The JWS
payload *is* the canonical bytes, so any JOSE library verifies it and anyone can recompute the
digest from the content.

Verification answers a :class:`Verification`: a :class:`Verdict` and every check, in order,
each passed, failed or skipped. Checks run from the most fundamental to the least and **the
first failure decides the verdict**; later checks are skipped because their inputs can no
longer be trusted. That order gives the precedence::

    malformed (not a JWS / bad QR or identifier) > not-found (no record, for id/QR input)
    > forged > malformed (sealed content) > seal-invalid > not-found (no status entry)
    > revoked | withdrawn | cancelled > expired | not-yet-valid > suspended > valid

A bad signature is *forged* even if the payload is also garbage: an unauthenticated payload is
not worth parsing. An unknown ``kid`` is *forged* too (no registered seal made it), whereas a
registered seal that was not valid for the licence (window, status, other department) is
*seal-invalid*. ``not-yet-valid`` is an addition to the verdicts of issue 5: a licence whose
``valid_from`` is still ahead is neither valid nor expired.

A new version of a licence (the version part of its identifier) supersedes the old one: the
old version is cancelled (注销) with the reason "superseded by …" (see :func:`supersedes`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import functools
import hashlib
import re
from collections.abc import Mapping
from typing import Annotated

import msgspec
import rfc8785

from gateway.core.algorithms import sign_compact
from gateway.core.identifiers import LicenceId, ResidentId, Uscc
from gateway.core.jose import CompactJWS, JoseError, parse_compact
from gateway.core.jose import verify as verify_signature
from gateway.core.keyring import ALLOWED_ALGORITHMS, PrivateKey
from gateway.core.policy import DISTRICT_TZ
from gateway.core.protocol import TokenType
from gateway.core.seals import Seal, SealRegistry
from gateway.core.status_lists import StatusList, StatusRef
from gateway.core.wire import SAFE_TEXT_PATTERN, Text, WireError, decode_json, invalid_input_from
from gateway.errors import InvalidIdentifier, InvalidInput

__all__ = [
    "QR_PREFIX",
    "STATUS_MESSAGES",
    "STATUS_VALUES",
    "Check",
    "CheckOutcome",
    "ContentMalformed",
    "HolderIdType",
    "IssuerMismatch",
    "LicenceContent",
    "LicenceRecord",
    "LicenceStatus",
    "QrPayload",
    "SealRefused",
    "SignatureInvalid",
    "StatusAction",
    "StatusTransitionRefused",
    "Verdict",
    "Verification",
    "canonical_bytes",
    "check_issuance",
    "content_digest",
    "parse_qr_payload",
    "peek_licence_id",
    "qr_payload",
    "seal_licence",
    "supersedes",
    "transition",
    "verify_identifier",
    "verify_presented",
    "verify_qr",
    "verify_sealed",
]


#: ``typ`` header of a sealed licence.

#: First field of a licence QR payload; the digit is the payload format's version.
QR_PREFIX = "YWL1"

#: Bytes of the SHA-256 content digest kept in a QR payload: 128 bits resist second
#: preimages while keeping the code small enough to scan from paper.
QR_DIGEST_BYTES = 16

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_HEADER_MEMBERS = frozenset({"alg", "kid", "typ"})

# Bounds of the content's free text: every string is valid text without control characters
# (the licence is stored, shown to clerks and printed); identifiers are checked by their own
# rules after decoding.
_Code = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[0-9A-Za-z.-]+$")]
_FieldName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
#: A type-specific value: text up to 2,000 characters (经营范围 can be long) without control
#: characters, or a whole number, or a truth value.
_FieldValue = (
    Annotated[
        str,
        msgspec.Meta(
            max_length=2000,
            pattern=SAFE_TEXT_PATTERN,
        ),
    ]
    | Annotated[int, msgspec.Meta(ge=-(2**53), le=2**53)]
    | bool
)


# --- content ------------------------------------------------------------------------------


class HolderIdType(enum.StrEnum):
    """Which identifier names the holder."""

    RESIDENT_ID = "resident-id"
    USCC = "uscc"


class LicenceContent(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """What a seal vouches for. Dates are district calendar dates, ranges inclusive.

    ``valid_until`` is None for a licence without end (长期有效). ``status`` is where the
    licence's status is published, allocated by the gateway before sealing so that the sealed
    licence itself tells an offline verifier which entry to read.
    """

    licence_id: _Code  # GB/T 36904 identifier with check character
    type_code: _Code  # defining authority's USCC + 3 digits (also inside licence_id)
    type_name: Text
    holder_name: Text
    holder_id: _Code
    holder_id_type: HolderIdType
    issuer_uscc: _Code
    issuer_name: Text
    issue_date: dt.date
    valid_from: dt.date
    valid_until: dt.date | None
    jurisdiction: _Code  # administrative division code (行政区划代码)
    service_item: _Code  # code of the government service item that produced the licence
    type_fields: Annotated[
        dict[Annotated[str, _FieldName], _FieldValue], msgspec.Meta(max_length=64)
    ] = msgspec.field(default_factory=dict)
    document_sha256: str | None = None  # lowercase hex SHA-256 of the OFD or PDF file
    status: StatusRef | None = None


#: msgspec's JSON with sorted keys is RFC 8785's for what a licence holds — strings (both
#: escape exactly ", \\ and control characters, the same way: checked for every code point),
#: whole numbers within ±(2⁵³ − 1) (plain digits in both), truth values, dates as ISO text — but for
#: the order of keys: RFC 8785 sorts by UTF-16 code units, msgspec by code points, which
#: differ only between a character beyond U+FFFF (a surrogate pair in UTF-16) and one from
#: U+E000 to U+FFFF (fullwidth forms like "（" are there). Content with a key holding a
#: character beyond U+FFFF takes rfc8785.
_SORTED_JSON = msgspec.json.Encoder(order="sorted")
_UTF16_ORDER_DIFFERS_FROM = "\U00010000"
#: rfc8785 refuses whole numbers beyond ±(2⁵³ − 1): those contents are not canonical JSON.
_RFC8785_INT_LIMIT = 2**53 - 1


def canonical_bytes(content: LicenceContent) -> bytes:
    """The RFC 8785 canonical JSON of ``content``: exactly the bytes a seal signs."""
    for key, value in content.type_fields.items():
        if max(key, default="") >= _UTF16_ORDER_DIFFERS_FROM or (
            type(value) is int and not -_RFC8785_INT_LIMIT <= value <= _RFC8785_INT_LIMIT
        ):
            # rfc8785 orders such keys as UTF-16 does, and refuses such numbers.
            return rfc8785.dumps(msgspec.to_builtins(content))
    return _SORTED_JSON.encode(content)


def content_digest(content: LicenceContent) -> bytes:
    """SHA-256 of the canonical content."""
    return hashlib.sha256(canonical_bytes(content)).digest()


def seal_licence(content: LicenceContent, *, private_key: PrivateKey, seal: Seal) -> str:
    """Seal ``content`` with the seal's private key: the compact JWS an issuer publishes."""
    return sign_compact(
        canonical_bytes(content),
        key=private_key,
        alg=seal.alg,
        headers={"kid": SealRegistry.kid_of(seal), "typ": TokenType.LICENCE},
    )


# --- issuance -----------------------------------------------------------------------------


class SealRefused(InvalidInput):
    """The seal is unknown, not the sender's, or not valid for this licence."""


class SignatureInvalid(InvalidInput):
    """The JWS is not a well-formed licence JWS or its signature does not verify."""


class ContentMalformed(InvalidInput):
    """The sealed content is not a canonical, well-formed licence."""


class IssuerMismatch(InvalidInput):
    """The issuer named in the identifier, the content and the sender are not the same."""


def _split(jws: str) -> CompactJWS:
    """Parse a compact JWS once (nothing verified yet), or :class:`SignatureInvalid`.

    The document itself may carry no key, URL or critical extension: only ``alg``, ``kid``
    and ``typ`` are read, and any other header member refuses it.
    """
    try:
        return parse_compact(jws, allowed_members=_HEADER_MEMBERS)
    except JoseError as exc:
        if exc.reason.startswith("header-not-allowed"):
            raise SignatureInvalid("licence", "header members other than alg, kid, typ") from None
        raise SignatureInvalid("licence", "is not a compact JWS") from None


def _header(jws: str) -> tuple[CompactJWS, str]:
    """The parsed licence JWS and its ``kid``, or :class:`SignatureInvalid`."""
    compact = _split(jws)
    header = compact.header
    if header.typ != TokenType.LICENCE:
        raise SignatureInvalid("licence", f"typ must be {TokenType.LICENCE}")
    if header.alg not in ALLOWED_ALGORITHMS:
        raise SignatureInvalid("licence", "alg is not allowed")
    if header.kid is None:
        raise SignatureInvalid("licence", "kid is missing")
    return compact, header.kid


def _signed_payload(compact: CompactJWS, kid: str, seal: Seal, registry: SealRegistry) -> bytes:
    """The payload if the signature verifies with the key of ``seal``, found by ``kid``."""
    key = registry.public_key(kid)  # the registry's own key of that kid: parsed once
    if key is None:
        raise SignatureInvalid("licence", f"seal {seal.seal_id} has no registered key")
    # The seal, not the header, says which algorithm its key uses.
    if not verify_signature(compact, alg=seal.alg, key=key):
        raise SignatureInvalid("licence", f"signature does not verify with seal {seal.seal_id}")
    return compact.payload


def _content(payload: bytes) -> LicenceContent:
    try:
        content = msgspec.json.decode(payload, type=LicenceContent)
    except msgspec.ValidationError as exc:
        problem = invalid_input_from(exc, "content")
        raise ContentMalformed(problem.field, problem.reason) from None
    except (msgspec.DecodeError, UnicodeError, RecursionError):
        raise ContentMalformed("content", "is not strict JSON") from None
    # Only the canonical form is accepted so that the digest of the content is unique.
    try:
        canonical = canonical_bytes(content)
    except (rfc8785.CanonicalizationError, ValueError):  # a value JSON cannot carry exactly
        raise ContentMalformed("content", "is not canonical JSON (RFC 8785)") from None
    if canonical != payload:
        raise ContentMalformed("content", "is not canonical JSON (RFC 8785, unset fields left out)")
    return content


def _identifier(content: LicenceContent, named: LicenceId | None = None) -> LicenceId:
    """The content's licence identifier, parsed and checked against the content; ``named``
    is the identifier the caller already parsed, reused when the content names the same."""
    if named is not None and named.value == content.licence_id:
        lid = named  # the same text, already parsed and checked
    else:
        try:
            lid = LicenceId.parse(content.licence_id)
        except InvalidIdentifier as exc:
            raise exc.under("content") from None
    if lid.type_code != content.type_code:
        raise ContentMalformed("content.type_code", "differs from the identifier's")
    if lid.issuer.value != content.issuer_uscc:
        raise IssuerMismatch("content.issuer_uscc", "differs from the identifier's issuer")
    return lid


def _holder(content: LicenceContent) -> None:
    try:
        if content.holder_id_type is HolderIdType.RESIDENT_ID:
            ResidentId.parse(content.holder_id)
        else:
            Uscc.parse(content.holder_id)
    except InvalidIdentifier as exc:
        raise InvalidIdentifier("content.holder_id", exc.reason) from None


def _shape(content: LicenceContent) -> None:
    if content.valid_until is not None and content.valid_until < content.valid_from:
        raise ContentMalformed("content.valid_until", "is before valid_from")
    if content.document_sha256 is not None and not _SHA256_HEX.fullmatch(content.document_sha256):
        raise ContentMalformed("content.document_sha256", "must be 64 lowercase hex digits")


def _today(now: dt.datetime) -> dt.date:
    return now.astimezone(DISTRICT_TZ).date()


def check_issuance(
    jws: str,
    *,
    sender_department: str,
    sender_uscc: str,
    registry: SealRegistry,
    now: dt.datetime,
) -> LicenceContent:
    """Check a licence a department submits for publication; its content if every check passes.

    Raises, in this order: :class:`SignatureInvalid` (not a licence JWS), :class:`SealRefused`
    (unknown seal, or a seal of another department), :class:`SignatureInvalid` (bad
    signature), :class:`ContentMalformed`, :class:`InvalidIdentifier` (licence id or holder id
    format / check character), :class:`IssuerMismatch` (identifier's issuer is not the sender),
    :class:`SealRefused` (seal not valid on the issue date, or not active now: publishing is a
    use of the seal). The caller still checks supersession (:func:`supersedes`) and the status
    reference against its allocations.
    """
    compact, kid = _header(jws)
    seal = registry.by_kid(kid)
    if seal is None:
        raise SealRefused("licence.kid", "names no registered seal")
    if seal.owner != sender_department or seal.owner_uscc != sender_uscc:
        raise SealRefused("licence.kid", f"seal {seal.seal_id} belongs to another department")
    content = _content(_signed_payload(compact, kid, seal, registry))
    _shape(content)
    _identifier(content)
    if content.issuer_uscc != sender_uscc:
        raise IssuerMismatch("content.issuer_uscc", "is not the sender's USCC")
    _holder(content)
    if content.issue_date > _today(now):
        raise ContentMalformed("content.issue_date", "is in the future")
    problem = SealRegistry.seal_problem(seal, content.issue_date, now)
    if problem is not None:
        raise SealRefused("licence.kid", problem)
    if not SealRegistry.was_valid_at(seal, now):
        raise SealRefused("licence.kid", f"seal {seal.seal_id} is not usable now")
    return content


def supersedes(new: LicenceId, latest: LicenceId | None) -> bool:
    """Whether publishing ``new`` supersedes ``latest`` (the newest stored version, if any).

    Raises :class:`InvalidInput` when ``new`` is not newer than ``latest``: versions only grow.
    """
    if latest is None:
        return False
    if (new.type_code, new.issuer, new.serial) != (latest.type_code, latest.issuer, latest.serial):
        raise InvalidInput("licence_id", "is not a version of the same licence")
    if int(new.version) <= int(latest.version):
        raise InvalidInput("licence_id", f"version must be greater than {latest.version}")
    return True


# --- status -------------------------------------------------------------------------------


class LicenceStatus(enum.StrEnum):
    """Stored status of a licence. Expiry is not a status: it follows from the dates."""

    VALID = "valid"
    SUSPENDED = "suspended"  # 暂停
    REVOKED = "revoked"  # 吊销: taken away as a sanction
    WITHDRAWN = "withdrawn"  # 撤销: annulled, it should never have been issued
    CANCELLED = "cancelled"  # 注销: ended (holder's request, superseded, holder ceased)


class StatusAction(enum.StrEnum):
    """What an issuer or administrator does to a licence's status."""

    SUSPEND = "suspend"
    REINSTATE = "reinstate"
    REVOKE = "revoke"
    WITHDRAW = "withdraw"
    CANCEL = "cancel"


class StatusTransitionRefused(InvalidInput):
    """The action is not allowed from the licence's current status."""


_LIVE = (LicenceStatus.VALID, LicenceStatus.SUSPENDED)
_TRANSITIONS: dict[StatusAction, tuple[tuple[LicenceStatus, ...], LicenceStatus]] = {
    StatusAction.SUSPEND: ((LicenceStatus.VALID,), LicenceStatus.SUSPENDED),
    StatusAction.REINSTATE: ((LicenceStatus.SUSPENDED,), LicenceStatus.VALID),
    StatusAction.REVOKE: (_LIVE, LicenceStatus.REVOKED),
    StatusAction.WITHDRAW: (_LIVE, LicenceStatus.WITHDRAWN),
    StatusAction.CANCEL: (_LIVE, LicenceStatus.CANCELLED),
}


def transition(current: LicenceStatus, action: StatusAction) -> LicenceStatus:
    """The status after ``action``; revoked, withdrawn and cancelled are final."""
    allowed_from, result = _TRANSITIONS[action]
    if current not in allowed_from:
        raise StatusTransitionRefused("action", f"cannot {action} a {current} licence")
    return result


#: Value of each status in a status list; published with the list as its ``statusMessages``.
STATUS_VALUES: Mapping[LicenceStatus, int] = {
    LicenceStatus.VALID: 0,
    LicenceStatus.SUSPENDED: 1,
    LicenceStatus.REVOKED: 2,
    LicenceStatus.WITHDRAWN: 3,
    LicenceStatus.CANCELLED: 4,
}
STATUS_MESSAGES: Mapping[int, str] = {v: s.value for s, v in STATUS_VALUES.items()}
_STATUS_BY_VALUE = {v: s for s, v in STATUS_VALUES.items()}


class LicenceRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the gateway stores for a published licence."""

    content: LicenceContent
    sealed: str  # the JWS as submitted
    status: LicenceStatus
    status_ref: StatusRef
    superseded_by: str | None = None


# --- QR payload ---------------------------------------------------------------------------


class QrPayload(msgspec.Struct, frozen=True):
    """A parsed QR payload: the identifier and the truncated content digest."""

    licence_id: LicenceId
    digest: bytes


def qr_payload(content: LicenceContent) -> str:
    """``YWL1:<licence id>:<base64url, unpadded, of the first 16 bytes of SHA-256(content)>``.

    Compact enough for a small QR code; it carries no signature, so it is checked online
    against the stored record: the digest ties the printed code to one exact content.
    """
    digest = content_digest(content)[:QR_DIGEST_BYTES]
    encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return f"{QR_PREFIX}:{content.licence_id}:{encoded}"


def parse_qr_payload(text: str) -> QrPayload:
    """Parse a QR payload; :class:`InvalidInput` (or InvalidIdentifier) if malformed."""
    parts = text.strip().split(":")
    if len(parts) != 3 or parts[0] != QR_PREFIX:
        raise InvalidInput("qr", f"must be {QR_PREFIX}:<licence id>:<digest>")
    lid = LicenceId.parse(parts[1])
    encoded = parts[2]
    if not re.fullmatch(r"[A-Za-z0-9_-]{22}", encoded):
        raise InvalidInput("qr.digest", "must be 22 base64url characters")
    try:
        digest = base64.urlsafe_b64decode(encoded + "==")
    except (binascii.Error, ValueError):
        raise InvalidInput("qr.digest", "is not base64url") from None
    # 22 characters carry 132 bits; the last 4 must be zero or two texts would mean one digest.
    if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != encoded:
        raise InvalidInput("qr.digest", "is not canonical base64url")
    return QrPayload(lid, digest)


# --- verification -------------------------------------------------------------------------


class Verdict(enum.StrEnum):
    """The answer of a verification."""

    VALID = "valid"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    WITHDRAWN = "withdrawn"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    NOT_FOUND = "not-found"
    FORGED = "forged"
    SEAL_INVALID = "seal-invalid"
    MALFORMED = "malformed"


class CheckOutcome(enum.StrEnum):
    """Result of one check."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"  # an earlier check failed, so this one's input is untrusted


class Check(msgspec.Struct, frozen=True):
    """One named check of a verification."""

    name: str
    outcome: CheckOutcome
    detail: str = ""


class Verification(msgspec.Struct, frozen=True):
    """A verdict with every check that led to it, in the order they ran."""

    verdict: Verdict
    checks: tuple[Check, ...]
    licence_id: str | None = None
    content: LicenceContent | None = None


_VERDICT_OF_STATUS = {
    LicenceStatus.SUSPENDED: Verdict.SUSPENDED,
    LicenceStatus.REVOKED: Verdict.REVOKED,
    LicenceStatus.WITHDRAWN: Verdict.WITHDRAWN,
    LicenceStatus.CANCELLED: Verdict.CANCELLED,
}


class _Stop(Exception):
    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict


class _Run:
    """Collects checks; a failure stops the run and the rest are listed as skipped."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.checks: list[Check] = []
        self.licence_id: str | None = None
        self.content: LicenceContent | None = None

    def passed(self, name: str, detail: str = "") -> None:
        assert name == self.names[len(self.checks)], name  # checks run in declared order
        passed = (
            Check(name, CheckOutcome.PASSED, detail)
            if detail
            else _plain(name, CheckOutcome.PASSED)
        )
        self.checks.append(passed)

    def fail(self, name: str, verdict: Verdict, detail: str) -> _Stop:
        assert name == self.names[len(self.checks)], name
        self.checks.append(Check(name, CheckOutcome.FAILED, detail))
        return _Stop(verdict)

    def result(self, verdict: Verdict) -> Verification:
        skipped = [_plain(n, CheckOutcome.SKIPPED) for n in self.names[len(self.checks) :]]
        return Verification(verdict, (*self.checks, *skipped), self.licence_id, self.content)


_SEALED_CHECKS = (
    "structure",
    "seal-known",
    "signature",
    "content",
    "identifier",
    "holder-id",
    "seal-owner",
    "seal-validity",
)
_TAIL_CHECKS = ("status", "validity", "suspension")


@functools.cache
def _plain(name: str, outcome: CheckOutcome) -> Check:
    """A check without detail: the same value every time (checks are frozen), so made once.
    Names are the runs' own constants: the cache holds a few dozen."""
    return Check(name, outcome)


def _run_sealed(
    run: _Run,
    jws: str,
    registry: SealRegistry,
    now: dt.datetime,
    named: LicenceId | None = None,
) -> LicenceContent:
    try:
        compact, kid = _header(jws)
    except SignatureInvalid as exc:
        raise run.fail("structure", Verdict.MALFORMED, exc.reason) from None
    run.passed("structure")
    seal = registry.by_kid(kid)
    if seal is None:
        raise run.fail("seal-known", Verdict.FORGED, "no registered seal has this key")
    run.passed("seal-known", seal.seal_id)
    try:
        payload = _signed_payload(compact, kid, seal, registry)
    except SignatureInvalid as exc:
        raise run.fail("signature", Verdict.FORGED, exc.reason) from None
    run.passed("signature")
    try:
        content = _content(payload)
        _shape(content)
    except InvalidInput as exc:
        raise run.fail("content", Verdict.MALFORMED, str(exc)) from None
    run.content = content
    run.licence_id = content.licence_id
    run.passed("content")
    try:
        _identifier(content, named)
    except InvalidInput as exc:
        raise run.fail("identifier", Verdict.MALFORMED, str(exc)) from None
    run.passed("identifier")
    try:
        _holder(content)
    except InvalidInput as exc:
        raise run.fail("holder-id", Verdict.MALFORMED, str(exc)) from None
    run.passed("holder-id")
    if seal.owner_uscc != content.issuer_uscc:
        raise run.fail("seal-owner", Verdict.SEAL_INVALID, "the seal is another department's")
    run.passed("seal-owner", seal.owner)
    problem = SealRegistry.seal_problem(seal, content.issue_date, now)
    if problem is not None:
        raise run.fail("seal-validity", Verdict.SEAL_INVALID, problem)
    run.passed("seal-validity")
    return content


def _run_tail(run: _Run, content: LicenceContent, status: LicenceStatus, now: dt.datetime) -> None:
    # Final statuses outrank expiry, which outranks a (reversible) suspension.
    if status not in _LIVE:
        raise run.fail("status", _VERDICT_OF_STATUS[status], status.value)
    run.passed("status", status.value)
    today = _today(now)
    if content.valid_until is not None and today > content.valid_until:
        raise run.fail("validity", Verdict.EXPIRED, f"valid until {content.valid_until}")
    if today < content.valid_from:
        raise run.fail("validity", Verdict.NOT_YET_VALID, f"valid from {content.valid_from}")
    run.passed("validity")
    if status is LicenceStatus.SUSPENDED:
        raise run.fail("suspension", Verdict.SUSPENDED, "suspended")
    run.passed("suspension")


def verify_sealed(
    jws: str,
    *,
    registry: SealRegistry,
    now: dt.datetime,
    status_lists: Mapping[str, StatusList],
    status_ref: StatusRef | None = None,
) -> Verification:
    """Verify a sealed licence offline: seal registry snapshot + status lists, no gateway call.

    The status entry is the one sealed in the content, or ``status_ref`` if the content has
    none; an entry missing from ``status_lists`` gives ``not-found``.
    """
    run = _Run((*_SEALED_CHECKS, "status-entry", *_TAIL_CHECKS))
    try:
        content = _run_sealed(run, jws, registry, now)
        ref = content.status or status_ref
        status_list = status_lists.get(ref.list_id) if ref else None
        if ref is None or status_list is None or not 0 <= ref.index < status_list.size:
            raise run.fail("status-entry", Verdict.NOT_FOUND, "no status list entry for it")
        status = _STATUS_BY_VALUE.get(status_list.get(ref.index))
        if status is None:
            raise run.fail("status-entry", Verdict.NOT_FOUND, "unknown status value")
        run.passed("status-entry", f"{ref.list_id}#{ref.index}")
        _run_tail(run, content, status, now)
    except _Stop as stop:
        return run.result(stop.verdict)
    return run.result(Verdict.VALID)


def _verify_record(
    run: _Run, record: LicenceRecord, registry: SealRegistry, now: dt.datetime, named: LicenceId
) -> Verification:
    try:
        content = _run_sealed(run, record.sealed, registry, now, named)
        if content != record.content:
            raise run.fail(
                "record-matches", Verdict.FORGED, "the record differs from the sealed licence"
            )
        run.passed("record-matches")
        return _finish_record(run, content, record, now)
    except _Stop as stop:
        return run.result(stop.verdict)


def _finish_record(
    run: _Run, content: LicenceContent, record: LicenceRecord, now: dt.datetime
) -> Verification:
    _run_tail(run, content, record.status, now)
    return run.result(Verdict.VALID)


def verify_identifier(
    licence_id: str, *, record: LicenceRecord | None, registry: SealRegistry, now: dt.datetime
) -> Verification:
    """Verify a licence named by its identifier, given the stored record (None if none)."""
    run = _Run(("identifier-format", "record", *_SEALED_CHECKS, "record-matches", *_TAIL_CHECKS))
    run.licence_id = licence_id
    try:
        try:
            named = LicenceId.parse(licence_id)
        except InvalidIdentifier as exc:
            raise run.fail("identifier-format", Verdict.MALFORMED, exc.reason) from None
        run.passed("identifier-format")
        if record is None or record.content.licence_id != licence_id:
            raise run.fail("record", Verdict.NOT_FOUND, "no licence with this identifier")
        run.passed("record")
    except _Stop as stop:
        return run.result(stop.verdict)
    return _verify_record(run, record, registry, now, named)


def verify_qr(
    text: str, *, record: LicenceRecord | None, registry: SealRegistry, now: dt.datetime
) -> Verification:
    """Verify a scanned QR payload against the stored record of the licence it names."""
    run = _Run(
        ("qr-format", "record", *_SEALED_CHECKS, "record-matches", "qr-digest", *_TAIL_CHECKS)
    )
    try:
        try:
            qr = parse_qr_payload(text)
        except InvalidInput as exc:
            raise run.fail("qr-format", Verdict.MALFORMED, str(exc)) from None
        run.licence_id = qr.licence_id.value
        run.passed("qr-format")
        if record is None or record.content.licence_id != qr.licence_id.value:
            raise run.fail("record", Verdict.NOT_FOUND, "no licence with this identifier")
        run.passed("record")
        content = _run_sealed(run, record.sealed, registry, now, qr.licence_id)
        if content != record.content:
            raise run.fail(
                "record-matches", Verdict.FORGED, "the record differs from the sealed licence"
            )
        run.passed("record-matches")
        if content_digest(content)[:QR_DIGEST_BYTES] != qr.digest:
            raise run.fail(
                "qr-digest", Verdict.FORGED, "the QR code is not of this licence's content"
            )
        run.passed("qr-digest")
        return _finish_record(run, content, record, now)
    except _Stop as stop:
        return run.result(stop.verdict)


def peek_licence_id(jws: str) -> str | None:
    """The ``licence_id`` a sealed licence claims, read **without** verifying anything.

    Only to find the stored record before :func:`verify_presented` checks everything.
    """
    try:
        value = decode_json(_split(jws).payload).get("licence_id")
    except (SignatureInvalid, WireError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def verify_presented(
    jws: str, *, record: LicenceRecord | None, registry: SealRegistry, now: dt.datetime
) -> Verification:
    """Verify, online, a sealed licence someone presents: the checks of
    :func:`verify_sealed`, then that the registry holds exactly this licence, and its stored
    status. A well-sealed licence the issuer never published is ``not-found``; one that
    differs from the published content is ``forged``."""
    run = _Run((*_SEALED_CHECKS, "record", "record-matches", *_TAIL_CHECKS))
    try:
        content = _run_sealed(run, jws, registry, now)
        if record is None or record.content.licence_id != content.licence_id:
            raise run.fail("record", Verdict.NOT_FOUND, "the issuer never published it")
        run.passed("record")
        if record.content != content:
            raise run.fail("record-matches", Verdict.FORGED, "differs from the published licence")
        run.passed("record-matches")
        return _finish_record(run, content, record, now)
    except _Stop as stop:
        return run.result(stop.verdict)
