"""Identifier checks against the reference examples and generated cases."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.identifiers import (
    LicenceId,
    ResidentId,
    Uscc,
    licence_check_character,
    parse_subject,
    resident_id_check_character,
    uscc_check_character,
)
from gateway.errors import InvalidIdentifier

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def test_reference_examples_pass() -> None:
    assert Uscc.parse("91350100M000100Y43").value == "91350100M000100Y43"
    rid = ResidentId.parse("11010519491231002X")
    assert rid.birth_date == dt.date(1949, 12, 31)
    lic = LicenceId.parse(
        "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U"
    )
    assert lic.issuer.value == "11430000006122244L"
    assert lic.version == "001"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("91350100M000100Y44", "check character is wrong"),
        ("91350100M000100Y4", "must be 18 characters"),
        ("91350100M000100I43", "outside the USCC alphabet"),
    ],
)
def test_bad_uscc_is_refused(text: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier, match=reason):
        Uscc.parse(text)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("110105194912310021", "check character is wrong"),
        ("11010519490231002X", "not a real date"),  # 31 February... 1949-02-31
        ("1101051949123100", "must be 18 characters"),
        ("11010519491231002A", "17 digits and a check character"),
    ],
)
def test_bad_resident_id_is_refused(text: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier, match=reason):
        ResidentId.parse(text)


def test_bad_licence_check_character_is_refused() -> None:
    good = "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U"
    with pytest.raises(InvalidIdentifier, match="check character is wrong"):
        LicenceId.parse(good[:-1] + "V")


@given(st.text(alphabet=USCC_ALPHABET, min_size=17, max_size=17))
def test_every_uscc_body_has_exactly_one_valid_check_character(body: str) -> None:
    valid = [c for c in USCC_ALPHABET if _uscc_ok(body + c)]
    assert valid == [uscc_check_character(body)]


def _uscc_ok(text: str) -> bool:
    try:
        Uscc.parse(text)
    except InvalidIdentifier:
        return False
    return True


@given(
    st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2030, 12, 31)),
    st.integers(0, 999),
    st.sampled_from(["110105", "430602", "350100"]),
)
def test_resident_id_single_digit_change_is_caught(date: dt.date, seq: int, div: str) -> None:
    body = f"{div}{date:%Y%m%d}{seq:03d}"
    text = body + resident_id_check_character(body)
    assert ResidentId.parse(text).value == text
    # MOD 11-2 detects every single-digit substitution in the body.
    for pos in (0, 7, 16):
        changed = body[:pos] + str((int(body[pos]) + 1) % 10) + body[pos + 1 :] + text[17]
        with pytest.raises(InvalidIdentifier):
            ResidentId.parse(changed)


def test_parse_subject_dispatches_on_type() -> None:
    assert isinstance(parse_subject("uscc", "91350100M000100Y43"), Uscc)
    assert isinstance(parse_subject("resident-id", "11010519491231002X"), ResidentId)
    with pytest.raises(InvalidIdentifier) as err:
        parse_subject("passport", "E12345678")
    assert err.value.field == "type"


# Oracles: the check characters computed as the standards state them, one character at a
# time, against the table-driven code the gateway runs. Texts mix the alphabets with what
# is close to them: lower case, the letters the USCC leaves out, other scripts' digits.
_NEAR_ALPHABET = st.text(
    st.sampled_from("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZaz٣０Ｉ.- "), min_size=0, max_size=40
)


def _mod37_36_reference(payload: str) -> str | None:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    p = 36
    for ch in payload:
        if ch not in alphabet:
            return None
        s = (p + alphabet.index(ch)) % 36 or 36
        p = (2 * s) % 37
    return alphabet[(37 - p) % 36]


def _uscc_reference(body: str) -> str | None:
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    weights = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
    if len(body) != 17 or any(c not in alphabet for c in body):
        return None
    total = sum(alphabet.index(c) * w for c, w in zip(body, weights, strict=True))
    return alphabet[(31 - total % 31) % 31]


@settings(max_examples=400)
@given(payload=_NEAR_ALPHABET)
def test_licence_check_character_matches_iso_7064_mod_37_36(payload: str) -> None:
    expected = _mod37_36_reference(payload)
    if expected is None:
        with pytest.raises(InvalidIdentifier, match="outside 0-9A-Z"):
            licence_check_character(payload)
    else:
        assert licence_check_character(payload) == expected


@settings(max_examples=400)
@given(
    body=st.one_of(
        _NEAR_ALPHABET,
        st.text(st.sampled_from("0123456789ABCDEFGHJKLMNPQRTUWXY"), min_size=17, max_size=17),
    )
)
def test_uscc_check_character_matches_gb_32100(body: str) -> None:
    expected = _uscc_reference(body)
    if expected is None:
        with pytest.raises(InvalidIdentifier):
            uscc_check_character(body)
    else:
        assert uscc_check_character(body) == expected
        assert Uscc.parse(body + expected).value == body + expected
