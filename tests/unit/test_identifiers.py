"""Identifier checks against the reference examples and generated cases."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.identifiers import (
    LicenceId,
    ResidentId,
    Uscc,
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
