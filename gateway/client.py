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

Answers are verified against the gateway's JWKS (fetched once, cached, refreshed when an
unknown ``kid`` appears, at most once per cool-down) before anything is returned. Problem
details become typed exceptions.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization

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
from gateway.keystore import load_private_jwk
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
    "JwksCache",
    "LookupAnswer",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Replayed",
    "ServiceUnavailable",
    "Unauthorized",
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
