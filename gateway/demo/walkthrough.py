"""``gateway demo``: lookups and licence verifications against a running gateway, told in
plain words.

Lookups:

1. a permitted lookup, with the data it released;
2. the same consumer asking for a field its grant does not name;
3. a department that holds no grant at all;
4. the first request's token sent again (a replay).

E-licences. The demo does not assume it is the only actor: the licences whose state it shows
are its own, issued (and suspended, revoked, replaced) by this run under serials of this run,
so that nothing a clerk did since ``gateway init`` — a suspension, a new version, a closed
case — changes what it shows. What it cannot make anew it reads back and checks first.

5. a valid 营业执照, verified by its identifier;
6. a 食品经营许可证, verified by the QR code printed on it;
7. a resident's 不动产权证书 (made by ``gateway init``) that 区税务局 reads through a lookup
   (the taxpayer brings nothing), verified as the sealed document itself — the verdict
   expected is the status the lookup released. This case is 国密 end to end: 区税务局 signs
   with SM2, the gateway answers it with its SM2 key, the certificate is sealed with SM2
   (docs/sm2.md);
8.-12. by identifier: a suspended food permit, a revoked 营业执照, version 001 of a
   营业执照 replaced by 002, an expired one, and (from ``gateway init``: a revocation for key
   compromise is final) one sealed with a seal later revoked for key compromise;
13. the certificate of case 7 with one byte changed (forged);
14. the certificate of case 7 checked offline: JWKS, signed seal registry and status list,
    fetched without credentials — no department key, no request naming the licence.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec

from gateway.core.identifiers import LicenceId
from gateway.core.jose import JoseError, parse_compact
from gateway.core.licences import Check, CheckOutcome, LicenceContent, Verdict
from gateway.core.policy import DISTRICT_TZ, Department, load_policy_set
from gateway.demo.licences import (
    BUSINESS_LICENCE,
    FOOD_PERMIT,
    JURISDICTION,
    LICENSED_COMPANIES,
    DemoCase,
    business_licence,
    demo_cases,
    food_permit,
    licence_identifier,
)
from gateway.demo.population import Company, companies, people
from gateway.errors import Error
from gateway.registry import keystore
from gateway.sdk import (
    GatewayClient,
    GatewayProblem,
    PublicDocuments,
    http_client,
    sealed_status_list_id,
)
from gateway.settings import load_settings

__all__ = ["run_walkthrough"]

ITEM = "000201002000"  # 企业变更登记
FOOD_ITEM = "000201004000"  # 食品经营许可
TAX_ITEM = "000109002000"  # 房产税申报
OPERATOR = "clerk-017"
ISSUING_CLERK = "market-clerk-02"

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


def signature_algorithm(token: str) -> str:
    """The ``alg`` a compact JWS names (the demo prints it; nothing is trusted from it)."""
    try:
        return parse_compact(token, allowed_members={"alg", "kid", "typ"}).header.alg
    except JoseError:
        return "?"


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
    # This run's own case number and serials: another actor may have closed an earlier case
    # or published licences under earlier serials. To the microsecond, and two random digits
    # for another host at the same instant: two runs within one second (a fast machine runs
    # the demo in less) once drew the same three random digits and found every serial taken.
    now = dt.datetime.now(DISTRICT_TZ)
    stamp = f"{now:%y%m%d%H%M%S%f}{secrets.randbelow(100):02d}"
    case = f"BJ-{now:%Y}-{stamp}"

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
        "case": case,
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
    run = _Run(client, departments, keys_dir=keys_dir, case=case, stamp=stamp, echo=echo)
    surprises += _licence_cases(run, base_url=base_url, audience=audience)
    echo(
        "\nEvery online case above, allowed or refused, has its own entry in the audit log;"
        " the offline check left none, by design."
    )
    return surprises


@dataclass(frozen=True)
class _Run:
    """What the licence cases of one run share: clients, the issuers, this run's case
    number and serial stamp, where to print."""

    client: Callable[[str], GatewayClient]
    departments: Mapping[str, Department]
    keys_dir: Path
    case: str
    stamp: str
    echo: Callable[[str], None]

    def serial(self, kind: str) -> str:
        """A serial of this run: the district, one digit per case, the run's stamp."""
        return f"{JURISDICTION}{kind}{self.stamp}"


@dataclass
class _Own:
    """The licences this run issued, by case; the QR payload of case 6; failures met."""

    licences: dict[str, DemoCase] = field(default_factory=dict)
    qr: str | None = None
    failures: int = 0


def _licence_cases(run: _Run, *, base_url: str, audience: str) -> int:
    """Cases 5-14 (see the module docstring); returns the number of surprises."""
    echo = run.echo
    echo("\nE-licences (电子证照)")
    own = _issue_own_licences(run)
    surprises = own.failures

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
                case=run.case,
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
    with run.client("service-centre") as centre, run.client("tax") as tax:
        valid = own.licences.get("business-licence")
        if valid is not None:
            echo(f"\n5. 区政务服务中心 verifies the 营业执照 of {valid.holder_name}, by identifier")
            echo(f"   {valid.licence_id}")
            verify(centre, Verdict.VALID, by_id, licence_id=valid.licence_id)

        if own.qr is not None:
            echo("\n6. a clerk of 区政务服务中心 scans the QR code printed on the 食品经营许可证")
            echo(f"   {own.qr}")
            verify(
                centre, Verdict.VALID, (FOOD_ITEM, "食品经营许可变更：扫码核验许可证"), qr=own.qr
            )

        certificate = demo_cases(run.departments)["real-estate-certificate"]
        found = _read_certificate(tax, certificate, case_number=run.case, echo=echo)
        property_purpose = (TAX_ITEM, "房产税申报：核验纳税人的不动产权证书")
        if found is None:
            surprises += 1
        else:
            echo("   区税务局 verifies the sealed certificate itself")
            verify(tax, found[1], property_purpose, licence=found[0])

        for number, (name, what) in enumerate(
            (
                ("suspended", "a suspended 食品经营许可证"),
                ("revoked", "a revoked 营业执照 (the company was struck off, 吊销)"),
                ("superseded", "version 001 of a 营业执照, replaced by version 002"),
                ("expired", "a 营业执照 whose fixed business term has ended"),
            ),
            start=8,
        ):
            case = own.licences.get(name)
            if case is not None:  # else issuing it failed, said and counted above
                echo(f"\n{number}. by identifier: {what}, of {case.holder_name}")
                echo(f"   {case.licence_id}")
                verify(centre, case.verdict, by_id, licence_id=case.licence_id)
        compromised = demo_cases(run.departments)["seal-invalid"]
        echo(
            "\n12. by identifier: a 营业执照 sealed with a seal later revoked for key compromise,"
            f" of {compromised.holder_name} (from gateway init: such a revocation is final)"
        )
        echo(f"   {compromised.licence_id}")
        verify(centre, Verdict.SEAL_INVALID, by_id, licence_id=compromised.licence_id)

        if found is None:
            return surprises + 2
        forged, what = one_byte_changed(found[0])
        echo(f"\n13. a copy of the certificate of case 7 with one byte changed: {what}")
        verify(tax, Verdict.FORGED, property_purpose, licence=forged)
    return surprises + _offline(
        found[0], expected=found[1], base_url=base_url, audience=audience, echo=echo
    )


#: What each of this run's licences undergoes after it is issued, and the reason given.
_AFTERWARDS = {
    "suspend": ("suspended", "食品安全监督抽检不合格，责令停业整改（演示）"),
    "revoke": ("revoked", "行政处罚：吊销营业执照（演示）"),
}


def _issue_own_licences(run: _Run) -> _Own:
    """This run's licences for cases 5, 6 and 8-11, issued now by 区市场监督管理局 to
    companies ``gateway init`` licensed none to, then suspended, revoked or replaced."""
    market = run.departments["market"]
    today = dt.datetime.now(DISTRICT_TZ).date()
    unlicensed = [c for c in companies()[LICENSED_COMPANIES:] if c.status == "存续"]
    food_businesses = [c for c in unlicensed if "餐饮" in c.name or "食品" in c.name]
    others = [c for c in unlicensed if c not in food_businesses]
    ended = today - dt.timedelta(days=400)
    long_established = next(c for c in others if c.established_on < ended)

    def business(
        company: Company,
        kind: str,
        *,
        issue_date: dt.date = today,
        valid_until: dt.date | None = None,
    ) -> LicenceContent:
        return business_licence(
            company,
            issuer=market,
            serial=run.serial(kind),
            issue_date=issue_date,
            valid_until=valid_until,
            service_item=ITEM,
        )

    def food(company: Company, kind: str) -> LicenceContent:
        serial = run.serial(kind)
        return food_permit(
            company, issuer=market, serial=serial, issue_date=today, number=int(serial[-7:])
        )

    business_seal, food_seal = BUSINESS_LICENCE.seal_id, FOOD_PERMIT.seal_id
    expired = business(
        long_established, "5", issue_date=ended - dt.timedelta(days=30), valid_until=ended
    )
    plan: list[tuple[str, LicenceContent, str, Verdict, str]] = [
        ("business-licence", business(others[0], "4"), business_seal, Verdict.VALID, ""),
        ("qr", food(food_businesses[0], "9"), food_seal, Verdict.VALID, ""),
        ("suspended", food(food_businesses[1], "6"), food_seal, Verdict.SUSPENDED, "suspend"),
        ("revoked", business(others[1], "7"), business_seal, Verdict.REVOKED, "revoke"),
        ("superseded", business(others[2], "8"), business_seal, Verdict.CANCELLED, "replace"),
        ("expired", expired, business_seal, Verdict.EXPIRED, ""),
    ]
    own = _Own()
    run.echo(
        f"区市场监督管理局 issues this run's own licences (serials ending in {run.stamp}), so"
        " that what others did since gateway init changes nothing below:"
    )
    with run.client("market") as issuer:
        for name, content, seal_id, verdict, then in plan:
            seal_key = keystore.load_seal_key(run.keys_dir, seal_id)
            try:
                issued = issuer.issue_licence(
                    content=content, seal_key=seal_key, operator=ISSUING_CLERK
                )
                done = ""
                if then == "replace":
                    issuer.issue_licence(
                        content=_next_version(content), seal_key=seal_key, operator=ISSUING_CLERK
                    )
                    done = ", then replaced by version 002"
                elif then:
                    words, reason = _AFTERWARDS[then]
                    issuer.change_licence_status(
                        licence_id=content.licence_id,
                        action=then,
                        reason=reason,
                        operator=ISSUING_CLERK,
                    )
                    done = f", then {words}"
            except (GatewayProblem, Error) as exc:
                own.failures += 1
                run.echo(f"   UNEXPECTED: the {content.type_name} for case {name}: {exc}")
                continue
            if name == "qr":
                own.qr = str(issued.claims["qr"])
            own.licences[name] = DemoCase(
                content.licence_id, verdict, content.type_name, content.holder_name
            )
            run.echo(
                f"   {content.type_name} of {content.holder_name}, sealed with {seal_id}"
                f" ({seal_key.algorithm_name}){done}"
            )
    return own


def _next_version(content: LicenceContent) -> LicenceContent:
    """Version 002 of ``content``: the same licence with its registered capital changed."""
    parsed = LicenceId.parse(content.licence_id)
    return msgspec.structs.replace(
        content,
        licence_id=licence_identifier(
            parsed.type_code, parsed.issuer.value, parsed.serial, version="002"
        ),
        type_fields={**content.type_fields, "注册资本": "2000万元人民币"},
    )


def _read_certificate(
    tax: GatewayClient, case: DemoCase, *, case_number: str, echo: Callable[[str], None]
) -> tuple[str, Verdict] | None:
    """Case 7's document: the holder's 不动产权证书 read through a lookup, and the verdict its
    released status calls for (its issuer may have changed it since gateway init); None on
    failure."""
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
            case=case_number,
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
    echo(
        f"   区税务局 signed its request with {tax.algorithm}; the gateway's answer is signed"
        f" {signature_algorithm(answer.token)}, the certificate sealed"
        f" {signature_algorithm(str(data['sealed']))}"
    )
    try:
        expected = Verdict(str(data["status"]))
    except ValueError:
        echo(f"   UNEXPECTED: a status no verdict matches: {data['status']}")
        return None
    return str(data["sealed"]), expected


def _offline(
    sealed: str, *, expected: Verdict, base_url: str, audience: str, echo: Callable[[str], None]
) -> int:
    """Case 14: verify ``sealed`` with the public documents only; returns surprises (0/1)."""
    echo("\n14. the certificate of case 7 checked offline, by someone with no department key")
    list_id = sealed_status_list_id(sealed)
    now = dt.datetime.now(dt.UTC)
    try:
        with http_client(base_url, timeout=10.0) as anonymous:
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
    if verification.verdict is not expected:
        echo(f"   UNEXPECTED: wanted {expected}")
        return 1
    return 0
