"""The gateway's key set in the pure core: which key signs, what the JWKS says of each key,
and which key vouches for a JWS signed when (property tests for the rule every verifier
shares)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.keyring import (
    GATEWAY_KEY_NBF_LEEWAY,
    SWITCH_GRACE_SECONDS,
    GatewayKey,
    GatewayKeyRefused,
    GatewayKeyStatus,
    GatewaySigner,
    KeyId,
    gateway_key_for,
    public_jwk,
)
from gateway.errors import ConfigurationError, StoreUnavailable

T0 = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
OLD, NEW = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())


def _key(private: ec.EllipticCurvePrivateKey, status: GatewayKeyStatus, **dates: Any) -> GatewayKey:
    jwk = public_jwk(private, alg="ES256")
    return GatewayKey(
        kid=KeyId(jwk["kid"]), alg="ES256", status=status, public_jwk=jwk, published_at=T0, **dates
    )


SWITCH = T0 + dt.timedelta(days=10)
ROTATED = [
    _key(OLD, GatewayKeyStatus.RETIRED, retired_at=SWITCH),
    _key(NEW, GatewayKeyStatus.ACTIVE, active_from=SWITCH),
]


def test_the_signer_signs_with_the_active_key_and_publishes_all() -> None:
    signer = GatewaySigner(private_key=OLD, issuer="g")
    signer.use(ROTATED, {k.kid: p for k, p in zip(ROTATED, (OLD, NEW), strict=True)})
    token = signer.sign({"iat": int(SWITCH.timestamp()) + 5}, typ="t")
    assert jwt.get_unverified_header(token)["kid"] == ROTATED[1].kid
    published = {k["kid"]: k for k in signer.jwks()["keys"]}
    assert published[ROTATED[0].kid]["status"] == "retired"
    assert published[ROTATED[0].kid]["exp"] == int(SWITCH.timestamp()) + SWITCH_GRACE_SECONDS
    assert "nbf" not in published[ROTATED[0].kid]  # the first key: valid since the start
    assert published[ROTATED[1].kid]["nbf"] == int(SWITCH.timestamp())


def test_without_the_active_private_key_nothing_is_signed() -> None:
    signer = GatewaySigner(private_key=OLD, issuer="g")
    signer.use(ROTATED, {ROTATED[0].kid: OLD})  # this host has only the retired key's file
    assert not signer.can_sign
    with pytest.raises(StoreUnavailable):
        signer.sign({}, typ="t")
    with pytest.raises(ConfigurationError):
        signer.use([_key(OLD, GatewayKeyStatus.ACTIVE), _key(NEW, GatewayKeyStatus.ACTIVE)], {})
    with pytest.raises(ConfigurationError):  # a private key filed under another key's kid
        signer.use(ROTATED, {ROTATED[1].kid: OLD})


JWKS = {"keys": [k.published() for k in ROTATED]}
EXP = int(SWITCH.timestamp()) + SWITCH_GRACE_SECONDS
NBF = int(SWITCH.timestamp())


@given(iat=st.integers(min_value=0, max_value=2**40))
def test_a_retired_key_vouches_exactly_until_its_exp(iat: int) -> None:
    kid = ROTATED[0].kid
    if iat <= EXP:
        assert gateway_key_for(JWKS, kid=kid, iat=iat)["kid"] == kid
    else:
        with pytest.raises(GatewayKeyRefused, match="retired"):
            gateway_key_for(JWKS, kid=kid, iat=iat)


@given(iat=st.integers(min_value=0, max_value=2**40))
def test_an_activated_key_vouches_from_its_nbf_less_the_leeway(iat: int) -> None:
    kid = ROTATED[1].kid
    if iat >= NBF - GATEWAY_KEY_NBF_LEEWAY:
        assert gateway_key_for(JWKS, kid=kid, iat=iat)["kid"] == kid
    else:
        with pytest.raises(GatewayKeyRefused, match="not active"):
            gateway_key_for(JWKS, kid=kid, iat=iat)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(
    jwks=st.dictionaries(st.sampled_from(["keys", "x"]), _json, max_size=2), kid=_json, iat=_json
)
def test_any_jwks_kid_and_iat_give_a_key_or_a_refusal(jwks: Any, kid: Any, iat: Any) -> None:
    try:
        found = gateway_key_for(jwks, kid=kid, iat=iat)
    except GatewayKeyRefused:
        return
    assert found["kid"] == kid
    assert found["alg"] == "ES256"


def test_without_an_iat_only_a_key_with_no_dates_vouches() -> None:
    with pytest.raises(GatewayKeyRefused):
        gateway_key_for(JWKS, kid=ROTATED[0].kid, iat=None)
    with pytest.raises(GatewayKeyRefused):
        gateway_key_for(JWKS, kid=ROTATED[1].kid, iat="1")
    plain = {"keys": [public_jwk(OLD, alg="ES256")]}
    assert gateway_key_for(plain, kid=ROTATED[0].kid, iat=None)


def test_an_unreadable_key_file_is_left_out_not_fatal(tmp_path: Path) -> None:
    """The watch reads the key directory each time the set changes: a damaged file (or one
    withdrawn meanwhile) must not end it."""
    from gateway.registry import keystore
    from gateway.registry.gateway_keys import load_private_keys

    good = keystore.ensure_gateway_key(tmp_path)
    (tmp_path / "gateway" / "damaged.private.pem").write_text("-----BEGIN PRIVATE KEY-----\nxx")
    (tmp_path / "gateway" / "half.private.pem.partial").write_text("not read at all")
    found = load_private_keys(tmp_path)
    assert list(found) == [public_jwk(good, alg="ES256")["kid"]]
