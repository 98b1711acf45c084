"""The console says every check's detail in Chinese words: each failure the licence checks
of :mod:`gateway.core.licences` produce (real sealed licences, real seals, real identifier
parsing) has its own Chinese sentence, with no ASCII word in it and never the fallback; the
English page keeps the facts. And the console's failure pages: a request under ``/console``
that ends in a 500 or 503 gets a page naming the audit entry, any other keeps its RFC 9457
problem (the real handlers of :mod:`gateway.http.problems`, wrapped)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from litestar import Request

from gateway import errors
from gateway.console.routes import console_error_pages
from gateway.console.text import check_detail
from gateway.core.licences import (
    CheckOutcome,
    LicenceStatus,
    Verification,
    seal_licence,
    verify_identifier,
    verify_qr,
)
from gateway.core.seals import RevocationReason, SealRegistry, SealStatus, change_seal_status
from gateway.http.problems import exception_handlers
from tests.unit.test_licences import (
    HOLDER,
    KEY,
    NOW,
    OTHER_KEY,
    OTHER_SEAL,
    SEAL,
    flip,
    licence_id,
    make_content,
    status_lists,
    verify,
)

SEALS = {SEAL.seal_id: SEAL.name, OTHER_SEAL.seal_id: OTHER_SEAL.name}
DEPARTMENTS = {"approval-bureau": "某某区行政审批局", "market-bureau": "某某区市场监督管理局"}
_ASCII_WORD = re.compile(r"[A-Za-z]{2,}")
FALLBACK = "具体原因已记入签名回执"


def _compromised() -> SealRegistry:
    at = dt.datetime(2024, 5, 25, 9, tzinfo=dt.UTC)
    seal = change_seal_status(
        SEAL, SealStatus.REVOKED, at=at, by="admin", reason="x",
        revocation_reason=RevocationReason.KEY_COMPROMISE,
    )  # fmt: skip
    return SealRegistry([seal])


def _failures() -> dict[str, Verification]:
    sealed = seal_licence(make_content(), private_key=KEY, seal=SEAL)
    bad_check = licence_id()[:-1] + ("A" if licence_id()[-1] != "A" else "B")
    late = make_content(issue_date=dt.date(2027, 1, 1), valid_from=dt.date(2027, 1, 1))
    registry = SealRegistry([SEAL, OTHER_SEAL])
    return {
        "forged signature": verify(flip(sealed, 2)),
        "not a licence": verify("hello"),
        "check character": verify(
            seal_licence(make_content(licence_id=bad_check), private_key=KEY, seal=SEAL)
        ),
        "holder id": verify(
            seal_licence(make_content(holder_id=HOLDER[:-1] + "1"), private_key=KEY, seal=SEAL)
        ),
        "seal window": verify(
            seal_licence(late, private_key=KEY, seal=SEAL), now=NOW.replace(year=2027)
        ),
        "key compromise": verify(sealed, _compromised()),
        "another department's seal": verify(
            seal_licence(make_content(), private_key=OTHER_KEY, seal=OTHER_SEAL)
        ),
        "expired": verify(
            seal_licence(make_content(valid_until=dt.date(2024, 5, 31)), private_key=KEY, seal=SEAL)
        ),
        "not yet valid": verify(
            seal_licence(make_content(valid_from=dt.date(2024, 7, 1)), private_key=KEY, seal=SEAL)
        ),
        "revoked": verify(sealed, status_lists=status_lists(LicenceStatus.REVOKED)),
        "suspended": verify(sealed, status_lists=status_lists(LicenceStatus.SUSPENDED)),
        "no status entry": verify(
            seal_licence(make_content(status=None), private_key=KEY, seal=SEAL)
        ),
        "identifier format": verify_identifier(
            "1.2.156.3005.2.nonsense", record=None, registry=registry, now=NOW
        ),
        "not published": verify_identifier(licence_id(), record=None, registry=registry, now=NOW),
        "qr shape": verify_qr("not a qr code", record=None, registry=registry, now=NOW),
        "qr digest": verify_qr(
            f"YWL1:{licence_id()}:short", record=None, registry=registry, now=NOW
        ),
    }


@pytest.mark.parametrize(("case", "verification"), list(_failures().items()))
def test_every_failed_check_is_said_in_chinese(case: str, verification: Verification) -> None:
    failed = [c for c in verification.checks if c.outcome is CheckOutcome.FAILED]
    assert len(failed) == 1, case
    check = failed[0]
    assert check.detail, case
    zh = check_detail("zh", check.name, check.detail, seals=SEALS, departments=DEPARTMENTS)
    assert zh, case
    assert zh != FALLBACK, f"{case}: {check.detail!r} has no Chinese sentence"
    assert _ASCII_WORD.search(zh) is None, f"{case}: {zh!r}"
    en = check_detail("en", check.name, check.detail, seals=SEALS, departments=DEPARTMENTS)
    assert en, case
    assert _ASCII_WORD.search(en), case


def test_seal_names_and_times_are_filled_in() -> None:
    detail = f"signature does not verify with seal {SEAL.seal_id}"
    words = check_detail("zh", "signature", detail, seals=SEALS, departments=DEPARTMENTS)
    assert words == f"用{SEAL.name}核验签名未通过"
    at = "seal seal-1 was revoked for key compromise at 2024-05-25 01:00:00+00:00"
    words = check_detail("zh", "seal-validity", at, seals=SEALS, departments=DEPARTMENTS)
    assert "2024-05-25 09:00:00（北京时间）" in words
    owner = check_detail("zh", "seal-owner", "market-bureau", seals=SEALS, departments=DEPARTMENTS)
    assert owner == "某某区市场监督管理局"


def test_an_unknown_detail_is_never_shown_raw_in_chinese() -> None:
    detail = "content.type_fields: Expected `str`, got `array`"
    assert check_detail("zh", "content", detail, seals={}, departments={}) == FALLBACK
    assert check_detail("en", "content", detail, seals={}, departments={}) == detail


def _request(path: str, **state: object) -> Request[Any, Any, Any]:
    """A request as the server hands it to an exception handler (an ASGI HTTP scope)."""
    scope: Any = {
        "type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
        "root_path": "", "scheme": "http", "server": ("gateway.test", 80),
        "query_string": b"", "headers": [], "state": dict(state),
    }  # fmt: skip
    return Request(scope)


HANDLERS = console_error_pages(exception_handlers)


def test_a_console_failure_is_a_console_page_naming_its_audit_entry() -> None:
    request = _request("/console/verify", internal_error_audit_index=42)
    page = HANDLERS[Exception](request, RuntimeError("boom"))
    assert page.status_code == 500
    assert page.media_type == "text/html"
    html = page.content
    assert "系统出现错误" in html
    assert "错误记录编号：42" in html
    assert "boom" not in html

    unrecorded = HANDLERS[Exception](
        _request("/console/verify", internal_error_unrecorded=True), RuntimeError("boom")
    )
    assert unrecorded.status_code == 503
    assert "网关暂时无法记录审计日志" in unrecorded.content
    assert unrecorded.headers["Retry-After"] == "1"


def test_outside_the_console_the_problem_stays() -> None:
    problem = HANDLERS[Exception](_request("/v1/lookups", internal_error_audit_index=7), KeyError())
    assert problem.status_code == 500
    assert problem.media_type == "application/problem+json"
    assert b'"audit_index":7' in problem.content
    refused = HANDLERS[errors.Error](_request("/v1/x"), errors.InvalidInput("purpose.item", "bad"))
    assert refused.media_type == "application/problem+json"
    # a path that only starts like the console is not the console
    lookalike = HANDLERS[Exception](_request("/consoles", internal_error_audit_index=8), KeyError())
    assert lookalike.media_type == "application/problem+json"
