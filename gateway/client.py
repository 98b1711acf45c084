"""The department side: build and sign lookup tokens, send them, verify the gateway's answers.

This module needs only PyJWT and httpx, so a department system can use it on its own::

    client = GatewayClient.from_key_file(
        base_url="http://127.0.0.1:8080",
        department="service-centre",
        key_path=Path("keys/departments/service-centre.private.jwk.json"),
    )
    answer = client.lookup(
        resource="enterprise-registration", subject=("uscc", "91350100M000100Y43"),
        fields=["name", "status"], item="000201002000", case="BJ-2026-000001",
        reason="企业变更登记核验营业执照", operator="clerk-017",
    )
    print(answer.data, answer.audit_index)

Issuing departments also publish sealed licences (:meth:`GatewayClient.issue_licence`),
change their status and register their seals; any department verifies a licence online with
a signed receipt (:meth:`GatewayClient.verify_licence`), or offline with an
:class:`OfflineVerifier` built from the gateway's public documents (JWKS, seal registry
snapshot, whole status lists), which needs no department key.

Answers are verified against the gateway's JWKS (fetched once, cached, refreshed when an
unknown ``kid`` appears, at most once per cool-down) before anything is returned. Problem
details become typed exceptions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
from cryptography.hazmat.primitives import serialization
from jwt.api_jws import PyJWS

from gateway.core.keyring import ALLOWED_ALGORITHMS, public_jwk
from gateway.core.licences import (
    LICENCE_TYP,
    STATUS_MESSAGES,
    Check,
    LicenceContent,
    Verdict,
    Verification,
    canonical_bytes,
    verify_sealed,
)
from gateway.core.seals import SealRegistry, registry_from_snapshot
from gateway.core.status_lists import (
    StatusList,
    StatusListRejected,
    StatusRef,
    verify_status_list_token,
)
from gateway.core.tokens import (
    BATCH_REQUEST_TYP,
    BATCH_RESULT_TYP,
    CASE_CLOSE_REQUEST_TYP,
    CASE_CLOSE_RESULT_TYP,
    INVALIDATE_REQUEST_TYP,
    INVALIDATE_RESULT_TYP,
    LOOKUP_REQUEST_TYP,
    LOOKUP_RESULT_TYP,
    MANIFEST_REQUEST_TYP,
    MANIFEST_RESULT_TYP,
)
from gateway.errors import Error
from gateway.licensing.claims import (
    ISSUE_REQUEST_TYP,
    ISSUE_RESULT_TYP,
    RESERVE_REQUEST_TYP,
    RESERVE_RESULT_TYP,
    SEAL_PROOF_TYP,
    SEAL_REGISTER_TYP,
    SEAL_REGISTERED_TYP,
    STATUS_REQUEST_TYP,
    STATUS_RESULT_TYP,
    VERIFY_REQUEST_TYP,
    VERIFY_RESULT_TYP,
)
from gateway.registry.keystore import load_private_jwk
from gateway.uploads.claims import (
    MEDIA_TYPES,
    REPORT_REQUEST_TYP,
    TOKEN_HEADER,
    UPLOAD_RECEIPT_TYP,
    UPLOAD_REQUEST_TYP,
    UploadFormat,
)

__all__ = [
    "AnswerRejected",
    "BadRequest",
    "Forbidden",
    "GatewayClient",
    "GatewayProblem",
    "IssuedLicence",
    "JwksCache",
    "LookupAnswer",
    "NotFound",
    "OfflineVerifier",
    "PayloadTooLarge",
    "PublicDocuments",
    "RateLimited",
    "Replayed",
    "ServiceUnavailable",
    "Unauthorized",
    "VerificationReceipt",
    "sealed_status_list_id",
]


class GatewayProblem(Error):
    """The gateway refused the request with RFC 9457 problem details."""

    status = 0

    def __init__(self, problem: Mapping[str, Any]) -> None:
        super().__init__(
            f"{problem.get('status')} {problem.get('title')}: {problem.get('detail', '')}"
        )
        self.problem = dict(problem)

    @property
    def audit_index(self) -> int | None:  # type: ignore[override]
        value = self.problem.get("audit_index")
        return value if isinstance(value, int) else None

    @property
    def reason(self) -> str | None:
        """The machine-readable reason (policy reason code or invalid field reason)."""
        value = self.problem.get("reason")
        return value if isinstance(value, str) else None


class BadRequest(GatewayProblem):
    """400: the request is malformed; ``problem['field']`` names where."""

    status = 400


class Unauthorized(GatewayProblem):
    """401: the request token was not accepted."""

    status = 401


class Forbidden(GatewayProblem):
    """403: the sharing policy refuses; ``reason`` gives the code."""

    status = 403


class NotFound(GatewayProblem):
    """404: the grant allows the lookup but the subject has no record."""

    status = 404


class Replayed(GatewayProblem):
    """409: this token was already used."""

    status = 409


class PayloadTooLarge(GatewayProblem):
    """413: the body is over the gateway's cap."""

    status = 413


class RateLimited(GatewayProblem):
    """429: the department's budget is spent; see ``retry_after``."""

    status = 429

    @property
    def retry_after(self) -> int:
        value = self.problem.get("retry_after", 1)
        return value if isinstance(value, int) else 1


class ServiceUnavailable(GatewayProblem):
    """503: a store the gateway needs is down; nothing was released."""

    status = 503


_BY_STATUS = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Replayed,
        PayloadTooLarge,
        RateLimited,
        ServiceUnavailable,
    )
}


class AnswerRejected(Error):
    """The gateway's answer did not verify: never use its data."""


@dataclass(frozen=True, slots=True)
class LookupAnswer:
    """A verified answer from the gateway."""

    token: str
    claims: dict[str, Any]

    @property
    def data(self) -> dict[str, Any]:
        """The released fields."""
        data: dict[str, Any] = self.claims["data"]
        return data

    @property
    def audit_index(self) -> int:
        """Index of the audit entry that recorded this release."""
        return int(self.claims["audit"]["index"])


@dataclass(frozen=True, slots=True)
class IssuedLicence(LookupAnswer):
    """The verified answer to a publication, with the sealed licence that was published."""

    sealed: str


@dataclass(frozen=True, slots=True)
class VerificationReceipt:
    """A verified verification receipt: the verdict, every check, and the signed token.

    ``token`` is the gateway's JWT as received: keep it, anyone with the gateway's JWKS can
    check it later, offline.
    """

    token: str
    claims: dict[str, Any]
    verdict: Verdict
    checks: tuple[Check, ...]
    licence_id: str | None
    audit_index: int

    @classmethod
    def from_answer(cls, answer: LookupAnswer) -> VerificationReceipt:
        """Read a verified receipt answer; :class:`AnswerRejected` if it is not one."""
        claims = answer.claims
        try:
            verdict = Verdict(claims["verdict"])
            checks = msgspec.convert(claims["checks"], tuple[Check, ...])
            licence_id = claims.get("licence_id")
            return cls(
                answer.token,
                claims,
                verdict,
                checks,
                licence_id if isinstance(licence_id, str) else None,
                answer.audit_index,
            )
        except (KeyError, TypeError, ValueError, msgspec.ValidationError) as exc:
            raise AnswerRejected(f"not a verification receipt: {exc}") from None


class JwksCache:
    """The gateway's public keys, fetched once and refreshed only on an unknown ``kid``."""

    def __init__(self, *, http: httpx.Client, url: str, cooldown: float = 60.0) -> None:
        self._http = http
        self._url = url
        self._cooldown = cooldown
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None

    def _refresh(self) -> None:
        response = self._http.get(self._url)
        response.raise_for_status()
        keys: dict[str, jwt.PyJWK] = {}
        for jwk in response.json().get("keys", []):
            if jwk.get("alg") == "ES256" and "kid" in jwk:
                keys[jwk["kid"]] = jwt.PyJWK(jwk, algorithm="ES256")
        self._keys = keys
        self._fetched_at = time.monotonic()

    def get(self, kid: str) -> jwt.PyJWK:
        """The key for ``kid``, refreshing at most once per cool-down when it is unknown."""
        if kid not in self._keys and (
            self._fetched_at is None or time.monotonic() - self._fetched_at >= self._cooldown
        ):
            self._refresh()
        try:
            return self._keys[kid]
        except KeyError:
            raise AnswerRejected(f"unknown gateway key {kid!r}") from None


def _get(http: httpx.Client, path: str) -> httpx.Response:
    response = http.get(path)
    if response.status_code != 200:
        raise GatewayClient._problem(response)
    return response


def _quoted(segment: str) -> str:
    # Identifiers are data, never path syntax: a "/" or "?" in one must not change the route.
    return urllib.parse.quote(segment, safe="")


def sealed_status_list_id(sealed: str) -> str | None:
    """The status list a sealed licence names, read **without** verifying anything.

    Only to choose which whole list to fetch before an :class:`OfflineVerifier` checks the
    licence; None if the document does not name one (verification then says ``not-found``).
    """
    try:
        payload = PyJWS().decode_complete(sealed, options={"verify_signature": False})["payload"]
        status = msgspec.json.decode(payload).get("status")
        list_id = status.get("list_id") if isinstance(status, dict) else None
    except (jwt.PyJWTError, msgspec.DecodeError, AttributeError):
        return None
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
        jwks = _get(http, "/.well-known/jwks.json").json()
        registry = _get(http, "/v1/seals/registry").text
        lists = {i: _get(http, f"/v1/status-lists/{_quoted(i)}").text for i in set(list_ids)}
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


def _gateway_jwk(jwks: Mapping[str, Any], token: str) -> dict[str, Any]:
    """The gateway's ES256 key that signed ``token``, chosen by ``kid`` from the JWKS."""
    try:
        kid = PyJWS().get_unverified_header(token).get("kid")
    except jwt.PyJWTError as exc:
        raise StatusListRejected(f"not a gateway JWS: {exc}") from None
    for jwk in jwks.get("keys", []):
        if isinstance(jwk, dict) and jwk.get("kid") == kid and jwk.get("alg") == "ES256":
            return jwk
    raise StatusListRejected(f"no gateway key {kid!r} in the JWKS")


def _expiry(token: str) -> dt.datetime:
    # Only called on a token whose signature and exp were just verified.
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    return dt.datetime.fromtimestamp(int(exp), dt.UTC)


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


def _seal(content: LicenceContent, key: jwt.PyJWK) -> str:
    """Seal ``content`` with ``key``: header alg, kid (thumbprint of the public key), typ."""
    if key.algorithm_name not in ALLOWED_ALGORITHMS:
        raise ValueError("seal keys sign with ES256 or EdDSA")
    kid = public_jwk(key.key, alg=key.algorithm_name)["kid"]
    return PyJWS().encode(
        canonical_bytes(content),
        key.key,
        algorithm=key.algorithm_name,
        headers={"kid": kid, "typ": LICENCE_TYP},
    )


class GatewayClient:
    """Signs lookups as one department and verifies the gateway's answers."""

    def __init__(
        self,
        *,
        base_url: str,
        department: str,
        key: jwt.PyJWK,
        audience: str = "yiwang-gateway",
        http: httpx.Client | None = None,
        timeout: float = 10.0,
    ) -> None:
        if key.algorithm_name not in ("ES256", "EdDSA"):
            raise ValueError("department keys sign with ES256 or EdDSA")
        self.department = department
        self.audience = audience
        self._key = key
        self._http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self.jwks = JwksCache(http=self._http, url="/.well-known/jwks.json")

    @classmethod
    def from_key_file(
        cls, *, base_url: str, department: str, key_path: Path, audience: str = "yiwang-gateway"
    ) -> GatewayClient:
        """A client signing with the private JWK in ``key_path``."""
        return cls(
            base_url=base_url,
            department=department,
            key=load_private_jwk(key_path),
            audience=audience,
        )

    @property
    def key_id(self) -> str:
        """The ``kid`` of the department key this client signs with."""
        return str(self._key.key_id)

    def public_key_pem(self) -> bytes:
        """The public half of the signing key, PEM-encoded (to register it, or to test with)."""
        key = self._key.key
        public = key.public_key() if hasattr(key, "public_key") else key
        pem: bytes = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def sign(
        self,
        claims: Mapping[str, Any],
        *,
        typ: str = LOOKUP_REQUEST_TYP,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """Sign arbitrary ``claims`` with the department key (tests use this for bad tokens)."""
        return jwt.encode(
            dict(claims),
            self._key.key,
            algorithm=self._key.algorithm_name,
            headers={"kid": self._key.key_id, "typ": typ, **(headers or {})},
        )

    def lookup_token(
        self,
        *,
        resource: str,
        subject: tuple[str, str],
        fields: Sequence[str],
        item: str,
        case: str,
        reason: str,
        operator: str,
        lifetime: int = 120,
        now: float | None = None,
    ) -> str:
        """A signed lookup request token with a fresh ``jti``."""
        return self.sign(
            {
                **self._request_claims(lifetime, now),
                "purpose": {"item": item, "case": case, "reason": reason},
                "operator": operator,
                "query": {
                    "resource": resource,
                    "subject": {"type": subject[0], "id": subject[1]},
                    "fields": list(fields),
                },
            }
        )

    def _request_claims(self, lifetime: int, now: float | None) -> dict[str, Any]:
        iat = int(time.time() if now is None else now)
        return {
            "iss": self.department,
            "aud": self.audience,
            "iat": iat,
            "exp": iat + lifetime,
            "jti": uuid.uuid4().hex,
        }

    def _send(self, path: str, token: str, answer_typ: str) -> LookupAnswer:
        response = self._http.post(
            path, content=token.encode(), headers={"Content-Type": "application/jwt"}
        )
        if response.status_code != 200:
            raise self._problem(response)
        return self.verify_answer(response.text, request_token=token, typ=answer_typ)

    def _sign_and_send(
        self,
        path: str,
        claims: Mapping[str, Any],
        request_typ: str,
        answer_typ: str,
        lifetime: int,
    ) -> LookupAnswer:
        token = self.sign({**self._request_claims(lifetime, None), **claims}, typ=request_typ)
        return self._send(path, token, answer_typ)

    def send_lookup(self, token: str) -> LookupAnswer:
        """POST a signed lookup token; return the verified answer or raise."""
        return self._send("/v1/lookups", token, LOOKUP_RESULT_TYP)

    def lookup(self, **query: Any) -> LookupAnswer:
        """Build, sign and send one lookup (see :meth:`lookup_token` for the arguments)."""
        return self.send_lookup(self.lookup_token(**query))

    def lookup_batch(
        self,
        *,
        queries: Sequence[Mapping[str, Any]],
        item: str,
        case: str,
        reason: str,
        operator: str,
        lifetime: int = 120,
    ) -> LookupAnswer:
        """Several lookups under one purpose. Each query: ``resource``, ``subject`` (a
        ``(type, id)`` pair) and ``fields``. The answer's ``claims["results"]`` has one
        entry per query, in order, each with its own ``status``."""
        return self._sign_and_send(
            "/v1/lookups:batch",
            {
                "purpose": {"item": item, "case": case, "reason": reason},
                "operator": operator,
                "queries": [
                    {
                        "resource": q["resource"],
                        "subject": {"type": q["subject"][0], "id": q["subject"][1]},
                        "fields": list(q["fields"]),
                    }
                    for q in queries
                ],
            },
            BATCH_REQUEST_TYP,
            BATCH_RESULT_TYP,
            lifetime,
        )

    def manifest(
        self,
        *,
        applicant: tuple[str, str],
        item: str,
        case: str,
        reason: str,
        operator: str,
        lifetime: int = 120,
    ) -> LookupAnswer:
        """Which materials of service item ``item`` the gateway can supply for the applicant,
        and which the applicant must still bring (``claims["materials"]``)."""
        return self._sign_and_send(
            "/v1/manifests",
            {
                "purpose": {"item": item, "case": case, "reason": reason},
                "operator": operator,
                "applicant": {"type": applicant[0], "id": applicant[1]},
            },
            MANIFEST_REQUEST_TYP,
            MANIFEST_RESULT_TYP,
            lifetime,
        )

    def close_case(
        self, *, case: str, reason: str, operator: str, lifetime: int = 120
    ) -> LookupAnswer:
        """Declare ``case`` closed: later lookups for it are refused (``case-closed``)."""
        return self._sign_and_send(
            "/v1/cases:close",
            {"case": case, "operator": operator, "reason": reason},
            CASE_CLOSE_REQUEST_TYP,
            CASE_CLOSE_RESULT_TYP,
            lifetime,
        )

    def invalidate(
        self, *, resource: str, reason: str, operator: str, lifetime: int = 120
    ) -> LookupAnswer:
        """As the provider of ``resource``: drop every cached copy of its records."""
        return self._sign_and_send(
            f"/v1/resources/{resource}/invalidate",
            {"resource": resource, "operator": operator, "reason": reason},
            INVALIDATE_REQUEST_TYP,
            INVALIDATE_RESULT_TYP,
            lifetime,
        )

    # --- periodic uploads (provider side) ---------------------------------------------------

    def upload(
        self,
        *,
        resource: str,
        path: Path,
        operator: str,
        fmt: str | None = None,
        sha256: str | None = None,
        rows: int | None = None,
        lifetime: int = 120,
        progress: Callable[[int], None] | None = None,
        timeout: float = 900.0,
    ) -> LookupAnswer:
        """As the provider of ``resource``, upload the file at ``path`` (CSV, or JSON Lines for
        ``.jsonl``/``.ndjson``) as its new version; return the verified receipt. The file is
        streamed, never read whole; ``progress`` is called with each chunk's size."""
        kind = UploadFormat(fmt or ("jsonl" if path.suffix in (".jsonl", ".ndjson") else "csv"))
        if sha256 is None:
            digest = hashlib.sha256()
            with path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
            sha256 = digest.hexdigest()
        claims: dict[str, Any] = {
            **self._request_claims(lifetime, None),
            "resource": resource,
            "sha256": sha256,
            "format": str(kind),
            "operator": operator,
        }
        if rows is not None:
            claims["rows"] = rows
        token = self.sign(claims, typ=UPLOAD_REQUEST_TYP)

        def body() -> Iterator[bytes]:
            with path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    if progress is not None:
                        progress(len(chunk))
                    yield chunk

        response = self._http.post(
            f"/v1/uploads/{resource}",
            content=body(),
            headers={
                TOKEN_HEADER: token,
                "Content-Type": f"{MEDIA_TYPES[kind]}; charset=utf-8",
                "Content-Length": str(path.stat().st_size),
            },
            # The gateway answers once every row is loaded: allow for that on large files.
            timeout=httpx.Timeout(timeout, connect=10.0),
        )
        if response.status_code != 200:
            raise self._problem(response)
        return self.verify_answer(response.text, request_token=token, typ=UPLOAD_RECEIPT_TYP)

    def upload_rejections(
        self, *, resource: str, version: int, operator: str, fmt: str = "csv", lifetime: int = 120
    ) -> bytes:
        """The rejection report of an uploaded version (``csv`` or ``jsonl``)."""
        token = self.sign(
            {
                **self._request_claims(lifetime, None),
                "resource": resource,
                "version": version,
                "operator": operator,
            },
            typ=REPORT_REQUEST_TYP,
        )
        response = self._http.get(
            f"/v1/uploads/{resource}/versions/{version}/rejections",
            params={"format": fmt},
            headers={TOKEN_HEADER: token},
        )
        if response.status_code != 200:
            raise self._problem(response)
        return response.content

    # --- licences and seals -------------------------------------------------------------------

    def reserve_status(
        self, *, licence_id: str, operator: str, lifetime: int = 120
    ) -> LookupAnswer:
        """As an issuer, reserve the status entry of a licence about to be sealed
        (``claims["status"]`` = ``{list_id, index}``); asking again gives the same entry."""
        return self._sign_and_send(
            "/v1/licences:reserve",
            {"operator": operator, "licence_id": licence_id},
            RESERVE_REQUEST_TYP,
            RESERVE_RESULT_TYP,
            lifetime,
        )

    def publish_licence(self, *, sealed: str, operator: str, lifetime: int = 120) -> LookupAnswer:
        """As an issuer, publish a sealed licence (compact JWS); the answer has its
        ``licence_id``, ``status``, ``qr`` payload, ``content_sha256`` and ``supersedes``."""
        return self._sign_and_send(
            "/v1/licences",
            {"operator": operator, "licence": sealed},
            ISSUE_REQUEST_TYP,
            ISSUE_RESULT_TYP,
            lifetime,
        )

    def issue_licence(
        self, *, content: LicenceContent, seal_key: jwt.PyJWK, operator: str
    ) -> IssuedLicence:
        """Reserve a status entry, seal ``content`` (with that entry) with ``seal_key``, and
        publish it. The seal key must be registered (:meth:`register_seal`); it never leaves
        this process."""
        reserved = self.reserve_status(licence_id=content.licence_id, operator=operator)
        entry = reserved.claims["status"]
        sealed_content = msgspec.structs.replace(
            content, status=StatusRef(str(entry["list_id"]), int(entry["index"]))
        )
        sealed = _seal(sealed_content, seal_key)
        answer = self.publish_licence(sealed=sealed, operator=operator)
        return IssuedLicence(answer.token, answer.claims, sealed)

    def change_licence_status(
        self, *, licence_id: str, action: str, reason: str, operator: str, lifetime: int = 120
    ) -> LookupAnswer:
        """As its issuer, ``suspend``, ``reinstate``, ``revoke``, ``withdraw`` or ``cancel`` a
        licence; the answer has ``status``, ``previous`` and ``at``."""
        return self._sign_and_send(
            f"/v1/licences/{_quoted(licence_id)}/status",
            {"operator": operator, "licence_id": licence_id, "action": action, "reason": reason},
            STATUS_REQUEST_TYP,
            STATUS_RESULT_TYP,
            lifetime,
        )

    def verify_licence(
        self,
        *,
        licence_id: str | None = None,
        qr: str | None = None,
        licence: str | None = None,
        item: str,
        case: str,
        reason: str,
        operator: str,
        lifetime: int = 120,
    ) -> VerificationReceipt:
        """Verify a licence online, for a purpose, from exactly one of its identifier, its QR
        payload or the sealed licence itself; return the gateway's signed receipt."""
        given = {
            k: v
            for k, v in (("licence_id", licence_id), ("qr", qr), ("licence", licence))
            if v is not None
        }
        if len(given) != 1:
            raise ValueError("give exactly one of licence_id, qr, licence")
        answer = self._sign_and_send(
            "/v1/verifications",
            {
                "operator": operator,
                "purpose": {"item": item, "case": case, "reason": reason},
                **given,
            },
            VERIFY_REQUEST_TYP,
            VERIFY_RESULT_TYP,
            lifetime,
        )
        return VerificationReceipt.from_answer(answer)

    def register_seal(
        self,
        *,
        seal_id: str,
        name: str,
        type: str,
        seal_key: jwt.PyJWK,
        valid_from: dt.date,
        valid_until: dt.date,
        operator: str,
        lifetime: int = 120,
    ) -> LookupAnswer:
        """As an issuer, register ``seal_key``'s public half as seal ``seal_id``; the request
        carries a proof signed by the seal key itself, bound to this request's ``jti``."""
        if seal_key.algorithm_name not in ALLOWED_ALGORITHMS:
            raise ValueError("seal keys sign with ES256 or EdDSA")
        jwk = public_jwk(seal_key.key, alg=seal_key.algorithm_name)
        claims = {
            **self._request_claims(lifetime, None),
            "operator": operator,
            "seal": {
                "seal_id": seal_id,
                "name": name,
                "type": type,
                "jwk": jwk,
                "valid_from": valid_from.isoformat(),
                "valid_until": valid_until.isoformat(),
            },
        }
        # The same jti makes the proof useless for any other registration.
        claims["proof"] = jwt.encode(
            {"seal_id": seal_id, "jti": claims["jti"]},
            seal_key.key,
            algorithm=seal_key.algorithm_name,
            headers={"kid": jwk["kid"], "typ": SEAL_PROOF_TYP},
        )
        token = self.sign(claims, typ=SEAL_REGISTER_TYP)
        return self._send("/v1/seals", token, SEAL_REGISTERED_TYP)

    # --- public documents (no credentials) ------------------------------------------------

    def seals(self) -> list[dict[str, Any]]:
        """Every registered seal with its status history (``GET /v1/seals``)."""
        seals: list[dict[str, Any]] = _get(self._http, "/v1/seals").json()
        return seals

    def seal_registry(self) -> str:
        """The gateway's signed seal registry snapshot (a JWT, ``GET /v1/seals/registry``)."""
        return _get(self._http, "/v1/seals/registry").text

    def status_list(self, list_id: str) -> str:
        """The gateway's signed status list ``list_id`` (a JWT)."""
        return _get(self._http, f"/v1/status-lists/{_quoted(list_id)}").text

    def gateway_jwks(self) -> dict[str, Any]:
        """The gateway's JSON Web Key Set, fetched now."""
        jwks: dict[str, Any] = _get(self._http, "/.well-known/jwks.json").json()
        return jwks

    def offline_verifier(
        self, *, list_ids: Iterable[str], now: dt.datetime | None = None
    ) -> OfflineVerifier:
        """Fetch the public documents (JWKS, registry snapshot, the whole lists ``list_ids``)
        and build an :class:`OfflineVerifier` from them, checked at ``now`` (default: now)."""
        documents = PublicDocuments.fetch(self._http, list_ids=list_ids)
        return documents.verifier(issuer=self.audience, now=now or dt.datetime.now(dt.UTC))

    def verify_answer(
        self, answer: str, *, request_token: str | None = None, typ: str = LOOKUP_RESULT_TYP
    ) -> LookupAnswer:
        """Verify a signed answer: gateway key, ``typ``, audience, and (if given) the request
        it answers."""
        try:
            header = jwt.get_unverified_header(answer)
            if header.get("typ") != typ or header.get("alg") != "ES256":
                raise AnswerRejected(f"not a gateway answer of type {typ}")
            key = self.jwks.get(str(header.get("kid")))
            claims: dict[str, Any] = jwt.decode(
                answer,
                key=key.key,
                algorithms=["ES256"],
                audience=self.department,  # the answer must be meant for us
                options={"require": ["iss", "aud", "iat", "exp", "jti"]},
            )
        except jwt.InvalidTokenError as exc:
            raise AnswerRejected(f"answer does not verify: {exc}") from None
        if request_token is not None:
            expected = hashlib.sha256(request_token.encode()).hexdigest()
            if claims.get("request", {}).get("sha256") != expected:
                raise AnswerRejected("answer is not for this request")
        return LookupAnswer(token=answer, claims=claims)

    @staticmethod
    def _problem(response: httpx.Response) -> GatewayProblem:
        try:
            problem = response.json()
            if not isinstance(problem, dict):
                raise ValueError
        except ValueError:
            problem = {"status": response.status_code, "title": response.reason_phrase}
        cls = _BY_STATUS.get(response.status_code, GatewayProblem)
        return cls(problem)
