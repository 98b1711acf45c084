"""The security officers' console pages in process (real app, real SQLite, real crypto,
served by Litestar's test client): outcomes in words, the event filter, an entry that no
signed checkpoint covers yet, alerts for failed log-ins and lock-outs, the CSV export's BOM.

The gateway here signs a checkpoint only every hour, so an entry written after its start
stays uncovered until a test signs one itself (the loop's first look is at the start).
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.demo.population import companies
from gateway.sdk import Forbidden
from tests.inprocess import InProcessGateway, console_log_in, in_process_gateway
from tests.support import gateway_command

OFFICER = "officer-zhou"
OFFICER_PASSWORD = "Audit-Desk-2026!"
CLERK = "clerk-sun"
CLERK_PASSWORD = "Yiwang-Desk-2026!"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path) -> Iterator[InProcessGateway]:
    with in_process_gateway(
        tmp_path_factory.mktemp("console-officers"), keys_dir, audit_checkpoint_seconds=3600
    ) as gateway:
        env = {
            "GATEWAY_DATA_DIR": str(gateway.data_dir),
            "GATEWAY_KEYS_DIR": str(gateway.keys_dir),
            "GATEWAY_POLICIES_DIR": gateway.settings.policies_dir,
            "GATEWAY_DATABASE_URL": gateway.database_url,
        }
        for username, password, role in (
            (OFFICER, OFFICER_PASSWORD, ("--role", "auditor")),
            (CLERK, CLERK_PASSWORD, ("--role", "clerk", "--department", "service-centre")),
        ):
            done = gateway_command(
                "users", "add", username, *role, "--password-stdin", "--operator", "admin-t",
                env=env, stdin=password + "\n",
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
        yield gateway


def _log_in(gw: InProcessGateway, username: str, password: str) -> int:
    return console_log_in(gw, username, password)


def _rows(page: str) -> list[str]:
    body = page.split('<table id="results"', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr data-event=.*?</tr>", body, flags=re.S)


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment))


def test_refusals_say_why_and_verifications_their_verdict(gw: InProcessGateway) -> None:
    with gw.client("service-centre") as c, pytest.raises(Forbidden):
        c.lookup(
            resource="enterprise-registration",
            subject=("uscc", companies()[0].uscc),
            fields=["name", "business_scope"],  # not granted to the service centre
            item="000201002000",
            case="YW-2026-OFF-IP-1",
            reason="字段越权测试",
            operator="clerk-ip",
        )
    with gw.client("hrss") as c:
        receipt = c.verify_licence(
            licence="not-a-sealed-licence",
            item="000111001000",
            case="YW-2026-OFF-IP-2",
            reason="核验测试",
            operator="hrss-clerk",
        )
    assert receipt.verdict == "malformed"
    assert _log_in(gw, OFFICER, OFFICER_PASSWORD) == 303

    lookups = gw.http.get("/console/audit", params={"case": "YW-2026-OFF-IP-1"}).text
    [row] = _rows(lookups)
    assert "拒绝：请求了未授权的字段" in _text(row)
    assert "允许" not in _text(row)

    verifications = gw.http.get("/console/audit", params={"case": "YW-2026-OFF-IP-2"}).text
    [row] = _rows(verifications)
    assert "格式错误，无法识别" in _text(row)
    assert "允许" not in _text(row)
    assert "outcome-bad" in row

    english = gw.http.get("/console/audit", params={"case": "YW-2026-OFF-IP-1", "lang": "en"}).text
    assert "Refused: a field asked for is not granted" in _text(_rows(english)[0])


def test_the_event_filter_offers_every_event_and_filters(gw: InProcessGateway) -> None:
    assert _log_in(gw, OFFICER, OFFICER_PASSWORD) == 303
    page = gw.http.get("/console/audit").text
    select = page.split('<select id="f-event"', 1)[1].split("</select>", 1)[0]
    assert 'value="console:login:succeeded"' in select
    assert ">工作台：登录成功<" in select
    assert "selected" not in select

    filtered = gw.http.get("/console/audit", params={"event": "console:login:succeeded"}).text
    rows = _rows(filtered)
    assert rows
    assert all('data-event="console:login:succeeded"' in r for r in rows)
    assert all("工作台：登录成功" in _text(r) for r in rows)
    chosen = filtered.split('<select id="f-event"', 1)[1].split("</select>", 1)[0]
    assert 'value="console:login:succeeded" selected' in chosen


def test_an_entry_no_checkpoint_covers_yet_says_so_then_verifies(gw: InProcessGateway) -> None:
    assert _log_in(gw, OFFICER, OFFICER_PASSWORD) == 303
    newest = gw.audit_count()  # this log-in, at least: after the checkpoint of the start
    latest = gw.runtime.transparency.latest()
    assert latest is None or latest.size < newest

    page = gw.http.get(f"/console/audit/entries/{newest}")
    assert page.status_code == 200, page.text
    status = _text(page.text.split('id="proof-status"', 1)[1].split("</p>", 1)[0])
    assert "尚未进入签名检查点" in status or "尚无签名检查点" in status
    assert "3600 秒" in status
    # Its fields in words, its event with its name, the time in Beijing time.
    fields = page.text.split('id="entry-fields"', 1)[1].split("</table>", 1)[0]
    assert "工作台：登录成功" in fields
    assert "<code>console:login:succeeded</code>" in fields
    assert "数据主体（密钥哈希，不含原文）" in fields
    assert "subject_hmac" not in _text(fields)
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d<", fields)  # to the second, no offset

    gw.runtime.transparency.make_checkpoint(dt.datetime.now(dt.UTC))
    covered = gw.http.get(f"/console/audit/entries/{newest}").text
    assert 'id="proof-status" class="ok">已验证<' in covered


def test_failed_log_ins_and_a_lock_out_are_alerts(gw: InProcessGateway) -> None:
    for _ in range(5):
        assert _log_in(gw, CLERK, "wrong-password-1234") == 401
    assert _log_in(gw, OFFICER, OFFICER_PASSWORD) == 303
    page = gw.http.get("/console/audit").text
    alerts = page.split('<table id="alerts"', 1)[1].split("</table>", 1)[0]
    kinds = re.findall(r'data-kind="([a-z-]+)"', alerts)
    assert "login-failures" in kinds
    assert "account-locked" in kinds
    text = _text(alerts)
    assert "工作台连续登录失败" in text
    assert "工作台账户被锁定" in text
    assert f"账户 {CLERK}" in text
    assert "密码错误 5 次" in text


def test_the_csv_export_starts_with_a_bom(gw: InProcessGateway) -> None:
    assert _log_in(gw, OFFICER, OFFICER_PASSWORD) == 303
    page = gw.http.get("/console/audit").text
    token = _CSRF.search(page)
    assert token is not None
    answer = gw.http.post(
        "/console/audit/export",
        data={"csrf_token": token.group(1), "format": "csv", "event": "console:login:failed"},
    )
    assert answer.status_code == 200
    assert answer.content.startswith(b"\xef\xbb\xbfindex,at,event,")
    assert b"console:login:failed" in answer.content
