"""``gateway demo``: lookups and licence verifications against a running gateway, told in
plain words.

Lookups:

1. a permitted lookup, with the data it released;
2. the same consumer asking for a field its grant does not name;
3. a department that holds no grant at all;
4. the first request's token sent again (a replay).

E-licences (the demo district's, made by ``gateway init``; see :mod:`gateway.demo.licences`):

5. a valid 营业执照, verified by its identifier;
6. a 食品经营许可证 that 区市场监督管理局 issues now (reserve, seal, publish), verified by
   the QR code printed on it — the one licence the demo issues, on every run, because a QR
   code is on the holder's paper and no grant lets the demo read a food permit's;
7. a resident's 不动产权证书 that 区税务局 reads through a lookup (the taxpayer brings
   nothing), verified as the sealed document itself;
8.-12. by identifier: a suspended food permit, a revoked 营业执照, version 001 of a
   营业执照 replaced by 002, an expired one, one sealed with a seal later revoked for key
   compromise;
13. the certificate of case 7 with one byte changed (forged);
14. the certificate of case 7 checked offline: JWKS, signed seal registry and status list,
    fetched without credentials — no department key, no request naming the licence.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from gateway.core.licences import Check, CheckOutcome, Verdict
from gateway.core.policy import DISTRICT_TZ, Department, load_policy_set
from gateway.demo.licences import (
    FOOD_PERMIT,
    JURISDICTION,
    LICENSED_COMPANIES,
    DemoCase,
    demo_cases,
    food_permit,
)
from gateway.demo.population import companies, people
from gateway.errors import Error
from gateway.registry import keystore
from gateway.sdk import GatewayClient, GatewayProblem, PublicDocuments, sealed_status_list_id
from gateway.settings import load_settings

__all__ = ["run_walkthrough"]

ITEM = "000201002000"  # 企业变更登记
FOOD_ITEM = "000201004000"  # 食品经营许可
TAX_ITEM = "000109002000"  # 房产税申报
CASE = "BJ-2026-000123"
OPERATOR = "clerk-017"

#: What a failed verification check means, in plain words.
FAILED_CHECK = {
    "identifier-format": "the identifier is malformed or its check character is wrong",
    "qr-format": "the QR payload is malformed",
    "record": "the gateway's registry holds no such licence",
    "structure": "it is not a sealed licence (a compact JWS)",
    "seal-known": "no registered seal has the key that sealed it",
    "signature": "the seal's signature does not match the content: it was altered",
    "content": "the sealed content is malformed",
    "identifier": "the identifier does not match the issuer or type inside",
    "holder-id": "the holder's ID is invalid",
    "seal-owner": "the seal belongs to another department",
    "seal-validity": "the seal cannot vouch for it (not valid on its issue date, or compromised)",
    "record-matches": "it differs from the licence the issuer published",
    "qr-digest": "the QR code is not of this licence's content",
    "status-entry": "the status list has no entry for it",
    "status": "its issuer has ended it",
    "validity": "today lies outside its validity dates",
    "suspension": "its issuer has suspended it",
}


def decisive(checks: tuple[Check, ...]) -> str:
    """The check that decided a verdict, in plain words: the first failure, or "all passed"."""
    for check in checks:
        if check.outcome is CheckOutcome.FAILED:
            words = FAILED_CHECK.get(check.name, "it failed")
            return f"decisive check: {check.name} — {words} ({check.detail})"
    passed = sum(c.outcome is CheckOutcome.PASSED for c in checks)
    return (
        f"decisive: all {passed} checks passed — the seal's signature, the seal's validity on"
        " the issue date, the status now and the validity dates among them"
    )


def one_byte_changed(sealed: str) -> tuple[str, str]:
    """A copy of a sealed licence with one byte of its content changed, and what changed.

    The byte is a digit of the floor area (房屋建筑面积) when there is one: the sort of
    change someone would make to a paper copy.
    """
    header, payload, signature = sealed.split(".")
    raw = bytearray(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    marker = "房屋建筑面积".encode()
    start = raw.find(marker)
    digits = [i for i in range(start + len(marker), len(raw)) if 0x30 <= raw[i] <= 0x39]
    at = digits[0] if start >= 0 and digits else len(raw) // 2
    old = raw[at]
    raw[at] = 0x30 + (old - 0x2F) % 10 if 0x30 <= old <= 0x39 else old ^ 0x01
    what = f"byte {at} of the content: {chr(old)!r} → {chr(raw[at])!r}"
    if start >= 0 and digits:
        what = f"房屋建筑面积 {chr(old)} → {chr(raw[at])} (byte {at} of the content)"
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode("ascii")
    return f"{header}.{forged}.{signature}", what


def run_walkthrough(
    *,
    base_url: str,
    keys_dir: Path,
    audience: str,
    echo: Callable[[str], None],
    policies_dir: Path | None = None,
) -> int:
    """Run the lookup and licence cases; return how many behaved other than expected (0 is
    success). ``policies_dir`` (for the issuers' USCCs) defaults to the settings'."""
    company = next(c for c in companies() if c.status == "存续")

    def client(department: str) -> GatewayClient:
        return GatewayClient.from_key_file(
            base_url=base_url,
            department=department,
            audience=audience,
            key_path=keys_dir / "departments" / f"{department}.private.jwk.json",
        )

    query: dict[str, Any] = {
        "resource": "enterprise-registration",
        "subject": ("uscc", company.uscc),
        "item": ITEM,
        "case": "BJ-2026-000123",
        "reason": "企业变更登记：核验营业执照信息，申请人免于提交",
        "operator": "clerk-017",
    }
    surprises = 0
    with client("service-centre") as centre, client("police") as police:
        echo(f"Subject: {company.name} (USCC {company.uscc}); service item {ITEM} 企业变更登记\n")

        echo("1. 区政务服务中心 reads name, legal representative and status — granted")
        token = centre.lookup_token(fields=["name", "legal_representative", "status"], **query)
        try:
            answer = centre.send_lookup(token)
            echo(
                f"   verdict: released, grant {answer.claims['grant']}, "
                f"audit index {answer.audit_index}"
            )
            for k, v in answer.data.items():
                echo(f"     {k}: {v}")
            echo("   the answer's signature was checked against the gateway's JWKS")
        except GatewayProblem as exc:
            surprises += 1
            echo(f"   UNEXPECTED: {exc}")

        cases: list[tuple[str, Callable[[], object], int]] = [
            (
                "2. the same department also asks for registered_capital — not in its grant",
                lambda: centre.lookup(fields=["name", "registered_capital"], **query),
                403,
            ),
            (
                "3. 区公安分局 asks for the same record — it holds no grant",
                lambda: police.lookup(fields=["name"], **query),
                403,
            ),
            (
                "4. the token of case 1 is sent again — a replay",
                lambda: centre.send_lookup(token),
                409,
            ),
        ]
        for title, call, expected in cases:
            echo("\n" + title)
            try:
                call()
                surprises += 1
                echo("   UNEXPECTED: data was released")
            except GatewayProblem as exc:
                reason = exc.reason or exc.problem.get("title")
                echo(f"   verdict: refused {exc.status} ({reason}), audit index {exc.audit_index}")
                if exc.status != expected:
                    surprises += 1
                    echo(f"   UNEXPECTED: wanted {expected}")
    departments = load_policy_set(policies_dir or Path(load_settings().policies_dir)).departments
    surprises += _licence_cases(
        client, departments, keys_dir=keys_dir, base_url=base_url, audience=audience, echo=echo
    )
    echo(
        "\nEvery online case above, allowed or refused, has its own entry in the audit log;"
        " the offline check left none, by design."
    )
    return surprises


def _licence_cases(
    client: Callable[[str], GatewayClient],
    departments: Mapping[str, Department],
    *,
    keys_dir: Path,
    base_url: str,
    audience: str,
    echo: Callable[[str], None],
) -> int:
    """Cases 5-14 (see the module docstring); returns the number of surprises."""
    cases = demo_cases(departments)
    surprises = 0
    echo("\nE-licences (电子证照)")

    def verify(
        clerk: GatewayClient,
        expected: Verdict,
        purpose: tuple[str, str],
        *,
        licence_id: str | None = None,
        qr: str | None = None,
        licence: str | None = None,
    ) -> None:
        nonlocal surprises
        try:
            receipt = clerk.verify_licence(
                licence_id=licence_id,
                qr=qr,
                licence=licence,
                item=purpose[0],
                case=CASE,
                reason=purpose[1],
                operator=OPERATOR,
            )
        except (GatewayProblem, Error) as exc:
            surprises += 1
            echo(f"   UNEXPECTED: {exc}")
            return
        echo(f"   verdict: {receipt.verdict} (signed receipt, audit entry {receipt.audit_index})")
        echo(f"   {decisive(receipt.checks)}")
        if receipt.verdict is not expected:
            surprises += 1
            echo(f"   UNEXPECTED: wanted {expected}")

    by_id = (ITEM, "企业变更登记：核验申请人的电子证照，免于提交纸质证照")
    with client("service-centre") as centre, client("tax") as tax:
        valid = cases["business-licence"]
        echo(f"\n5. 区政务服务中心 verifies the 营业执照 of {valid.holder_name} by its identifier")
        echo(f"   {valid.licence_id}")
        verify(centre, valid.verdict, by_id, licence_id=valid.licence_id)

        qr = _issue_food_permit(client, departments, keys_dir=keys_dir, echo=echo)
        if qr is None:
            surprises += 1
        else:
            echo(f"   a clerk of 区政务服务中心 scans the QR code printed on it: {qr}")
            verify(centre, Verdict.VALID, (FOOD_ITEM, "食品经营许可变更：扫码核验许可证"), qr=qr)

        sealed = _read_certificate(tax, cases["real-estate-certificate"], echo=echo)
        property_purpose = (TAX_ITEM, "房产税申报：核验纳税人的不动产权证书")
        if sealed is None:
            surprises += 1
        else:
            echo("   区税务局 verifies the sealed certificate itself")
            verify(tax, Verdict.VALID, property_purpose, licence=sealed)

        for n, (name, what) in enumerate(
            (
                ("suspended", "a suspended 食品经营许可证"),
                ("revoked", "a revoked 营业执照 (the company was struck off, 吊销)"),
                ("superseded", "version 001 of a 营业执照, replaced by version 002"),
                ("expired", "a 营业执照 whose fixed business term has ended"),
                ("seal-invalid", "a 营业执照 sealed with a seal later revoked for key compromise"),
            ),
            start=8,
        ):
            case = cases[name]
            echo(f"\n{n}. by identifier: {what}, of {case.holder_name}")
            echo(f"   {case.licence_id}")
            verify(centre, case.verdict, by_id, licence_id=case.licence_id)

        if sealed is None:
            return surprises + 2
        forged, what = one_byte_changed(sealed)
        echo(f"\n13. a copy of the certificate of case 7 with one byte changed: {what}")
        verify(tax, Verdict.FORGED, property_purpose, licence=forged)
    return surprises + _offline(sealed, base_url=base_url, audience=audience, echo=echo)


def _issue_food_permit(
    client: Callable[[str], GatewayClient],
    departments: Mapping[str, Department],
    *,
    keys_dir: Path,
    echo: Callable[[str], None],
) -> str | None:
    """Case 6's licence: issued now with a serial of this run; its QR payload (None on failure)."""
    holder = next(
        c for c in companies()[LICENSED_COMPANIES:] if c.status == "存续" and "餐饮" in c.name
    )
    now = dt.datetime.now(DISTRICT_TZ)
    stamp = f"{now:%y%m%d%H%M%S}{secrets.randbelow(1000):03d}"
    content = food_permit(
        holder,
        issuer=departments["market"],
        serial=f"{JURISDICTION}9{stamp}",
        issue_date=now.date(),
        number=int(stamp[-7:]),
    )
    echo(f"\n6. 区市场监督管理局 issues a 食品经营许可证 to {holder.name} now")
    try:
        seal_key = keystore.load_seal_key(keys_dir, FOOD_PERMIT.seal_id)
        with client("market") as market:
            issued = market.issue_licence(
                content=content, seal_key=seal_key, operator="market-clerk-02"
            )
    except (GatewayProblem, Error) as exc:
        echo(f"   UNEXPECTED: {exc}")
        return None
    echo(
        f"   reserved its status entry, sealed it with seal {FOOD_PERMIT.seal_id}"
        f" ({seal_key.algorithm_name}), published it (audit entry {issued.audit_index}):"
    )
    echo(f"   {issued.claims['licence_id']}")
    return str(issued.claims["qr"])


def _read_certificate(
    tax: GatewayClient, case: DemoCase, *, echo: Callable[[str], None]
) -> str | None:
    """Case 7's document: the holder's 不动产权证书 read through a lookup; None on failure."""
    holder = next(p for p in people() if p.name == case.holder_name)
    echo(
        f"\n7. 区税务局, for 房产税申报, reads the 不动产权证书 of {holder.name}"
        " through a lookup: the taxpayer brings nothing"
    )
    try:
        answer = tax.lookup(
            resource="licence-realestate",
            subject=("resident-id", holder.id_number),
            fields=["licence_id", "status", "sealed"],
            item=TAX_ITEM,
            case=CASE,
            reason="房产税申报：调取纳税人的不动产权证书",
            operator="tax-clerk-05",
        )
    except (GatewayProblem, Error) as exc:
        echo(f"   UNEXPECTED: {exc}")
        return None
    data = answer.data
    echo(
        f"   released: {data['licence_id']}, status {data['status']}"
        f" (grant {answer.claims['grant']}, audit entry {answer.audit_index})"
    )
    if data["licence_id"] != case.licence_id:
        echo(f"   UNEXPECTED: wanted {case.licence_id}")
        return None
    return str(data["sealed"])


def _offline(sealed: str, *, base_url: str, audience: str, echo: Callable[[str], None]) -> int:
    """Case 14: verify ``sealed`` with the public documents only; returns surprises (0/1)."""
    echo("\n14. the certificate of case 7 checked offline, by someone with no department key")
    list_id = sealed_status_list_id(sealed)
    now = dt.datetime.now(dt.UTC)
    try:
        with httpx.Client(base_url=base_url, timeout=10.0) as anonymous:
            documents = PublicDocuments.fetch(anonymous, list_ids=[list_id] if list_id else [])
        verification = documents.verifier(issuer=audience, now=now).verify(sealed, now=now)
    except (GatewayProblem, Error, httpx.HTTPError) as exc:
        echo(f"   UNEXPECTED: {exc}")
        return 1
    echo(
        "   fetched without credentials: the JWKS, the signed seal registry and the whole"
        f" status list {list_id}; the gateway cannot tell which licence was checked"
    )
    echo(f"   verdict: {verification.verdict} (checked here; no request named the licence)")
    echo(f"   {decisive(verification.checks)}")
    if verification.verdict is not Verdict.VALID:
        echo("   UNEXPECTED: wanted valid")
        return 1
    return 0
