"""Property tests over every parser a sender reaches: request claims of each endpoint, sealed
licence contents, upload rows.

Each starts from a valid input and puts a hostile value (lone surrogate, NUL, bidirectional
override, ``NaN``, a huge integer, the wrong JSON type, deep nesting …) at a random place —
or sends arbitrary JSON — and holds the parser to its contract: it returns a typed value whose
every string is safe text, or refuses with :class:`~gateway.errors.InvalidInput` whose field
and reason are themselves safe; nothing else ever escapes.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import enum
import io
import json
import math
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm

from gateway.core import lookup, wire
from gateway.core.licences import (
    CheckOutcome,
    ContentMalformed,
    Verdict,
    canonical_bytes,
    check_issuance,
    verify_sealed,
)
from gateway.core.protocol import TokenType
from gateway.core.seals import SealRegistry
from gateway.errors import InvalidInput
from gateway.licensing import claims as licensing
from gateway.oversight.history import _parse as parse_history_claims
from gateway.uploads import claims as uploads
from gateway.uploads.claims import UploadFormat
from gateway.uploads.validation import Accepted, Rejected, read_rows
from tests.unit.test_licences import (
    ISSUER_USCC,
    KEY,
    NOW,
    REGISTRY,
    SEAL,
    make_content,
    status_lists,
)
from tests.unit.test_upload_validation import OPTIONS, person

EXAMPLES = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

HOSTILE_TEXT = st.sampled_from(
    [
        "\ud800",
        "a\udfffb",
        "\x00",
        "a\x00b",
        "\x07bell",
        "tab\there",
        "line\nbreak",
        "\u202e反转",
        "\u2066isolate",
        "\ufffe",
        "\x85",
        "",
        "x" * 5000,
        "'; DROP TABLE audit_entries; --",
        "${jndi:ldap://x}",
        "中文理由",
    ]
)
HOSTILE_NUMBER = st.sampled_from(
    [float("nan"), float("inf"), -float("inf"), 10**400, -(2**63) - 1, 2**64, 1e308, -0.0, 0.5]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=30),
    HOSTILE_TEXT,
    HOSTILE_NUMBER,
)
JSON_ISH = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.one_of(st.text(max_size=8), HOSTILE_TEXT), inner, max_size=4)
    ),
    max_leaves=15,
)


def deep(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


HOSTILE_VALUE = st.one_of(
    HOSTILE_TEXT, HOSTILE_NUMBER, JSON_ISH, st.integers(1, 3).map(lambda n: deep(10**n))
)


def strings_in(value: Any) -> list[str]:
    """Every string inside a parsed value (dataclasses, Structs, containers, enums)."""
    out: list[str] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, enum.Enum):
            continue
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list | tuple | set | frozenset):
            stack.extend(v)
        elif dataclasses.is_dataclass(v) and not isinstance(v, type):
            stack.extend(getattr(v, f.name) for f in dataclasses.fields(v))
        elif isinstance(v, msgspec.Struct):
            stack.extend(getattr(v, f) for f in v.__struct_fields__)
    return out


def outcome(parse: Callable[[], Any]) -> Any:
    """What ``parse`` returns, or the :class:`InvalidInput` it raises (anything else fails)."""
    try:
        return parse()
    except InvalidInput as exc:
        return exc


def assert_contract(parse: Callable[[], Any]) -> None:
    parsed = outcome(parse)
    if isinstance(parsed, InvalidInput):
        assert not wire.UNSAFE_TEXT.search(parsed.field), parsed.field
        assert not wire.UNSAFE_TEXT.search(parsed.reason), parsed.reason
        assert len(parsed.field) <= 128
        return
    for text in strings_in(parsed):
        assert not wire.UNSAFE_TEXT.search(text), (text, parsed)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value where another value can be put."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(paths(v, (*prefix, k)))
        out.append((*prefix, "__new__"))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(paths(v, (*prefix, i)))
    return out


def put(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    root = copy.deepcopy(value)
    target = root
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = new
    return root


PURPOSE = {"item": "000201002000", "case": "BJ-2026-1", "reason": "核验"}
SUBJECT = {"type": "uscc", "id": "91430671AUDLE3UHM0"}
REGISTERED = {"iss": "tax", "aud": "yiwang-gateway", "iat": 1, "exp": 2, "jti": "j"}
VALID_CLAIMS: dict[str, tuple[Callable[[dict[str, Any]], Any], dict[str, Any]]] = {
    "lookup": (
        lambda c: lookup.parse_lookup_claims("tax", c),
        {
            "purpose": PURPOSE,
            "operator": "clerk-1",
            "query": {"resource": "r", "subject": SUBJECT, "fields": ["name"]},
        },
    ),
    "batch": (
        lambda c: lookup.parse_batch_claims("tax", c, limit=5),
        {
            "purpose": PURPOSE,
            "operator": "clerk-1",
            "queries": [{"resource": "r", "subject": SUBJECT, "fields": ["name", "status"]}] * 2,
        },
    ),
    "manifest": (
        lambda c: lookup.parse_manifest_claims("tax", c),
        {"purpose": PURPOSE, "operator": "clerk-1", "applicant": SUBJECT},
    ),
    "case-close": (
        lambda c: lookup.parse_case_closure_claims("tax", c),
        {"case": "BJ-1", "operator": "clerk-1", "reason": "办结"},
    ),
    "invalidate": (
        lambda c: lookup.parse_invalidation_claims("tax", c),
        {"resource": "r", "operator": "clerk-1", "reason": "更新"},
    ),
    "reserve": (
        lambda c: licensing.parse_reserve_claims("tax", c),
        {"operator": "o", "licence_id": "1.2.156.3005.2.x"},
    ),
    "issue": (
        lambda c: licensing.parse_issue_claims("tax", c),
        {"operator": "o", "licence": "a.b.c"},
    ),
    "status": (
        lambda c: licensing.parse_status_claims("tax", c),
        {"operator": "o", "licence_id": "x", "action": "suspend", "reason": "停业"},
    ),
    "verification": (
        lambda c: licensing.parse_verification_claims("tax", c),
        {"operator": "o", "purpose": PURPOSE, "qr": "YWL1:x:y"},
    ),
    "seal": (
        lambda c: licensing.parse_seal_registration_claims("tax", c),
        {
            "operator": "o",
            "seal": {
                "seal_id": "s-1",
                "name": "专用章",
                "type": "administrative-approval",
                "jwk": {"kty": "EC", "crv": "P-256", "x": "a", "y": "b"},
                "valid_from": "2026-01-01",
                "valid_until": "2027-01-01",
            },
            "proof": "a.b.c",
        },
    ),
    "upload": (
        lambda c: uploads.parse_upload_claims("tax", c),
        {"resource": "r", "sha256": "0" * 64, "format": "csv", "operator": "o", "rows": 3},
    ),
    "report": (
        lambda c: uploads.parse_report_claims("tax", c),
        {"resource": "r", "version": 1, "operator": "o"},
    ),
    "history": (
        lambda c: parse_history_claims("tax", c),
        {"operator": "o", "purpose": PURPOSE, "subject": SUBJECT},
    ),
}


@pytest.mark.parametrize("kind", sorted(VALID_CLAIMS))
def test_the_valid_claims_parse(kind: str) -> None:
    parse, claims = VALID_CLAIMS[kind]
    parse({**REGISTERED, **claims})


@pytest.mark.parametrize("kind", sorted(VALID_CLAIMS))
@EXAMPLES
@given(data=st.data())
def test_a_hostile_value_anywhere_in_the_claims(kind: str, data: st.DataObject) -> None:
    parse, claims = VALID_CLAIMS[kind]
    place = data.draw(st.sampled_from(paths(claims)))
    value = data.draw(HOSTILE_VALUE)
    if place[-1] == "__new__":
        place = (*place[:-1], data.draw(st.one_of(st.text(max_size=5), HOSTILE_TEXT)))
    assert_contract(lambda: parse({**REGISTERED, **put(claims, place, value)}))


@pytest.mark.parametrize("kind", sorted(VALID_CLAIMS))
@EXAMPLES
@given(claims=st.dictionaries(st.text(max_size=10), JSON_ISH, max_size=6))
def test_arbitrary_claims(kind: str, claims: dict[str, Any]) -> None:
    parse, _ = VALID_CLAIMS[kind]
    assert_contract(lambda: parse(claims))


# --- sealed licence contents ----------------------------------------------------------------


def sealed_bytes(payload: bytes) -> str:
    """A licence JWS over exactly ``payload``, correctly sealed by the registered seal."""
    import base64

    def b64(b: bytes) -> bytes:
        return base64.urlsafe_b64encode(b).rstrip(b"=")

    header = json.dumps(
        {"alg": "ES256", "kid": SealRegistry.kid_of(SEAL), "typ": TokenType.LICENCE}
    )
    signing_input = b64(header.encode()) + b"." + b64(payload)
    signature = ECAlgorithm(ECAlgorithm.SHA256).sign(signing_input, KEY)
    return (signing_input + b"." + b64(signature)).decode()


CONTENT = json.loads(canonical_bytes(make_content()))


@EXAMPLES
@given(data=st.data())
def test_a_hostile_value_anywhere_in_a_sealed_licence(data: st.DataObject) -> None:
    place = data.draw(st.sampled_from(paths(CONTENT)))
    value = data.draw(HOSTILE_VALUE)
    if place[-1] == "__new__":
        place = (*place[:-1], data.draw(st.one_of(st.text(max_size=5), HOSTILE_TEXT)))
    doc = put(CONTENT, place, value)
    try:
        payload = json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        raw = payload.encode("utf-8", "surrogatepass")
    except (ValueError, RecursionError):
        return  # not even the standard library writes it
    jws = sealed_bytes(raw)
    result = verify_sealed(jws, registry=REGISTRY, now=NOW, status_lists=status_lists())
    # Any verdict but a crash; a changed content is never valid unless the change was a no-op.
    assert isinstance(result.verdict, Verdict)
    if result.verdict is Verdict.VALID:
        assert raw == canonical_bytes(msgspec.convert(doc, type(make_content())))
    for check in result.checks:
        assert check.outcome in set(CheckOutcome)
        assert not wire.UNSAFE_TEXT.search(check.detail or "")
    issued = outcome(
        lambda: check_issuance(
            jws,
            sender_department="approval-bureau",
            sender_uscc=ISSUER_USCC,
            registry=REGISTRY,
            now=NOW,
        )
    )
    if isinstance(issued, ContentMalformed):
        assert not wire.UNSAFE_TEXT.search(issued.field + issued.reason)


@EXAMPLES
@given(payload=st.binary(max_size=400))
def test_arbitrary_sealed_bytes(payload: bytes) -> None:
    result = verify_sealed(
        sealed_bytes(payload), registry=REGISTRY, now=NOW, status_lists=status_lists()
    )
    assert result.verdict is Verdict.MALFORMED


# --- upload rows ----------------------------------------------------------------------------

HEADER = "id_number,name,months_paid,amount,active,since\n"


def _rows(data: bytes, fmt: UploadFormat) -> list[Accepted | Rejected] | InvalidInput:
    try:
        return list(read_rows(io.BytesIO(data), fmt, OPTIONS))
    except InvalidInput as exc:
        return exc


def assert_rows_safe(outcome: list[Accepted | Rejected] | InvalidInput) -> None:
    if isinstance(outcome, InvalidInput):
        assert not wire.UNSAFE_TEXT.search(outcome.field)
        return
    for row in outcome:
        if isinstance(row, Accepted):
            values = msgspec.json.decode(row.data)
            for text in strings_in(values):
                # Upload values document tab and line breaks (a quoted CSV cell may span lines).
                assert not wire.UNSAFE_MULTILINE_TEXT.search(text), row
            for number in values.values():
                if isinstance(number, float):
                    assert math.isfinite(number)
        else:
            for problem in row.problems:
                assert not wire.UNSAFE_TEXT.search(problem.field), problem
                assert not wire.UNSAFE_TEXT.search(problem.key or ""), problem
                assert len(problem.field) <= 64


@EXAMPLES
@given(
    cells=st.lists(st.one_of(st.text(max_size=20), HOSTILE_TEXT), min_size=6, max_size=6),
    good_key=st.booleans(),
)
def test_hostile_csv_cells(cells: list[str], good_key: bool) -> None:
    if good_key:
        cells[0] = person(7)
    line = ",".join('"' + c.replace('"', '""') + '"' for c in cells)
    data = (HEADER + line + "\n").encode("utf-8", "surrogatepass")
    assert_rows_safe(_rows(data, UploadFormat.CSV))


@EXAMPLES
@given(
    record=st.dictionaries(
        st.sampled_from(["id_number", "name", "months_paid", "amount", "active", "since", "\x00x"]),
        HOSTILE_VALUE,
        max_size=6,
    ),
    raw_literal=st.sampled_from(["", "NaN", "1e400", "[" * 5000]),
)
def test_hostile_json_lines(record: dict[str, Any], raw_literal: str) -> None:
    record.setdefault("id_number", person(8))
    try:
        line = json.dumps(record, ensure_ascii=True)
    except (ValueError, RecursionError):
        line = "{}"
    if raw_literal:
        line = line[:-1] + (", " if len(record) else "") + f'"amount": {raw_literal}}}'
    assert_rows_safe(_rows(line.encode() + b"\n", UploadFormat.JSONL))


@EXAMPLES
@given(data=st.binary(max_size=300), fmt=st.sampled_from(list(UploadFormat)))
def test_arbitrary_upload_bytes(data: bytes, fmt: UploadFormat) -> None:
    assert_rows_safe(_rows(HEADER.encode() + data if fmt is UploadFormat.CSV else data, fmt))


def test_the_property_helpers_see_what_they_check() -> None:
    # The walkers must find the strings and the places; otherwise the properties prove nothing.
    assert sorted(strings_in({"a": [("b", dt.date(2026, 1, 1))]})) == ["a", "b"]
    assert ("purpose", "reason") in paths(VALID_CLAIMS["lookup"][1])
    assert ("status", "index") in paths(CONTENT)
