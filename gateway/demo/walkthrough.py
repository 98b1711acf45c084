"""``gateway demo``: four lookups against a running gateway, told in plain words.

1. a permitted lookup, with the data it released;
2. the same consumer asking for a field its grant does not name;
3. a department that holds no grant at all;
4. the first request's token sent again (a replay).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.client import GatewayClient, GatewayProblem
from gateway.demo.population import companies

__all__ = ["run_walkthrough"]

ITEM = "000201002000"  # 企业变更登记


def run_walkthrough(
    *, base_url: str, keys_dir: Path, audience: str, echo: Callable[[str], None]
) -> int:
    """Run the four cases; return how many behaved other than expected (0 is success)."""
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
    echo("\nEvery case above, allowed or refused, has its own entry in the audit log.")
    return surprises
