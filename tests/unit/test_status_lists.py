"""Status lists: bit layout, W3C encoding, signed lists and random allocation."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jws as jose_jws
from joserfc.jwk import ECKey

from gateway.core.keyring import GatewaySigner
from gateway.core.protocol import TokenType
from gateway.core.status_lists import (
    MIN_ENTRIES,
    StatusList,
    StatusListRejected,
    StatusRef,
    allocate_status_entry,
    status_list_claims,
    verify_status_list_token,
)
from gateway.errors import InvalidInput

NOW = dt.datetime(2024, 6, 1, 2, 0, tzinfo=dt.UTC)
ISSUER = "https://gateway.example"
MESSAGES = {0: "valid", 1: "suspended", 2: "revoked", 3: "withdrawn", 4: "cancelled"}


@pytest.fixture(scope="module")
def signer() -> GatewaySigner:
    return GatewaySigner(private_key=ec.generate_private_key(ec.SECP256R1()), issuer=ISSUER)


def test_size_is_at_least_the_w3c_minimum() -> None:
    assert StatusList("l").size == MIN_ENTRIES == 131_072
    with pytest.raises(InvalidInput):
        StatusList("l", MIN_ENTRIES - 1)


def test_bit_layout_is_msb_first() -> None:
    one_bit = StatusList("l", status_size=1)
    one_bit.set(0, 1)
    one_bit.set(9, 1)
    assert one_bit.bits()[:2] == bytes([0x80, 0x40])
    three = StatusList("l")
    three.set(1, 0b101)  # bits 3..5 of the first byte
    assert three.bits()[0] == 0b0001_0100
    assert three.get(1) == 5
    assert three.get(0) == three.get(2) == 0


def test_values_and_indexes_are_bounded() -> None:
    sl = StatusList("l")
    with pytest.raises(InvalidInput):
        sl.set(0, 8)
    with pytest.raises(InvalidInput):
        sl.get(sl.size)


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.integers(0, MIN_ENTRIES - 1), st.integers(0, 7), max_size=50))
def test_encode_decode_round_trip(entries: dict[int, int]) -> None:
    sl = StatusList("list-1")
    for index, value in entries.items():
        sl.set(index, value)
    encoded = sl.encode()
    assert encoded.startswith("u")
    assert "=" not in encoded
    back = StatusList.decode("list-1", encoded)
    assert back == sl
    for index, value in entries.items():
        assert back.get(index) == value


def test_sparse_list_compresses_small() -> None:
    sl = StatusList("l")
    for index in random.Random(1).sample(range(sl.size), 100):
        sl.set(index, 2)
    assert len(sl.bits()) == MIN_ENTRIES * 3 // 8
    assert len(sl.encode()) < 2_000


@pytest.mark.parametrize("bad", ["", "zabc", "u!!!", "uAAAA"])
def test_decode_rejects_garbage(bad: str) -> None:
    with pytest.raises(InvalidInput):
        StatusList.decode("l", bad)


def test_decode_caps_decompressed_size() -> None:
    big = StatusList("l", MIN_ENTRIES * 8)
    with pytest.raises(InvalidInput):
        StatusList.decode("l", big.encode(), max_bytes=MIN_ENTRIES)


def _signed(signer: GatewaySigner, sl: StatusList, *, now: dt.datetime = NOW) -> str:
    claims = status_list_claims(
        sl, issuer=ISSUER, now=now, ttl=dt.timedelta(hours=1), status_messages=MESSAGES
    )
    return signer.sign(claims, typ=TokenType.STATUS_LIST)


def test_signed_status_list_verifies(signer: GatewaySigner) -> None:
    sl = StatusList("https://gateway.example/status-lists/1")
    sl.set(42, 2)
    token = _signed(signer, sl)
    back, messages = verify_status_list_token(
        token, gateway_jwk=signer.public_jwk, issuer=ISSUER, now=NOW + dt.timedelta(minutes=5)
    )
    assert back == sl
    assert back.get(42) == 2
    assert messages == MESSAGES


def test_signed_status_list_verifies_with_joserfc(signer: GatewaySigner) -> None:
    sl = StatusList("l")
    sl.set(7, 1)
    token = _signed(signer, sl)
    key = ECKey.import_key(dict(signer.public_jwk))
    compact = jose_jws.deserialize_compact(token, key, algorithms=["ES256"])
    assert compact.headers()["typ"] == TokenType.STATUS_LIST
    assert b'"encodedList":"u' in compact.payload


def test_expired_or_future_or_foreign_lists_are_rejected(signer: GatewaySigner) -> None:
    token = _signed(signer, StatusList("l"))
    with pytest.raises(StatusListRejected, match="expired"):
        verify_status_list_token(
            token, gateway_jwk=signer.public_jwk, issuer=ISSUER, now=NOW + dt.timedelta(hours=2)
        )
    with pytest.raises(StatusListRejected, match="future"):
        verify_status_list_token(
            token, gateway_jwk=signer.public_jwk, issuer=ISSUER, now=NOW - dt.timedelta(hours=1)
        )
    with pytest.raises(StatusListRejected, match="someone else"):
        verify_status_list_token(
            token, gateway_jwk=signer.public_jwk, issuer="https://other", now=NOW
        )
    other = GatewaySigner(private_key=ec.generate_private_key(ec.SECP256R1()), issuer=ISSUER)
    with pytest.raises(StatusListRejected):
        verify_status_list_token(token, gateway_jwk=other.public_jwk, issuer=ISSUER, now=NOW)
    wrong_typ = signer.sign({"iss": ISSUER}, typ="JWT")
    with pytest.raises(StatusListRejected, match="typ"):
        verify_status_list_token(wrong_typ, gateway_jwk=signer.public_jwk, issuer=ISSUER, now=NOW)


def test_allocation_picks_a_random_free_index() -> None:
    used = {"a": frozenset(range(1000))}
    refs = {
        allocate_status_entry(used, new_list_id=lambda: "new", rng=random.Random(seed))
        for seed in range(20)
    }
    assert all(r.list_id == "a" and r.index >= 1000 for r in refs)
    assert len({r.index for r in refs}) > 15  # not sequential, not repeated
    again = allocate_status_entry(used, new_list_id=lambda: "new", rng=random.Random(3))
    assert again == allocate_status_entry(used, new_list_id=lambda: "new", rng=random.Random(3))


def test_allocation_opens_a_new_list_when_full() -> None:
    full = {"a": frozenset(range(MIN_ENTRIES))}
    ref = allocate_status_entry(full, new_list_id=lambda: "b", rng=random.Random(0))
    assert ref.list_id == "b"
    assert 0 <= ref.index < MIN_ENTRIES
    assert allocate_status_entry({}, new_list_id=lambda: "first").list_id == "first"


def test_allocation_of_the_last_free_entry() -> None:
    nearly = {"a": frozenset(range(MIN_ENTRIES)) - {12345}}
    ref = allocate_status_entry(nearly, new_list_id=lambda: "b", rng=random.Random(0))
    assert ref == StatusRef("a", 12345)


def test_a_list_past_its_capacity_counts_as_full() -> None:
    used = {"a": frozenset(range(100))}
    assert allocate_status_entry(used, new_list_id=lambda: "b", capacity=100).list_id == "b"
    assert allocate_status_entry(used, new_list_id=lambda: "b", capacity=101).list_id == "a"
