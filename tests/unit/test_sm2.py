"""SM2/SM3 core (gateway/core/sm2.py): the standard's example, keys, JWKs, JWS, HMAC-SM3.

Interop with implementations not written here (the openssl command line, gmalglib) is in
tests/integration/test_sm2_interop.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc.jwk import thumbprint as joserfc_thumbprint

from gateway.core import sm2
from gateway.core.algorithms import sign_compact
from gateway.core.jose import JoseError, parse_compact
from gateway.errors import ConfigurationError, InvalidInput

# GM/T 0003.5-2012 (GB/T 32918.5-2017), annex A.2: signature on the recommended curve, user id
# 1234567812345678, message "message digest", nonce k fixed.
VECTOR_D = bytes.fromhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")
VECTOR_X = bytes.fromhex("09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020")
VECTOR_Y = bytes.fromhex("CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13")
VECTOR_ZA = bytes.fromhex("B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3")
VECTOR_K = bytes.fromhex("59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21")
VECTOR_R = bytes.fromhex("F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3")
VECTOR_S = bytes.fromhex("B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA")
VECTOR_MESSAGE = b"message digest"

# The recommended curve's parameters as GB/T 32918.5 prints them (Z hashes them).
CURVE_A = bytes.fromhex("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC")
CURVE_B = bytes.fromhex("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93")
CURVE_GX = bytes.fromhex("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7")
CURVE_GY = bytes.fromhex("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0")
CURVE_P = int.from_bytes(CURVE_A, "big") + 3
CURVE_N = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)

_KEY = sm2.generate_private_key()
_OTHER = sm2.generate_private_key()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def vector_public_jwk() -> dict[str, Any]:
    return {"kty": "EC", "crv": "SM2", "x": b64(VECTOR_X), "y": b64(VECTOR_Y)}


# --- the standard -----------------------------------------------------------------------------


def test_the_standards_signature_verifies_and_a_changed_message_does_not() -> None:
    key = sm2.SM2PublicKey.from_jwk(vector_public_jwk())
    assert key.verify(VECTOR_R + VECTOR_S, VECTOR_MESSAGE)
    assert not key.verify(VECTOR_R + VECTOR_S, b"message digesT")
    assert not key.verify(VECTOR_S + VECTOR_R, VECTOR_MESSAGE)


def test_the_standards_private_key_signs_what_its_public_key_verifies() -> None:
    private = sm2.SM2PrivateKey.from_jwk({**vector_public_jwk(), "d": b64(VECTOR_D)})
    signature = private.sign(VECTOR_MESSAGE)
    assert len(signature) == sm2.SIGNATURE_LENGTH
    assert private.public_key.verify(signature, VECTOR_MESSAGE)


def test_z_of_the_standard_is_sm3_over_the_documented_members() -> None:
    # docs/sm2.md: Z = SM3(ENTL ‖ ID ‖ a ‖ b ‖ xG ‖ yG ‖ xA ‖ yA), ENTL the id's length in bits.
    entl = (len(sm2.USER_ID) * 8).to_bytes(2, "big")
    members = entl + sm2.USER_ID + CURVE_A + CURVE_B + CURVE_GX + CURVE_GY + VECTOR_X + VECTOR_Y
    assert sm2.sm3(members) == VECTOR_ZA


def test_sm3_of_the_standards_example() -> None:
    # GB/T 32905-2016, annex A.1.
    assert sm2.sm3(b"abc").hex() == (
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    )


def test_the_generator_is_on_the_curve_the_module_checks_against() -> None:
    # The module's own curve constants accept G and refuse its neighbour.
    sm2.SM2PublicKey(x=CURVE_GX, y=CURVE_GY)
    with pytest.raises(sm2.SM2KeyError) as refused:
        sm2.SM2PublicKey(x=CURVE_GX, y=(int.from_bytes(CURVE_GY, "big") + 1).to_bytes(32, "big"))
    assert refused.value.reason == "point-not-on-curve"


# --- keys and signatures ----------------------------------------------------------------------


def test_a_signature_is_64_bytes_with_a_fresh_nonce_each_time() -> None:
    first, second = _KEY.sign(b"same"), _KEY.sign(b"same")
    assert len(first) == len(second) == 64
    assert first != second
    assert _KEY.public_key.verify(first, b"same")
    assert _KEY.public_key.verify(second, b"same")


def test_another_keys_signature_is_refused() -> None:
    assert not _KEY.public_key.verify(_OTHER.sign(b"m"), b"m")


@pytest.mark.parametrize(
    "signature",
    [
        b"",
        b"\x00" * 63,
        b"\x00" * 65,
        b"\x00" * 64,  # r = s = 0
        b"\xff" * 64,  # r, s >= n
        CURVE_N.to_bytes(32, "big") + b"\x00" * 31 + b"\x01",  # r = n
        b"\x00" * 31 + b"\x01" + CURVE_N.to_bytes(32, "big"),  # s = n
    ],
)
def test_a_malformed_signature_is_false_not_an_exception(signature: bytes) -> None:
    assert _KEY.public_key.verify(signature, b"m") is False


def test_empty_message_signs_and_verifies() -> None:
    assert _KEY.public_key.verify(_KEY.sign(b""), b"")
    assert not _KEY.public_key.verify(_KEY.sign(b""), b"\x00")


@pytest.mark.parametrize("message", [10**12, None, "text", bytearray(b"m")])
def test_a_message_that_is_not_bytes_is_a_type_error_not_an_allocation(message: Any) -> None:
    with pytest.raises(TypeError):
        _KEY.sign(message)
    with pytest.raises(TypeError):
        _KEY.public_key.verify(_KEY.sign(b"m"), message)


def test_keys_shared_by_threads_sign_and_verify_correctly() -> None:
    # ctypes releases the GIL during each call: threads really do run in libcrypto together.
    signature = _KEY.sign(b"shared")

    def work(index: int) -> bool:
        message = index.to_bytes(4, "big")
        return all(
            _KEY.public_key.verify(_KEY.sign(message), message)
            and _KEY.public_key.verify(signature, b"shared")
            and not _KEY.public_key.verify(signature, message)
            for _ in range(25)
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(work, range(8)))


def test_the_private_keys_repr_shows_no_secret() -> None:
    d = _KEY.private_jwk()["d"]
    assert d not in repr(_KEY)
    assert d not in str(_KEY)
    assert _KEY.kid in repr(_KEY)


def test_jwk_round_trip_keeps_the_key_and_its_kid() -> None:
    public = sm2.SM2PublicKey.from_jwk(_KEY.public_key.jwk())
    private = sm2.SM2PrivateKey.from_jwk(_KEY.private_jwk())
    assert public == _KEY.public_key == private.public_key
    assert public.kid == _KEY.kid
    assert public.verify(private.sign(b"m"), b"m")
    assert set(public.jwk()) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert "d" not in public.jwk()


def test_the_kid_is_the_rfc7638_thumbprint_as_another_implementation_computes_it() -> None:
    jwk = _KEY.public_key.jwk()
    members = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
    assert _KEY.kid == joserfc_thumbprint(members)
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    assert _KEY.kid == b64(hashlib.sha256(canonical).digest())
    assert canonical.startswith(b'{"crv":"SM2","kty":"EC","x":')


# --- malformed JWKs ---------------------------------------------------------------------------


def _with(**changes: Any) -> dict[str, Any]:
    jwk: dict[str, Any] = {**vector_public_jwk(), **changes}
    return {k: v for k, v in jwk.items() if v is not None}


@pytest.mark.parametrize(
    ("jwk", "field", "reason"),
    [
        ([], "jwk", "not-an-object"),
        ("{}", "jwk", "not-an-object"),
        (None, "jwk", "not-an-object"),
        ({1: "EC"}, "jwk", "not-an-object"),
        (_with(kty="OKP"), "jwk.kty", "not-EC"),
        (_with(kty=None), "jwk.kty", "not-EC"),
        (_with(crv="P-256"), "jwk.crv", "not-SM2"),
        (_with(crv="sm2"), "jwk.crv", "not-SM2"),
        (_with(alg="ES256"), "jwk.alg", "not-SM2"),
        (_with(use="enc"), "jwk.use", "not-sig"),
        (_with(x=None), "jwk.x", "missing"),
        (_with(y=5), "jwk.y", "not-a-string"),
        (_with(x=b64(VECTOR_X[1:])), "jwk.x", "not-32-bytes-base64url"),
        (_with(x=b64(b"\x00" + VECTOR_X)), "jwk.x", "not-32-bytes-base64url"),
        (_with(x=b64(VECTOR_X) + "="), "jwk.x", "not-32-bytes-base64url"),
        (_with(x="+" * 43), "jwk.x", "not-32-bytes-base64url"),  # base64, not base64url
        (_with(x=" " + b64(VECTOR_X)[1:]), "jwk.x", "not-32-bytes-base64url"),
        (_with(y=b64(b"\xff" * 32)), "jwk", "coordinate-out-of-range"),
        (_with(y=b64(VECTOR_X)), "jwk", "point-not-on-curve"),
        (_with(d=b64(VECTOR_D)), "jwk", "private-member-in-public-key"),
        (_with(k="c2VjcmV0"), "jwk", "private-member-in-public-key"),
        (_with(x5c=["MIIB"]), "jwk", "member-not-allowed"),
        (_with(jku="https://example.test/jwks"), "jwk", "member-not-allowed"),
        (_with(kid="not-its-thumbprint"), "jwk.kid", "not-the-thumbprint"),
    ],
)
def test_a_malformed_public_jwk_is_refused_with_its_reason(
    jwk: Any, field: str, reason: str | None
) -> None:
    with pytest.raises(sm2.SM2KeyError) as refused:
        sm2.SM2PublicKey.from_jwk(jwk)
    assert isinstance(refused.value, InvalidInput)
    assert refused.value.field == field
    if reason is not None:
        assert refused.value.reason == reason


def test_a_non_canonical_spelling_of_x_is_refused() -> None:
    # The last base64url character of 32 bytes carries 4 bits: 2 are padding and must be zero.
    canonical = b64(VECTOR_X)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(canonical[-1])
    spelled = canonical[:-1] + alphabet[last ^ 1]
    assert base64.urlsafe_b64decode(spelled + "=") == VECTOR_X
    with pytest.raises(sm2.SM2KeyError) as refused:
        sm2.SM2PublicKey.from_jwk(_with(x=spelled))
    assert (refused.value.field, refused.value.reason) == ("jwk.x", "not-32-bytes-base64url")


@pytest.mark.parametrize(
    ("d", "reason"),
    [
        (b"\x00" * 32, "scalar-out-of-range"),
        ((CURVE_N - 1).to_bytes(32, "big"), "scalar-out-of-range"),
        (CURVE_N.to_bytes(32, "big"), "scalar-out-of-range"),
        (b"\xff" * 32, "scalar-out-of-range"),
        ((int.from_bytes(VECTOR_D, "big") + 1).to_bytes(32, "big"), "pair-mismatch"),
    ],
)
def test_a_private_scalar_out_of_range_or_not_of_this_point_is_refused(
    d: bytes, reason: str
) -> None:
    with pytest.raises(sm2.SM2KeyError) as refused:
        sm2.SM2PrivateKey.from_jwk({**vector_public_jwk(), "d": b64(d)})
    assert refused.value.reason == reason


def test_a_private_jwk_without_d_is_refused() -> None:
    with pytest.raises(sm2.SM2KeyError) as refused:
        sm2.SM2PrivateKey.from_jwk(vector_public_jwk())
    assert (refused.value.field, refused.value.reason) == ("jwk.d", "missing")


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["kty", "crv", "x", "y", "d", "kid", "alg", "use", "e"]),
        _json_values | st.sampled_from(["EC", "SM2", b64(VECTOR_X), b64(VECTOR_Y), b64(VECTOR_D)]),
    )
)
def test_any_json_object_is_a_key_or_an_sm2_key_error(jwk: dict[str, Any]) -> None:
    try:
        key = sm2.SM2PublicKey.from_jwk(jwk)
    except sm2.SM2KeyError:
        return
    assert (key.x, key.y) == (VECTOR_X, VECTOR_Y)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_random_points_are_refused_unless_on_the_curve(x: bytes, y: bytes) -> None:
    on_curve = (
        int.from_bytes(x, "big") < CURVE_P
        and int.from_bytes(y, "big") < CURVE_P
        and (
            pow(int.from_bytes(y, "big"), 2, CURVE_P)
            - (
                pow(int.from_bytes(x, "big"), 3, CURVE_P)
                + (CURVE_P - 3) * int.from_bytes(x, "big")
                + int.from_bytes(CURVE_B, "big")
            )
        )
        % CURVE_P
        == 0
    )
    if on_curve:  # about 2**-256 of the draws
        sm2.SM2PublicKey(x=x, y=y)
        return
    with pytest.raises(sm2.SM2KeyError):
        sm2.SM2PublicKey.from_jwk(_with(x=b64(x), y=b64(y)))


def test_openssl_itself_refuses_a_point_off_the_curve() -> None:
    # The second layer: with the Python check skipped, libcrypto still refuses the point.
    off = b"\x04" + VECTOR_X + VECTOR_X
    with pytest.raises(sm2.SM2KeyError) as refused:
        sm2._pkey_from(point=off, private=None)
    assert refused.value.reason == "not-a-key"


# --- compact JWS ------------------------------------------------------------------------------

_HEADER_MEMBERS = frozenset({"alg", "kid", "typ"})


def test_compact_jws_round_trip_and_its_header() -> None:
    token = sign_compact(
        b'{"iss":"a"}', key=_KEY, alg="SM2", headers={"kid": _KEY.kid, "typ": "yiwang-lookup+jwt"}
    )
    jws = parse_compact(token, allowed_members=_HEADER_MEMBERS)
    assert jws.header.alg == "SM2"
    assert jws.header.kid == _KEY.kid
    assert jws.header.typ == "yiwang-lookup+jwt"
    assert jws.payload == b'{"iss":"a"}'
    assert len(jws.signature) == 64
    assert sm2.verify(jws, key=_KEY.public_key)
    assert not sm2.verify(jws, key=_OTHER.public_key)


def test_a_jws_naming_another_algorithm_is_refused_even_with_a_valid_sm2_signature() -> None:
    header = b64(json.dumps({"alg": "ES256", "kid": _KEY.kid}).encode())
    signing_input = f"{header}.{b64(b'{}')}"
    token = f"{signing_input}.{b64(_KEY.sign(signing_input.encode()))}"
    jws = parse_compact(token, allowed_members=_HEADER_MEMBERS)
    assert not sm2.verify(jws, key=_KEY.public_key)


def test_a_jws_carrying_its_own_key_is_refused_by_the_parser() -> None:
    header = b64(json.dumps({"alg": "SM2", "jwk": _KEY.public_key.jwk()}).encode())
    signing_input = f"{header}.{b64(b'{}')}"
    token = f"{signing_input}.{b64(_KEY.sign(signing_input.encode()))}"
    with pytest.raises(JoseError) as refused:
        parse_compact(token, allowed_members=_HEADER_MEMBERS)
    assert refused.value.reason == "header-not-allowed:jwk"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.none() | st.text(min_size=1, max_size=20))
def test_jws_round_trips_any_payload(payload: bytes, typ: str | None) -> None:
    token = sign_compact(payload, key=_KEY, alg="SM2", headers={"kid": _KEY.kid, "typ": typ})
    jws = parse_compact(token, allowed_members=_HEADER_MEMBERS)
    assert (jws.payload, jws.header.typ) == (payload, typ)
    assert sm2.verify(jws, key=_KEY.public_key)


_TOKEN = sign_compact(
    b'{"iss":"dept","jti":"1"}',
    key=_KEY,
    alg="SM2",
    headers={"kid": _KEY.kid, "typ": "yiwang-lookup+jwt"},
)


def _flip(token: str, segment: int, bit: int) -> str:
    parts = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(parts[segment] + "=" * (-len(parts[segment]) % 4)))
    raw[bit // 8 % len(raw)] ^= 1 << (bit % 8)
    parts[segment] = b64(bytes(raw))
    return ".".join(parts)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([0, 1, 2]), st.integers(min_value=0, max_value=10_000))
def test_any_flipped_bit_of_header_payload_or_signature_is_refused(segment: int, bit: int) -> None:
    tampered = _flip(_TOKEN, segment, bit)
    assert tampered != _TOKEN
    try:
        jws = parse_compact(tampered, allowed_members=_HEADER_MEMBERS)
    except JoseError:
        return  # the header no longer parses: refused before any signature check
    assert not sm2.verify(jws, key=_KEY.public_key)


# --- HMAC-SM3 ---------------------------------------------------------------------------------


def test_hmac_sm3_agrees_with_the_standard_librarys_hmac_over_openssls_sm3() -> None:
    key = bytes(range(32))
    try:
        other = hmac.new(key, b"subject", "sm3").digest()
    except ValueError:
        pytest.skip("this Python's OpenSSL has no SM3")
    assert sm2.hmac_sm3(key, b"subject") == other
    assert sm2.hmac_sm3(key, b"subject") != sm2.hmac_sm3(key, b"subjecT")
    assert sm2.hmac_sm3_matches(key, b"subject", other)
    assert not sm2.hmac_sm3_matches(key, b"subject", other[:-1] + bytes([other[-1] ^ 1]))


@pytest.mark.parametrize("key", [b"", b"k" * 31, "k" * 32])
def test_hmac_sm3_refuses_a_short_or_textual_key(key: Any) -> None:
    with pytest.raises(ConfigurationError):
        sm2.hmac_sm3(key, b"subject")
