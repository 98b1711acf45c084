"""Request-token verification: every rule of the security section, refused with a reason."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from gateway.core.keyring import DepartmentKey, KeyRing, KeyStatus, public_jwk
from gateway.core.protocol import TokenType
from gateway.core.tokens import RequestTokenVerifier
from gateway.errors import TokenRejected

AUD = "yiwang-gateway"
NOW = 1_800_000_000.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Dept:
    def __init__(self, name: str, alg: str, status: KeyStatus = KeyStatus.ACTIVE) -> None:
        self.name = name
        self.alg = alg
        self.private = (
            ed25519.Ed25519PrivateKey.generate()
            if alg == "EdDSA"
            else ec.generate_private_key(ec.SECP256R1())
        )
        self.key = DepartmentKey.from_jwk(
            public_jwk(self.private, alg=alg), department=name, status=status
        )

    def sign(self, claims: dict[str, Any], **header: Any) -> bytes:
        headers = {"kid": self.key.kid, "typ": TokenType.LOOKUP, **header}
        alg = headers.pop("alg", self.alg)
        return jwt.encode(claims, self.private, algorithm=alg, headers=headers).encode()


@pytest.fixture(scope="module")
def depts() -> dict[str, Dept]:
    return {
        "market": Dept("market", "ES256"),
        "police": Dept("police", "EdDSA"),
        "old": Dept("old", "ES256", KeyStatus.REVOKED),
    }


@pytest.fixture(scope="module")
def verifier(depts: dict[str, Dept]) -> RequestTokenVerifier:
    return RequestTokenVerifier(keyring=KeyRing(d.key for d in depts.values()), audience=AUD)


def claims(iss: str = "market", **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": iss,
        "aud": AUD,
        "iat": int(NOW),
        "exp": int(NOW) + 120,
        "jti": "j-1",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def reason(verifier: RequestTokenVerifier, token: bytes, now: float = NOW) -> str:
    with pytest.raises(TokenRejected) as err:
        verifier.verify(token, typ=TokenType.LOOKUP, now=now)
    return err.value.reason


def test_good_tokens_of_both_algorithms_verify(
    verifier: RequestTokenVerifier, depts: dict[str, Dept]
) -> None:
    for name in ("market", "police"):
        v = verifier.verify(depts[name].sign(claims(name)), typ=TokenType.LOOKUP, now=NOW)
        assert v.department == name
        assert v.jti == "j-1"


def _unsigned(header: dict[str, Any], payload: dict[str, Any], sig: bytes = b"") -> bytes:
    return ".".join(
        [_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode()), _b64(sig)]
    ).encode()


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_in_any_spelling(
    verifier: RequestTokenVerifier, depts: dict[str, Dept], alg: str
) -> None:
    header = {"alg": alg, "typ": TokenType.LOOKUP, "kid": depts["market"].key.kid}
    assert reason(verifier, _unsigned(header, claims())) == "alg-not-allowed"


def test_hs256_signed_with_the_public_key(
    verifier: RequestTokenVerifier, depts: dict[str, Dept]
) -> None:
    # The classic confusion attack: HMAC keyed with the department's public key bytes.
    d = depts["market"]
    pem = d.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": TokenType.LOOKUP, "kid": d.key.kid}
    signing_input = _unsigned(header, claims()).rstrip(b".")
    mac = hmac.HMAC(pem, hashes.SHA256())
    mac.update(signing_input)
    token = signing_input + b"." + _b64(mac.finalize()).encode()
    assert reason(verifier, token) == "alg-not-allowed"


def test_alg_of_another_key_type(verifier: RequestTokenVerifier, depts: dict[str, Dept]) -> None:
    d = depts["police"]  # an EdDSA key; a header claiming ES256 must not select it
    header = {"alg": "ES256", "typ": TokenType.LOOKUP, "kid": d.key.kid}
    assert reason(verifier, _unsigned(header, claims("police"), b"x" * 64)) == (
        "alg-not-allowed-for-key"
    )


def test_unknown_kid(verifier: RequestTokenVerifier) -> None:
    stranger = Dept("market", "ES256")  # same name, unregistered key
    assert reason(verifier, stranger.sign(claims())) == "unknown-kid"


def test_other_departments_kid(verifier: RequestTokenVerifier, depts: dict[str, Dept]) -> None:
    # Signed by market's key but claiming to be police: the key's owner decides.
    assert reason(verifier, depts["market"].sign(claims("police"))) == "iss-not-key-owner"
    # Police's kid in the header over market's signature: the signature fails.
    forged = depts["market"].sign(claims("police"), kid=depts["police"].key.kid, alg="ES256")
    assert reason(verifier, forged) == "alg-not-allowed-for-key"


def test_revoked_key(verifier: RequestTokenVerifier, depts: dict[str, Dept]) -> None:
    assert reason(verifier, depts["old"].sign(claims("old"))) == "key-revoked"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda: claims(exp=int(NOW) - 31, iat=int(NOW) - 100), "expired"),
        (lambda: claims(iat=int(NOW) + 60, exp=int(NOW) + 120), "issued-in-future"),
        (lambda: claims(nbf=int(NOW) + 60), "not-yet-valid"),
        (lambda: claims(exp=int(NOW) + 301), "lifetime-too-long"),
        (lambda: claims(aud="another-gateway"), "wrong-aud"),
        (lambda: claims(jti=None), "missing-jti"),
        (lambda: claims(exp=None), "missing-exp"),
        (lambda: claims(iat=None), "missing-iat"),
        (lambda: claims(jti=""), "claim-jti-invalid"),
        (lambda: claims(exp=True), "claim-exp-invalid"),
    ],
)
def test_claim_rules(
    verifier: RequestTokenVerifier,
    depts: dict[str, Dept],
    change: Callable[[], dict[str, Any]],
    expected: str,
) -> None:
    assert reason(verifier, depts["market"].sign(change())) == expected


def test_leeway_is_small_but_present(
    verifier: RequestTokenVerifier, depts: dict[str, Dept]
) -> None:
    token = depts["market"].sign(claims(exp=int(NOW) - 29, iat=int(NOW) - 100))
    assert verifier.verify(token, typ=TokenType.LOOKUP, now=NOW).department == "market"


def test_bad_signature(verifier: RequestTokenVerifier, depts: dict[str, Dept]) -> None:
    token = depts["market"].sign(claims())
    head, _, sig = token.split(b".")
    tampered_payload = _b64(json.dumps(claims(jti="j-2")).encode()).encode()
    assert reason(verifier, b".".join([head, tampered_payload, sig])) == "bad-signature"


@pytest.mark.parametrize("member", ["jwk", "jku", "x5u", "x5c"])
def test_key_bearing_and_crit_headers_refused(
    verifier: RequestTokenVerifier, depts: dict[str, Dept], member: str
) -> None:
    value: Any = {
        "jwk": {"kty": "EC"},
        "jku": "http://127.0.0.1/k",
        "x5u": "http://127.0.0.1/c",
        "x5c": ["MII"],
        "crit": ["exp"],
    }[member]
    token = depts["market"].sign(claims(), **{member: value})
    assert reason(verifier, token) == f"header-not-allowed:{member}"


def test_crit_header_refused(verifier: RequestTokenVerifier, depts: dict[str, Dept]) -> None:
    # PyJWT refuses unknown critical extensions before our own header check sees them.
    for crit in (["exp"], ["b64"]):
        token = depts["market"].sign(claims(), crit=crit)
        assert reason(verifier, token) in ("header-invalid", "header-not-allowed:crit")


def test_wrong_typ(verifier: RequestTokenVerifier, depts: dict[str, Dept]) -> None:
    assert reason(verifier, depts["market"].sign(claims(), typ="JWT")) == "wrong-typ"


def test_oversized_token(verifier: RequestTokenVerifier, depts: dict[str, Dept]) -> None:
    token = depts["market"].sign(claims(padding="x" * 9000))
    assert len(token) > 8192
    assert reason(verifier, token) == "token-too-large"


def test_garbage(verifier: RequestTokenVerifier) -> None:
    assert reason(verifier, b"not a token") == "malformed"
    assert reason(verifier, "é.é.é".encode()) == "malformed"


def test_time_is_the_callers(verifier: RequestTokenVerifier, depts: dict[str, Dept]) -> None:
    token = depts["market"].sign(claims())
    # The same token, verified "later" by passing a later now: expired.
    assert reason(verifier, token, now=NOW + 500) == "expired"
    assert time.time() < NOW  # the wall clock played no part
