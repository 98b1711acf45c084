"""gateway.core.algorithms: the one map from ES256, EdDSA and SM2 to key objects, JWKs and
compact JWS. Each key has exactly one algorithm; a JWK or key file that says otherwise is
refused with a ValueError, never taken for another algorithm or let through to a crash."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from gateway.core.algorithms import (
    ALGORITHMS,
    SigningKey,
    algorithm_of,
    load_private_jwk,
    public_jwk,
    public_key_from_jwk,
    sign_compact,
)
from gateway.core.jose import claims_of, parse_compact
from gateway.core.jose import verify as verify_signature
from gateway.errors import ConfigurationError

_MEMBERS = {"alg", "kid", "typ"}


@given(
    payload=st.binary(max_size=300),
    headers=st.dictionaries(
        st.sampled_from(["kid", "typ", "cty", "x-extra"]),
        st.text(min_size=1, max_size=20),
        max_size=4,
    ),
)
@settings(max_examples=40, deadline=None)
def test_our_compact_jws_is_the_one_pyjwt_writes(payload: bytes, headers: dict[str, str]) -> None:
    """The oracle for the direct signing path: PyJWT's encoder, over the same keys (header
    values are never empty here: PyJWT drops an empty ``typ``, the gateway never sends one)."""
    from jwt.api_jws import PyJWS

    ed = ed25519.Ed25519PrivateKey.generate()
    # Ed25519 signatures are deterministic: the whole token is byte for byte PyJWT's.
    ours = sign_compact(payload, key=ed, alg="EdDSA", headers=headers)
    assert ours == PyJWS().encode(payload, ed, algorithm="EdDSA", headers=dict(headers))
    es = ec.generate_private_key(ec.SECP256R1())
    ours = sign_compact(payload, key=es, alg="ES256", headers=headers)
    theirs = PyJWS().encode(payload, es, algorithm="ES256", headers=dict(headers))
    assert ours.rsplit(".", 1)[0] == theirs.rsplit(".", 1)[0]  # the same header and payload
    assert PyJWS().decode(ours, es.public_key(), algorithms=["ES256"]) == payload
    assert len(ours.rsplit(".", 1)[1]) == len(theirs.rsplit(".", 1)[1])  # r‖s, 64 bytes


@pytest.mark.parametrize("alg", sorted(ALGORITHMS))
def test_a_key_signs_what_its_public_jwk_verifies_and_nothing_else(alg: str) -> None:
    key = SigningKey.generate(alg)
    token = key.sign(b'{"iss":"dept"}', headers={"typ": "yiwang-lookup+jwt"})
    jws = parse_compact(token, allowed_members=_MEMBERS)
    assert (jws.header.alg, jws.header.kid, jws.header.typ) == (
        alg,
        key.key_id,
        "yiwang-lookup+jwt",
    )
    public = public_key_from_jwk(key.public_jwk(), alg=alg)
    assert algorithm_of(public) == alg
    assert verify_signature(jws, alg=alg, key=public)
    other = public_key_from_jwk(SigningKey.generate(alg).public_jwk(), alg=alg)
    assert not verify_signature(jws, alg=alg, key=other)
    for wrong in ALGORITHMS - {alg}:  # the key's algorithm decides, never the header's
        assert not verify_signature(jws, alg=wrong, key=public)


@pytest.mark.parametrize("alg", sorted(ALGORITHMS))
def test_a_key_file_round_trips_and_its_kid_is_the_thumbprint(alg: str, tmp_path: Path) -> None:
    key = SigningKey.generate(alg)
    path = tmp_path / "key.jwk.json"
    path.write_text(json.dumps(key.private_jwk()))
    loaded = load_private_jwk(path)
    assert (loaded.algorithm_name, loaded.key_id) == (alg, key.key_id)
    assert loaded.public_jwk() == key.public_jwk()
    assert "d" not in key.public_jwk()
    assert alg in repr(loaded)
    assert key.private_jwk()["d"] not in repr(loaded)  # the secret is never shown
    path.write_text(json.dumps({**key.private_jwk(), "kid": "k1"}))
    with pytest.raises(ConfigurationError, match="thumbprint"):
        load_private_jwk(path)


def _p256() -> dict[str, Any]:
    return ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True)


@pytest.mark.parametrize(
    ("jwk", "alg", "why"),
    [
        (lambda: SigningKey.generate("SM2").public_jwk(), "ES256", "SM2 key does not sign"),
        (lambda: {**_p256(), "alg": "SM2"}, "SM2", "not-SM2"),
        (
            lambda: ECAlgorithm.to_jwk(
                ec.generate_private_key(ec.SECP384R1()).public_key(), as_dict=True
            ),
            "ES256",
            "P-256",
        ),
        (
            lambda: OKPAlgorithm.to_jwk(
                ed25519.Ed25519PrivateKey.generate().public_key(), as_dict=True
            ),
            "ES256",
            "ES256",
        ),
        (_p256, "EdDSA", "EdDSA"),
        (lambda: SigningKey.generate("ES256").private_jwk(), "ES256", "private"),
        (lambda: SigningKey.generate("SM2").private_jwk(), "SM2", "private"),
        (lambda: {**_p256(), "kid": "not-it"}, "ES256", "thumbprint"),
        (_p256, "HS256", "not allowed"),
        (_p256, "none", "not allowed"),
    ],
)
def test_a_jwk_that_is_not_its_algorithms_key_is_refused(jwk: Any, alg: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        public_key_from_jwk(jwk(), alg=alg)


def test_a_private_jwk_naming_another_algorithm_is_refused() -> None:
    sm2_key = SigningKey.generate("SM2").private_jwk()
    with pytest.raises(ValueError, match="does not sign ES256"):
        SigningKey.from_jwk({**sm2_key, "alg": "ES256"})
    es_key = SigningKey.generate("ES256").private_jwk()
    with pytest.raises(ValueError, match="EdDSA"):
        SigningKey.from_jwk({**es_key, "alg": "EdDSA"})
    with pytest.raises(ValueError, match="not a private key"):
        SigningKey.from_jwk(SigningKey.generate("ES256").public_jwk())
    with pytest.raises(ValueError, match="does not sign"):
        sign_compact(b"{}", key=SigningKey.generate("ES256").key, alg="SM2", headers={})
    with pytest.raises(ValueError, match="does not sign"):
        public_jwk(SigningKey.generate("SM2").key, alg="ES256")


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=60),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
_MEMBER_NAMES = st.sampled_from(["kty", "crv", "x", "y", "d", "kid", "alg", "use", "n", "e"])


@settings(max_examples=300, deadline=None)
@given(
    jwk=st.dictionaries(_MEMBER_NAMES, _VALUES | st.sampled_from(["EC", "SM2", "P-256", "OKP"])),
    alg=st.sampled_from([*sorted(ALGORITHMS), "HS256", "none", "RS256"]),
)
def test_hostile_jwks_are_refused_with_a_value_error_only(jwk: dict[str, Any], alg: str) -> None:
    # SM2KeyError, PyJWT's and cryptography's errors all arrive as ValueError; anything else
    # (a TypeError of an unhashable member, say) fails the test.
    with contextlib.suppress(ValueError):
        public_key_from_jwk(jwk, alg=alg)
    with contextlib.suppress(ValueError):
        SigningKey.from_jwk({**jwk, "d": jwk.get("d", "AA")})


def test_the_demo_signs_es256_where_the_systems_libcrypto_has_no_sm2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Red Hat's OpenSSL builds leave SM2 out: `make run` must still come up there.
    from gateway.app.bootstrap import demo_algorithm
    from gateway.core import sm2

    assert sm2.available()  # this machine's libcrypto has SM2 ...
    assert demo_algorithm("tax") == "SM2"
    monkeypatch.setattr(sm2, "available", lambda: False)  # ... one without it
    assert demo_algorithm("tax") == "ES256"
    assert demo_algorithm("hrss") == "EdDSA"  # the others are unaffected


@pytest.mark.parametrize(
    "payload",
    [
        b'{"iat": NaN}',
        b'{"iat": Infinity}',
        b'{"iss": "\\ud800"}',
        b"[" * 5000 + b"]" * 5000,
        b'["not", "an", "object"]',
        b"\xff\xfe",
        b"",
    ],
    ids=["nan", "infinity", "lone-surrogate", "deep", "array", "not-utf8", "empty"],
)
def test_a_gateway_jws_whose_claims_are_not_a_strict_object_reads_as_none(payload: bytes) -> None:
    # What the SDK, the offline verifier, the witness and the report read before a
    # signature says anything: never an exception, never a half-parsed value.
    token = SigningKey.generate("ES256").sign(payload, headers={"typ": "yiwang-x+jwt"})
    assert claims_of(parse_compact(token, allowed_members=_MEMBERS)) is None
    good = SigningKey.generate("ES256").sign(b'{"iat": 1}', headers={"typ": "yiwang-x+jwt"})
    assert claims_of(parse_compact(good, allowed_members=_MEMBERS)) == {"iat": 1}
