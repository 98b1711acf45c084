"""Pre-signed lookup tokens for the load tests (no locust import: safe to use anywhere).

Signing a token costs the load generator about as much CPU as a small request costs the
server, and on a two-core machine the load generator and the gateway share the CPUs. So the
tokens are signed *before* the timed run and the run only sends them: each token carries a
fresh ``jti`` (the gateway answers a reused one with 409) and a lifetime of at most 300 s
(the gateway refuses longer ones with 401), so a pool is good for one run of a few minutes.

Every scenario below is a lookup the demo district's grants (``policies/grants.toml``) allow,
for subjects that exist in the demo providers' sources (``gateway.demo.population``).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.core.protocol import TokenType
from gateway.demo.population import companies, people
from gateway.sdk import GatewayClient

__all__ = [
    "MAX_LIFETIME",
    "SCENARIOS",
    "VERIFIERS",
    "Scenario",
    "read_pool",
    "sign_pool",
    "sign_verification_pool",
    "write_pool",
]

#: The gateway's ceiling on ``exp - iat`` (``GATEWAY_TOKEN_MAX_LIFETIME`` can only lower it).
MAX_LIFETIME = 300


@dataclass(frozen=True, slots=True)
class Scenario:
    """One allowed lookup: a department reading some fields for one service item."""

    department: str
    resource: str
    item: str
    fields: tuple[str, ...]
    reason: str

    @property
    def subject_type(self) -> str:
        return "resident-id" if self.resource == "resident-identity" else "uscc"


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "service-centre",
        "enterprise-registration",
        "000201002000",
        ("name", "status"),
        "企业变更登记：核验营业执照信息，申请人免于提交",
    ),
    Scenario(
        "market",
        "resident-identity",
        "000201001000",
        ("name", "birth_date"),
        "企业设立登记：核验法定代表人身份信息",
    ),
    Scenario(
        "hrss",
        "enterprise-registration",
        "000111001000",
        ("name", "status"),
        "社会保险登记：核验用人单位登记信息",
    ),
    Scenario(
        "realestate",
        "resident-identity",
        "000113001000",
        ("name", "birth_date"),
        "不动产登记：核验申请人身份信息",
    ),
)


#: The SM2 phase (国密, docs/sm2.md): 区税务局 signs its lookups with SM2 and the gateway
#: answers it with its SM2 key (answers follow the department's key).
SM2_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "tax",
        "enterprise-registration",
        "000109001000",
        ("name", "registered_capital", "status"),
        "税务登记：核验企业登记信息",
    ),
)


def _subjects(subject_type: str) -> list[str]:
    if subject_type == "uscc":
        return [c.uscc for c in companies()]
    return [p.id_number for p in people()]


def sign_pool(
    *,
    keys_dir: Path,
    size: int,
    audience: str = "yiwang-gateway",
    lifetime: int = MAX_LIFETIME,
    scenarios: Sequence[Scenario] = SCENARIOS,
) -> list[tuple[str, str]]:
    """``size`` signed lookup tokens, as (department, token), round-robin over ``scenarios``.

    Each token has a fresh ``jti``, ``iat`` = now and ``exp`` = now + ``lifetime``; the
    subjects cycle through the demo population. Keys come from
    ``keys_dir/departments/<department>.private.jwk.json`` (made by ``gateway init``).
    """
    if not 1 <= lifetime <= MAX_LIFETIME:
        raise ValueError(f"lifetime must be 1..{MAX_LIFETIME} s, not {lifetime}")
    if size < 0:
        raise ValueError("size must not be negative")
    clients = {
        s.department: GatewayClient.from_key_file(
            base_url="http://127.0.0.1:9",  # never contacted: only signs
            department=s.department,
            key_path=keys_dir / "departments" / f"{s.department}.private.jwk.json",
            audience=audience,
        )
        for s in scenarios
    }
    subjects = {t: itertools.cycle(_subjects(t)) for t in {s.subject_type for s in scenarios}}
    now = time.time()
    pool: list[tuple[str, str]] = []
    try:
        for i, scenario in zip(range(size), itertools.cycle(scenarios), strict=False):
            token = clients[scenario.department].lookup_token(
                resource=scenario.resource,
                subject=(scenario.subject_type, next(subjects[scenario.subject_type])),
                fields=list(scenario.fields),
                item=scenario.item,
                case=f"BJ-2026-{i:07d}",
                reason=scenario.reason,
                operator=f"clerk-{i % 40:03d}",
                lifetime=lifetime,
                now=now,
            )
            pool.append((scenario.department, token))
    finally:
        for client in clients.values():
            client.close()
    return pool


#: Departments whose clerks verify licences in the benchmark's verification phase: the same
#: algorithms as the lookup mix (ES256 and EdDSA; SM2 has its own phase), so that the
#: verification/lookup ratio compares like with like.
VERIFIERS = ("service-centre", "market", "hrss")


def sign_verification_pool(
    *,
    keys_dir: Path,
    size: int,
    licence_ids: Sequence[str],
    audience: str = "yiwang-gateway",
    lifetime: int = MAX_LIFETIME,
) -> list[tuple[str, str]]:
    """``size`` signed verification tokens (by licence identifier), round-robin over the
    clerks' departments (:data:`VERIFIERS`) and over ``licence_ids``."""
    if not licence_ids:
        raise ValueError("no licence to verify")
    clients = {
        d: GatewayClient.from_key_file(
            base_url="http://127.0.0.1:9",  # never contacted: only signs
            department=d,
            key_path=keys_dir / "departments" / f"{d}.private.jwk.json",
            audience=audience,
        )
        for d in VERIFIERS
    }
    now = int(time.time())
    pool: list[tuple[str, str]] = []
    try:
        ids = itertools.cycle(licence_ids)
        for i, department in zip(range(size), itertools.cycle(VERIFIERS), strict=False):
            claims = {
                "iss": department,
                "aud": audience,
                "iat": now,
                "exp": now + lifetime,
                "jti": uuid.uuid4().hex,
                "operator": f"clerk-{i % 40:03d}",
                "purpose": {
                    "item": "000201002000",
                    "case": f"BJ-2026-V{i:07d}",
                    "reason": "窗口核验营业执照",
                },
                "licence_id": next(ids),
            }
            pool.append((department, clients[department].sign(claims, typ=TokenType.VERIFICATION)))
    finally:
        for client in clients.values():
            client.close()
    return pool


def write_pool(path: Path, pool: Iterable[tuple[str, str]]) -> int:
    """Write ``department<TAB>token`` lines; return how many."""
    count = 0
    with path.open("w", encoding="utf-8") as f:
        for department, token in pool:
            f.write(f"{department}\t{token}\n")
            count += 1
    return count


def read_pool(path: Path) -> list[tuple[str, str]]:
    """Read what :func:`write_pool` wrote."""
    pool: list[tuple[str, str]] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            department, sep, token = line.rstrip("\n").partition("\t")
            if sep and token:
                pool.append((department, token))
    return pool
