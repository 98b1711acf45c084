"""The department client: sign requests as one department, send them, verify the answers."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from gateway.core.algorithms import SigningKey, load_private_jwk
from gateway.core.licences import LicenceContent, canonical_bytes
from gateway.core.protocol import TokenType
from gateway.core.status_lists import StatusRef
from gateway.core.uploads import MEDIA_TYPES, TOKEN_HEADER, UploadFormat
from gateway.sdk._answers import (
    IssuedLicence,
    JwksCache,
    SignedAnswer,
    VerificationReceipt,
    verify_answer,
)
from gateway.sdk._expect import post_expecting_continue
from gateway.sdk._http import get, http_client, quoted
from gateway.sdk._offline import OfflineVerifier, PublicDocuments
from gateway.sdk._problems import problem_from

__all__ = ["GatewayClient", "key_proof", "signing_key"]


def signing_key(key: SigningKey | jwt.PyJWK) -> SigningKey:
    """``key`` as a :class:`SigningKey` (a private key with its one algorithm: ES256, EdDSA
    or SM2). A PyJWT ``PyJWK`` of a private ES256 or EdDSA key is taken as well."""
    if isinstance(key, SigningKey):
        return key
    private = key.key
    if not isinstance(private, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError("a department or seal key is a private ES256, EdDSA or SM2 key")
    converted = SigningKey.of(private)
    if converted.algorithm_name != key.algorithm_name:
        raise ValueError(f"a {converted.algorithm_name} key does not sign {key.algorithm_name}")
    return converted


def _claims_json(claims: Mapping[str, Any]) -> bytes:
    # As PyJWT encodes a payload: compact JSON.
    return json.dumps(dict(claims), separators=(",", ":")).encode()


def key_proof(
    new_key: SigningKey | jwt.PyJWK,
    *,
    department: str,
    audience: str,
    jti: str | None = None,
    now: float | None = None,
) -> str:
    """The proof that ``department`` holds ``new_key``: a JWS by the new key over the
    department, the key's kid and the gateway (``audience``), bound to the registration
    request's ``jti`` — or, for an administrator to send on the department's behalf, to the
    time (``iat``, accepted within five minutes)."""
    key = signing_key(new_key)
    bound = {"jti": jti} if jti is not None else {"iat": int(time.time() if now is None else now)}
    return key.sign(
        _claims_json({"department": department, "kid": key.key_id, "aud": audience, **bound}),
        headers={"typ": TokenType.KEY_PROOF},
    )


def _seal(content: LicenceContent, key: SigningKey | jwt.PyJWK) -> str:
    """Seal ``content`` with ``key``: header alg, kid (thumbprint of the public key), typ."""
    return signing_key(key).sign(canonical_bytes(content), headers={"typ": TokenType.LICENCE})


class GatewayClient:
    """Signs lookups as one department and verifies the gateway's answers."""

    def __init__(
        self,
        *,
        base_url: str,
        department: str,
        key: SigningKey | jwt.PyJWK,
        audience: str = "yiwang-gateway",
        http: httpx.Client | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.department = department
        self.audience = audience
        self._key = signing_key(key)
        # A client handed in (a shared pool, a test client) belongs to the caller: not closed here.
        self._owns_http = http is None
        self._http = http or http_client(base_url, timeout=timeout)
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

    @property
    def algorithm(self) -> str:
        """The algorithm this client signs with (ES256, EdDSA or SM2)."""
        return self._key.algorithm_name

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK of the signing key (to register it, or to test with)."""
        return self._key.public_jwk()

    def close(self) -> None:
        """Close the HTTP connection pool (unless it was handed in)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def sign(
        self,
        claims: Mapping[str, Any],
        *,
        typ: str = TokenType.LOOKUP,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """Sign arbitrary ``claims`` with the department key (tests use this for bad tokens)."""
        return self._key.sign(_claims_json(claims), headers={"typ": typ, **(headers or {})})

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

    def _send(self, path: str, token: str, answer_typ: str) -> SignedAnswer:
        response = self._http.post(
            path, content=token.encode(), headers={"Content-Type": "application/jwt"}
        )
        if response.status_code != 200:
            raise problem_from(response)
        return self.verify_answer(response.text, request_token=token, typ=answer_typ)

    def _sign_and_send(
        self,
        path: str,
        claims: Mapping[str, Any],
        request_typ: str,
        answer_typ: str,
        lifetime: int,
    ) -> SignedAnswer:
        token = self.sign({**self._request_claims(lifetime, None), **claims}, typ=request_typ)
        return self._send(path, token, answer_typ)

    def send_lookup(self, token: str) -> SignedAnswer:
        """POST a signed lookup token; return the verified answer or raise."""
        return self._send("/v1/lookups", token, TokenType.LOOKUP_RESULT)

    def lookup(self, **query: Any) -> SignedAnswer:
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
    ) -> SignedAnswer:
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
            TokenType.BATCH,
            TokenType.BATCH_RESULT,
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
    ) -> SignedAnswer:
        """Which materials of service item ``item`` the gateway can supply for the applicant,
        and which the applicant must still bring (``claims["materials"]``)."""
        return self._sign_and_send(
            "/v1/manifests",
            {
                "purpose": {"item": item, "case": case, "reason": reason},
                "operator": operator,
                "applicant": {"type": applicant[0], "id": applicant[1]},
            },
            TokenType.MANIFEST,
            TokenType.MANIFEST_RESULT,
            lifetime,
        )

    def close_case(
        self, *, case: str, reason: str, operator: str, lifetime: int = 120
    ) -> SignedAnswer:
        """Declare ``case`` closed: later lookups for it are refused (``case-closed``)."""
        return self._sign_and_send(
            "/v1/cases:close",
            {"case": case, "operator": operator, "reason": reason},
            TokenType.CASE_CLOSE,
            TokenType.CASE_CLOSED,
            lifetime,
        )

    def invalidate(
        self, *, resource: str, reason: str, operator: str, lifetime: int = 120
    ) -> SignedAnswer:
        """As the provider of ``resource``: drop every cached copy of its records."""
        return self._sign_and_send(
            f"/v1/resources/{resource}/invalidate",
            {"resource": resource, "operator": operator, "reason": reason},
            TokenType.INVALIDATE,
            TokenType.INVALIDATED,
            lifetime,
        )

    def refusals(
        self,
        *,
        operator: str,
        since: int | None = None,
        limit: int | None = None,
        before: int | None = None,
        lifetime: int = 120,
    ) -> SignedAnswer:
        """This department's recent refused requests with their precise reasons (a 401 says
        nothing of why). ``since``: epoch seconds, at most 7 days back (the gateway's
        default: 24 h); ``limit``: 1..100; ``before``: the previous answer's ``next``. The
        answer's ``refusals`` name each refused token by its SHA-256 (``request_sha256``)."""
        claims: dict[str, Any] = {"operator": operator}
        for name, value in (("since", since), ("limit", limit), ("before", before)):
            if value is not None:
                claims[name] = value
        return self._sign_and_send(
            "/v1/refusals", claims, TokenType.REFUSALS, TokenType.REFUSALS_RESULT, lifetime
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
    ) -> SignedAnswer:
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
        token = self.sign(claims, typ=TokenType.UPLOAD)

        def body() -> Iterator[bytes]:
            with path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    if progress is not None:
                        progress(len(chunk))
                    yield chunk

        headers = {
            TOKEN_HEADER: token,
            "Content-Type": f"{MEDIA_TYPES[kind]}; charset=utf-8",
            "Content-Length": str(path.stat().st_size),
        }
        target = f"/v1/uploads/{resource}"
        if self._owns_http:
            # Over the network: the file goes only once the gateway has accepted the token,
            # so a refusal costs no upload (gateway.sdk._expect).
            response = post_expecting_continue(
                self._http.base_url.join(target),
                headers=headers.items(),
                body=body(),
                timeout=timeout,
            )
        else:  # a client handed in (a test client, a pool with its own transport)
            response = self._http.post(
                target,
                content=body(),
                headers=headers,
                # The gateway answers once every row is loaded: allow for that on large files.
                timeout=httpx.Timeout(timeout, connect=10.0),
            )
        if response.status_code != 200:
            raise problem_from(response)
        return self.verify_answer(response.text, request_token=token, typ=TokenType.UPLOAD_RECEIPT)

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
            typ=TokenType.UPLOAD_REPORT,
        )
        response = self._http.get(
            f"/v1/uploads/{resource}/versions/{version}/rejections",
            params={"format": fmt},
            headers={TOKEN_HEADER: token},
        )
        if response.status_code != 200:
            raise problem_from(response)
        return response.content

    # --- licences and seals -------------------------------------------------------------------

    def reserve_status(
        self, *, licence_id: str, operator: str, lifetime: int = 120
    ) -> SignedAnswer:
        """As an issuer, reserve the status entry of a licence about to be sealed
        (``claims["status"]`` = ``{list_id, index}``); asking again gives the same entry."""
        return self._sign_and_send(
            "/v1/licences:reserve",
            {"operator": operator, "licence_id": licence_id},
            TokenType.LICENCE_RESERVE,
            TokenType.LICENCE_RESERVED,
            lifetime,
        )

    def publish_licence(self, *, sealed: str, operator: str, lifetime: int = 120) -> SignedAnswer:
        """As an issuer, publish a sealed licence (compact JWS); the answer has its
        ``licence_id``, ``status``, ``qr`` payload, ``content_sha256`` and ``supersedes``."""
        return self._sign_and_send(
            "/v1/licences",
            {"operator": operator, "licence": sealed},
            TokenType.LICENCE_ISSUE,
            TokenType.LICENCE_ISSUED,
            lifetime,
        )

    def issue_licence(
        self, *, content: LicenceContent, seal_key: SigningKey | jwt.PyJWK, operator: str
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
    ) -> SignedAnswer:
        """As its issuer, ``suspend``, ``reinstate``, ``revoke``, ``withdraw`` or ``cancel`` a
        licence; the answer has ``status``, ``previous`` and ``at``."""
        return self._sign_and_send(
            f"/v1/licences/{quoted(licence_id)}/status",
            {"operator": operator, "licence_id": licence_id, "action": action, "reason": reason},
            TokenType.LICENCE_STATUS,
            TokenType.LICENCE_STATUS_CHANGED,
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
            TokenType.VERIFICATION,
            TokenType.VERIFICATION_RECEIPT,
            lifetime,
        )
        return VerificationReceipt.from_answer(answer)

    def register_seal(
        self,
        *,
        seal_id: str,
        name: str,
        type: str,
        seal_key: SigningKey | jwt.PyJWK,
        valid_from: dt.date,
        valid_until: dt.date,
        operator: str,
        lifetime: int = 120,
    ) -> SignedAnswer:
        """As an issuer, register ``seal_key``'s public half as seal ``seal_id``; the request
        carries a proof signed by the seal key itself, bound to this request's ``jti``."""
        key = signing_key(seal_key)
        jwk = key.public_jwk()
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
        claims["proof"] = key.sign(
            _claims_json({"seal_id": seal_id, "jti": claims["jti"]}),
            headers={"typ": TokenType.SEAL_PROOF},
        )
        token = self.sign(claims, typ=TokenType.SEAL_REGISTER)
        return self._send("/v1/seals", token, TokenType.SEAL_REGISTERED)

    # --- the department's own keys -------------------------------------------------------

    def register_next_key(
        self,
        new_key: SigningKey | jwt.PyJWK,
        *,
        operator: str,
        expires_at: int | None = None,
        lifetime: int = 120,
    ) -> SignedAnswer:
        """Register ``new_key``'s public half as another active key of this department: the
        request is signed with the current key and carries the new key's proof of
        possession, bound to its ``jti``. Then :meth:`use_key` it and :meth:`retire_key`
        the old one."""
        claims = {**self._request_claims(lifetime, None), "operator": operator}
        claims["jwk"] = signing_key(new_key).public_jwk()
        claims["proof"] = key_proof(
            new_key, department=self.department, audience=self.audience, jti=claims["jti"]
        )
        if expires_at is not None:
            claims["expires_at"] = expires_at
        token = self.sign(claims, typ=TokenType.KEY_REGISTER)
        return self._send("/v1/keys", token, TokenType.KEY_REGISTERED)

    def retire_key(self, kid: str, *, operator: str, lifetime: int = 120) -> SignedAnswer:
        """Retire this department's active key ``kid`` (never its last one)."""
        return self._sign_and_send(
            "/v1/keys:retire",
            {"operator": operator, "kid": kid},
            TokenType.KEY_RETIRE,
            TokenType.KEY_RETIRED,
            lifetime,
        )

    def use_key(self, key: SigningKey | jwt.PyJWK) -> None:
        """Sign every later request with ``key`` (a key registered for this department)."""
        self._key = signing_key(key)

    # --- public documents (no credentials) ------------------------------------------------

    def seals(self) -> list[dict[str, Any]]:
        """Every registered seal with its status history (``GET /v1/seals``)."""
        seals: list[dict[str, Any]] = get(self._http, "/v1/seals").json()
        return seals

    def seal_registry(self) -> str:
        """The gateway's signed seal registry snapshot (a JWT, ``GET /v1/seals/registry``)."""
        return get(self._http, "/v1/seals/registry").text

    def status_list(self, list_id: str) -> str:
        """The gateway's signed status list ``list_id`` (a JWT)."""
        return get(self._http, f"/v1/status-lists/{quoted(list_id)}").text

    def gateway_jwks(self) -> dict[str, Any]:
        """The gateway's JSON Web Key Set, fetched now."""
        jwks: dict[str, Any] = get(self._http, "/.well-known/jwks.json").json()
        return jwks

    def offline_verifier(
        self, *, list_ids: Iterable[str], now: dt.datetime | None = None
    ) -> OfflineVerifier:
        """Fetch the public documents (JWKS, registry snapshot, the whole lists ``list_ids``)
        and build an :class:`OfflineVerifier` from them, checked at ``now`` (default: now)."""
        documents = PublicDocuments.fetch(self._http, list_ids=list_ids)
        return documents.verifier(issuer=self.audience, now=now or dt.datetime.now(dt.UTC))

    def verify_answer(
        self, answer: str, *, request_token: str | None = None, typ: str = TokenType.LOOKUP_RESULT
    ) -> SignedAnswer:
        """Verify a signed answer: gateway key, ``typ``, audience (this department), and (if
        given) the request it answers."""
        return verify_answer(
            answer, jwks=self.jwks, audience=self.department, typ=typ, request_token=request_token
        )
