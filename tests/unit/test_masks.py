"""Field masks: what a consumer sees of a masked field."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.masks import parse_mask


def test_name_keeps_the_first_character() -> None:
    assert parse_mask("name").apply("张三") == "张*"
    assert parse_mask("name").apply("欧阳娜娜") == "欧***"


def test_id_number_keeps_first_six_and_last_four() -> None:
    assert parse_mask("id-number").apply("11010519491231002X") == "110105********002X"


def test_keep_first_and_last() -> None:
    assert parse_mask("keep:3:2").apply("湖南省岳阳市城陵矶新港区") == "湖南省*******港区"
    assert parse_mask("keep:0:4").apply("13800138000") == "*******8000"
    assert parse_mask("keep:2:0").apply(12345) == "12***"


def test_too_short_values_never_show_in_full() -> None:
    # With nothing left to star, the last characters are starred instead of shown.
    assert parse_mask("keep:3:3").apply("abcd") == "abc*"
    assert parse_mask("name").apply("张") == "*"
    assert parse_mask("id-number").apply("") == ""


def test_full_releases_only_existence() -> None:
    assert parse_mask("full").apply("anything") is None
    assert parse_mask("full").apply(0) is None
    assert not parse_mask("full").text_only
    assert parse_mask("name").text_only


@pytest.mark.parametrize("spec", ["name", "id-number", "keep:1:1", "full"])
def test_none_stays_none(spec: str) -> None:
    assert parse_mask(spec).apply(None) is None


@pytest.mark.parametrize("spec", ["", "Name", "keep", "keep:1", "keep:a:1", "keep:100:1", "all"])
def test_bad_spec_raises(spec: str) -> None:
    with pytest.raises(ValueError, match="unknown mask"):
        parse_mask(spec)


@given(
    text=st.text(min_size=0, max_size=40),
    first=st.integers(min_value=0, max_value=12),
    last=st.integers(min_value=0, max_value=12),
)
def test_keep_mask_shape(text: str, first: int, last: int) -> None:
    masked = parse_mask(f"keep:{first}:{last}").apply(text)
    assert len(masked) == len(text)
    if len(text) > first + last:
        assert masked == text[:first] + "*" * (len(text) - first - last) + text[len(text) - last :]
    elif text:
        # Too short: at least one character is hidden.
        assert masked[-1] == "*"
        assert masked.rstrip("*") == text[: len(masked.rstrip("*"))]
