"""The SDK's one TLS context: built once per process, and as strict as httpx's own default."""

from __future__ import annotations

import ssl

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.sdk import GatewayClient, tls_context


def test_one_context_serves_every_client() -> None:
    assert tls_context() is tls_context()


def test_the_shared_context_verifies_certificates_and_host_names() -> None:
    context = tls_context()
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.get_ca_certs(), "no trusted certificate authority was loaded"


def test_a_client_the_sdk_makes_uses_it() -> None:
    key = jwt.PyJWK.from_dict(
        jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()), as_dict=True)
        | {"alg": "ES256"}
    )
    with GatewayClient(base_url="https://gateway.example", department="tax", key=key) as client:
        pool = client._http._transport._pool  # type: ignore[attr-defined]
        assert pool._ssl_context is tls_context()
