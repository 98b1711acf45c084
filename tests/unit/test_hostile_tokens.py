"""Hostile request tokens, built byte by byte and correctly signed: every one is refused with
a reason from the fixed vocabulary, nothing else ever escapes the verifier, and whatever it
accepts has finite whole-second times inside the lifetime cap.

The standard library's JSON parser — which PyJWT uses — accepts ``NaN``, ``Infinity``,
lone surrogate escapes and numbers beyond a float's range; these tests sign such payloads
with a real key so that only the strict decoding stands between them and the gateway.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from gateway.core.keyring import DepartmentKey, KeyRing, KeyStatus, public_jwk
from gateway.core.protocol import TokenType
from gateway.core.tokens import RequestTokenVerifier
from gateway.core.wire import EARLIEST_TIME, LATEST_TIME, UNSAFE_TEXT
from gateway.errors import TokenRejected

AUD = "yiwang-gateway"
NOW = 1_800_000_000
MAX_LIFETIME = 300
LEEWAY = 30

_EC = ec.generate_private_key(ec.SECP256R1())
_ED = ed25519.Ed25519PrivateKey.generate()
_EC_KEY = DepartmentKey.from_jwk(
    public_jwk(_EC, alg="ES256"), department="market", status=KeyStatus.ACTIVE
)
_ED_KEY = DepartmentKey.from_jwk(
    public_jwk(_ED, alg="EdDSA"), department="police", status=KeyStatus.ACTIVE
)
VERIFIER = RequestTokenVerifier(
    keyring=KeyRing([_EC_KEY, _ED_KEY]),
    audience=AUD,
    max_lifetime=MAX_LIFETIME,
    leeway=LEEWAY,
)

#: Every reason the verifier may give: a fixed vocabulary (plus key statuses and the
#: registered claim names), never text taken from the token.
_FIXED_REASONS = {
    "token-too-large",
    "malformed",
    "header-too-large",
    "header-malformed",
    "header-alg-invalid",
    "header-typ-invalid",
    "header-kid-invalid",
    "alg-not-allowed",
    "wrong-typ",
    "unknown-kid",
    "alg-not-allowed-for-key",
    "bad-signature",
    "payload-malformed",
    "invalid",
    "wrong-aud",
    "iss-not-key-owner",
    "expired",
    "issued-in-future",
    "not-yet-valid",
    "exp-before-iat",
    "lifetime-too-long",
}


def _reason_is_fixed(reason: str) -> bool:
    if reason in _FIXED_REASONS:
        return True
    prefix, _, rest = reason.partition(":")
    if prefix == "header-not-allowed":
        return all(name.isascii() and name.isprintable() for name in rest.split(","))
    name = reason.removeprefix("missing-").removeprefix("claim-").removesuffix("-invalid")
    return name in {"iss", "aud", "iat", "exp", "jti", "nbf"} or reason.startswith("key-")


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def signed(payload: bytes | str, header: bytes | str | None = None, *, key: str = "ES256") -> bytes:
    """A compact JWS over exactly these header and payload bytes, correctly signed."""
    if header is None:
        kid = (_EC_KEY if key == "ES256" else _ED_KEY).kid
        header = json.dumps({"alg": key, "typ": TokenType.LOOKUP, "kid": kid})
    head = header.encode() if isinstance(header, str) else header
    body = payload.encode() if isinstance(payload, str) else payload
    signing_input = _b64(head) + b"." + _b64(body)
    if key == "ES256":
        signature = ECAlgorithm(ECAlgorithm.SHA256).sign(signing_input, _EC)
    else:
        signature = OKPAlgorithm().sign(signing_input, _ED)
    return signing_input + b"." + _b64(signature)


def payload_text(**claims: str) -> str:
    """A payload whose claims are given as raw JSON text (so NaN etc. can be written)."""
    base = {
        "iss": '"market"',
        "aud": f'"{AUD}"',
        "iat": str(NOW),
        "exp": str(NOW + 120),
        "jti": '"j-1"',
    }
    base.update(claims)
    return "{" + ",".join(f'"{k}":{v}' for k, v in base.items()) + "}"


def refusal(token: bytes, now: float = NOW, max_bytes: int | None = None) -> str:
    with pytest.raises(TokenRejected) as err:
        VERIFIER.verify(token, typ=TokenType.LOOKUP, now=now, max_bytes=max_bytes)
    assert _reason_is_fixed(err.value.reason), err.value.reason
    return err.value.reason


def attempt(token: bytes, now: float = NOW, max_bytes: int | None = None) -> Any:
    """The verified token, or the refusal (anything else escaping fails the test)."""
    try:
        return VERIFIER.verify(token, typ=TokenType.LOOKUP, now=now, max_bytes=max_bytes)
    except TokenRejected as exc:
        return exc


def test_the_builder_makes_tokens_that_verify() -> None:
    for key in ("ES256", "EdDSA"):
        iss = "market" if key == "ES256" else "police"
        token = signed(payload_text(iss=f'"{iss}"'), key=key)
        assert VERIFIER.verify(token, typ=TokenType.LOOKUP, now=NOW).department == iss


@pytest.mark.parametrize("value", ["NaN", "-NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
def test_non_finite_and_overflowing_times_are_refused(claim: str, value: str) -> None:
    token = signed(payload_text(**{claim: value}))
    assert refusal(token) in {"payload-malformed", f"claim-{claim}-invalid"}


def test_nan_iat_cannot_lift_the_lifetime_cap() -> None:
    # iat NaN and exp ten years ahead: every comparison with NaN is false.
    token = signed(payload_text(iat="NaN", exp=str(NOW + 10 * 365 * 86400)))
    assert refusal(token) == "payload-malformed"


@pytest.mark.parametrize(
    "value",
    [
        str(10**400),
        str(2**63),
        str(-(2**63) - 1),
        "1800000000.5",
        "1800000000.0",
        "1.8e9",
        '"1800000000"',
        "true",
        "null",
        "[1800000000]",
        '{"t":1800000000}',
        str(EARLIEST_TIME - 1),
        str(LATEST_TIME + 1),
    ],
)
@pytest.mark.parametrize("claim", ["exp", "iat"])
def test_time_claims_are_whole_seconds_in_the_window(claim: str, value: str) -> None:
    assert refusal(signed(payload_text(**{claim: value}))) == f"claim-{claim}-invalid"


@pytest.mark.parametrize(
    "header",
    [
        '{"alg":["ES256"],"typ":"yiwang-lookup+jwt","kid":"k"}',
        '{"alg":{"a":"ES256"},"typ":"yiwang-lookup+jwt","kid":"k"}',
        '{"alg":null,"typ":"yiwang-lookup+jwt","kid":"k"}',
        '{"alg":1,"typ":"yiwang-lookup+jwt","kid":"k"}',
        '{"typ":"yiwang-lookup+jwt","kid":"k"}',
        '{"alg":"ES256","typ":["yiwang-lookup+jwt"],"kid":"k"}',
        '{"alg":"ES256","typ":"yiwang-lookup+jwt","kid":{"$ne":null}}',
        '{"alg":"ES256","typ":"yiwang-lookup+jwt","kid":NaN}',
        '["ES256"]',
        '"ES256"',
        "null",
        "{",
        '{"alg":"ES256","alg":"none"}',
        '{"alg":"ES256","typ":"yiwang-lookup+jwt","kid":"\\ud800"}',
        '{"\\u0000":"x","alg":"ES256"}',
        '{"\\ud800":"x","alg":"ES256"}',
        '{"jwk":{"kty":"EC"},"alg":"ES256"}',
        '{"crit":["exp"],"alg":"ES256"}',
    ],
)
def test_hostile_headers_are_refused_without_a_key(header: str) -> None:
    reason = refusal(signed(payload_text(), header))
    assert "\x00" not in reason
    assert not UNSAFE_TEXT.search(reason)


@pytest.mark.parametrize("depth", [100, 1_200, 10_000, 100_000])
def test_deeply_nested_headers_are_refused(depth: int) -> None:
    header = '{"alg":"ES256","x":' + "[" * depth + "]" * depth + "}"
    assert refusal(signed(payload_text(), header), max_bytes=1 << 20) in {
        "header-too-large",
        "header-malformed",
        "header-not-allowed:other",
    }


@pytest.mark.parametrize("depth", [900, 1_200, 10_000, 100_000])
def test_deeply_nested_claims_are_refused_or_ignored(depth: int) -> None:
    token = signed(payload_text(extra="[" * depth + "]" * depth))
    # Small enough to decode (an unknown claim, ignored), or refused: never an exception.
    result = attempt(token, max_bytes=1 << 20)
    if isinstance(result, TokenRejected):
        assert result.reason == "payload-malformed"


@pytest.mark.parametrize(
    "reason_text",
    ['"\\ud800"', '"\\udc00"', '"a\\ud800b"', '"\\udfff\\ud800"'],
)
def test_lone_surrogates_anywhere_in_the_payload_are_refused(reason_text: str) -> None:
    token = signed(payload_text(purpose='{"reason":' + reason_text + "}"))
    assert refusal(token) == "payload-malformed"


def test_invalid_utf8_in_the_payload_is_refused() -> None:
    payload = payload_text(note='"x"').encode().replace(b'"x"', b'"\xed\xa0\x80\xff"')
    assert refusal(signed(payload)) == "payload-malformed"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t.replace(b".", b"=.", 1),  # padding
        lambda t: t + b"=",
        lambda t: t.replace(b".", b"..", 1),
        lambda t: b" " + t.replace(b".", b". ", 1),
        lambda t: t[:10] + b"+" + t[11:],  # not the url alphabet
        lambda t: t[:10] + b"/" + t[11:],
        lambda t: t + b".extra",
        lambda t: t[: t.rindex(b".")],
        lambda t: t.replace(b".", b"\x00.", 1),
        lambda t: "é".encode() + t,
    ],
)
def test_non_canonical_serialisations_are_refused(mangle: Any) -> None:
    token = mangle(signed(payload_text()))
    with pytest.raises(TokenRejected):
        VERIFIER.verify(token, typ=TokenType.LOOKUP, now=NOW)


def test_a_changed_trailing_bit_of_the_signature_is_refused() -> None:
    token = signed(payload_text())
    head, _, sig = token.rpartition(b".")
    # 64 bytes → 86 characters, the last carrying 2 unused bits: set one of them.
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(sig[-1:])
    altered = sig[:-1] + alphabet[last ^ 1 : (last ^ 1) + 1]
    assert refusal(head + b"." + altered) in {"malformed", "bad-signature"}


@pytest.mark.parametrize("aud", ['["yiwang-gateway"]', "null", "1", '""'])
def test_audience_is_exactly_the_gateway(aud: str) -> None:
    assert refusal(signed(payload_text(aud=aud))) in {"claim-aud-invalid", "wrong-aud"}


@pytest.mark.parametrize("jti", ['"a\\u0000b"', '"\\u00e9"', '"a b"', '""', '"' + "x" * 129 + '"'])
def test_jti_is_bounded_printable_ascii(jti: str) -> None:
    assert refusal(signed(payload_text(jti=jti))) == "claim-jti-invalid"


# --- properties ------------------------------------------------------------------------------

_JSON_NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-0", "0.0", "1E+3"]),
    st.integers(min_value=NOW - 1000, max_value=NOW + 1000).map(str),
    st.integers(min_value=NOW - 1000, max_value=NOW + 1000).map(lambda n: f"{n}.0"),
)
_JSON_VALUES = st.one_of(
    _JSON_NUMBERS,
    st.sampled_from(["true", "false", "null", "[]", "{}", '""', '"\\ud800"', '"\\u0000"']),
    st.text(max_size=20).map(json.dumps),
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    iat=_JSON_VALUES,
    exp=_JSON_VALUES,
    nbf=st.one_of(st.none(), _JSON_VALUES),
    now=st.integers(min_value=NOW - 600, max_value=NOW + 600),
)
def test_any_time_claims_are_accepted_only_when_finite_whole_and_within_the_cap(
    iat: str, exp: str, nbf: str | None, now: int
) -> None:
    claims = {"iat": iat, "exp": exp} | ({"nbf": nbf} if nbf is not None else {})
    token = signed(payload_text(**claims))
    verified = attempt(token, now)
    if isinstance(verified, TokenRejected):
        assert _reason_is_fixed(verified.reason), verified.reason
        return
    # Accepted: the times are whole seconds, finite, within the cap and not expired.
    accepted_iat, accepted_exp = json.loads(iat), json.loads(exp)
    assert type(accepted_iat) is int
    assert type(accepted_exp) is int
    assert isinstance(verified.expires_at, int)
    assert math.isfinite(verified.expires_at)
    assert 0 < accepted_exp - accepted_iat <= MAX_LIFETIME
    assert now <= accepted_exp + LEEWAY
    assert accepted_iat <= now + LEEWAY


_HEADER_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(max_size=10),
        st.sampled_from(["ES256", "EdDSA", "none", "HS256", TokenType.LOOKUP, _EC_KEY.kid]),
    ),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(deadline=None)
@given(
    header=st.dictionaries(
        st.sampled_from(["alg", "typ", "kid", "jwk", "crit", "x5u", "", "\x00", "a\u202e"]),
        _HEADER_VALUES,
        max_size=5,
    )
)
def test_any_header_is_refused_with_a_fixed_reason_or_verifies(header: dict[str, Any]) -> None:
    token = signed(payload_text(), json.dumps(header))
    verified = attempt(token)
    if isinstance(verified, TokenRejected):
        assert _reason_is_fixed(verified.reason), verified.reason
        return
    # Only the one honest header verifies.
    assert header == {"alg": "ES256", "typ": TokenType.LOOKUP, "kid": _EC_KEY.kid}
    assert verified.department == "market"


@settings(deadline=None)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(TokenRejected) as err:
        VERIFIER.verify(data, typ=TokenType.LOOKUP, now=NOW)
    assert _reason_is_fixed(err.value.reason)
