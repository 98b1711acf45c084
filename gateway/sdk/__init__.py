"""The department SDK: sign requests, send them, verify the gateway's answers and documents.

What a department system uses to talk to the gateway::

    from gateway.sdk import GatewayClient

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
unknown ``kid`` appears, at most once per cool-down) before anything is returned: a
:class:`SignedAnswer` has passed those checks. Problem details become typed exceptions
(:class:`GatewayProblem` and its subclasses); an answer that does not verify raises
:class:`AnswerRejected`.

What it needs: the standard library, httpx, PyJWT, msgspec, cryptography and rfc8785 (the
licence canonicalisation in :mod:`gateway.core.licences`). Inside this project it imports
only itself, the domain core (:mod:`gateway.core`) and :mod:`gateway.errors` — never the web
framework, the database, the cache or the server's modules; ``lint-imports`` (the contracts in
``pyproject.toml``) and ``tests/unit/test_sdk_isolation.py`` hold it to that.

Everything public is named below; the modules behind it (``gateway.sdk._*``) are private.
"""

from gateway.core.keyring import load_private_jwk
from gateway.core.status_lists import StatusListRejected
from gateway.sdk._answers import IssuedLicence, JwksCache, SignedAnswer, VerificationReceipt
from gateway.sdk._client import GatewayClient, key_proof
from gateway.sdk._http import http_client, tls_context
from gateway.sdk._offline import OfflineVerifier, PublicDocuments, sealed_status_list_id
from gateway.sdk._problems import (
    AnswerRejected,
    BadRequest,
    Forbidden,
    GatewayProblem,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Replayed,
    ServiceUnavailable,
    Unauthorized,
)

__all__ = [
    "AnswerRejected",
    "BadRequest",
    "Forbidden",
    "GatewayClient",
    "GatewayProblem",
    "IssuedLicence",
    "JwksCache",
    "NotFound",
    "OfflineVerifier",
    "PayloadTooLarge",
    "PublicDocuments",
    "RateLimited",
    "Replayed",
    "ServiceUnavailable",
    "SignedAnswer",
    "StatusListRejected",
    "Unauthorized",
    "VerificationReceipt",
    "http_client",
    "key_proof",
    "load_private_jwk",
    "sealed_status_list_id",
    "tls_context",
]
