"""An answer's own claims go through its structure when signed: the same members in the same
order, optional members left out as before, and anything the structure does not describe
refused (the gateway signs nothing its OpenAPI document does not describe)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from gateway.core.answers import ANSWER_CLAIMS, answer_claims
from gateway.core.protocol import TokenType

PURPOSE = {"item": "000201002000", "case": "BJ-2026-000001", "reason": "核验营业执照"}
RECORD: dict[str, Any] = {
    "query": {
        "resource": "enterprise-registration",
        "subject": {"type": "uscc", "id": "91430600MA4L00000X"},
        "fields": ["name", "legal_rep"],
    },
    "data": {"name": "新港示范贸易有限公司", "legal_rep": "王*"},
    "masked": ["legal_rep"],
    "provenance": {
        "provider": "market",
        "source": "sql:enterprises",
        "as_of": "2026-01-01T00:00:00+00:00",
        "cache": {"hit": False},
    },
    "grant": "g-centre-enterprise",
}
LOOKUP = {"purpose": PURPOSE, **RECORD, "policy_version": "2026-01"}


def test_the_claims_come_out_as_they_went_in() -> None:
    out = answer_claims(TokenType.LOOKUP_RESULT, LOOKUP)
    assert out == LOOKUP
    assert list(out) == list(LOOKUP)  # member order kept: the same payload as before
    assert "version" not in out["provenance"]  # an absent optional member stays absent
    assert "age_seconds" not in out["provenance"]["cache"]


def test_an_optional_member_given_is_kept_in_its_place() -> None:
    provenance = {
        **RECORD["provenance"],
        "version": "7",
        "cache": {"hit": True, "age_seconds": 1.5},
    }
    provenance = {k: provenance[k] for k in ("provider", "source", "as_of", "version", "cache")}
    out = answer_claims(TokenType.LOOKUP_RESULT, {**LOOKUP, "provenance": provenance})
    assert list(out["provenance"].items()) == list(provenance.items())


def test_a_batch_keeps_both_shapes_of_result() -> None:
    released = {"index": 0, "status": 200, **RECORD, "audit": {"index": 11}}
    refused = {"index": 1, "status": 403, "reason": "field-not-granted", "detail": "d"}
    refused |= {"audit": {"index": 12}}
    batch = {"purpose": PURPOSE, "results": [released, refused], "policy_version": "2026-01"}
    out = answer_claims(TokenType.BATCH_RESULT, batch)
    assert out == batch
    assert [list(r) for r in out["results"]] == [list(released), list(refused)]


@pytest.mark.parametrize(
    "broken",
    [
        {**LOOKUP, "secret": "x"},  # a member the document does not describe
        {k: v for k, v in LOOKUP.items() if k != "grant"},  # a member missing
        {**LOOKUP, "masked": "legal_rep"},  # of another type
        {**LOOKUP, "provenance": {**RECORD["provenance"], "raw": {}}},  # nested, undescribed
    ],
)
def test_an_answer_unlike_its_structure_is_refused(broken: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        answer_claims(TokenType.LOOKUP_RESULT, broken)


def test_a_typ_without_a_structure_is_not_signed() -> None:
    assert TokenType.LOOKUP not in ANSWER_CLAIMS  # a request, not an answer
    with pytest.raises(KeyError):
        answer_claims(TokenType.LOOKUP, {})
