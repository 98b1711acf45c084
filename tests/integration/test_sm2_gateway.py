"""SM2 (国密, docs/sm2.md) wherever the gateway holds a key: the demo's 区税务局 signs with SM2
and is answered with the gateway's SM2 key (answers follow the department's key); with
``GATEWAY_ANSWER_ALGORITHM=SM2`` every document the gateway signs — checkpoints, status lists,
the seal registry — is SM2 and everything that verifies them (the SDK, the offline verifier,
``gateway audit verify`` and ``witness``) takes it; the demo's real-estate seal is SM2 and its
certificates verify online and offline; SM2 keys register by request (a department's next key,
a seal) and the gateway's SM2 key rotates on its own.

The answers are checked by implementations nobody here wrote as well: the openssl command line
(the recipe of docs/sm2.md, run as printed) and gmalglib.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from gmalglib.sm2 import SM2 as GmalglibSM2

from gateway.core.algorithms import SigningKey
from gateway.core.jose import parse_compact
from gateway.core.policy import DISTRICT_TZ
from gateway.core.protocol import TokenType
from gateway.demo.licences import (
    JURISDICTION,
    LICENSED_COMPANIES,
    business_licence,
    demo_cases,
)
from gateway.demo.population import companies, people
from gateway.demo.walkthrough import TAX_ITEM
from gateway.sdk import AnswerRejected, JwksCache, OfflineVerifier, sealed_status_list_id
from gateway.sdk._answers import verify_answer
from tests.inprocess import InProcessGateway, in_process_gateway
from tests.support import ROOT, GatewayProcess, gateway_command, running_gateway

COMPANY = companies()[12]
LOOKUP: dict[str, Any] = {
    "resource": "enterprise-registration",
    "subject": ("uscc", COMPANY.uscc),
    "fields": ["name", "status"],
    "item": "000109001000",
    "reason": "国密核验",
    "operator": "tax-clerk-9",
}
#: An ES256 department's lookup (区政务服务中心, 企业变更登记).
CENTRE_LOOKUP: dict[str, Any] = {
    "resource": "enterprise-registration",
    "subject": ("uscc", COMPANY.uscc),
    "fields": ["name"],
    "item": "000201002000",
    "reason": "企业变更登记",
    "operator": "clerk-017",
}
_DOC = ROOT / "docs" / "sm2.md"
needs_openssl = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("openssl", "xxd", "basenc")),
    reason="the openssl recipe needs openssl, xxd and coreutils' basenc",
)


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _alg(token: str) -> str:
    return parse_compact(token, allowed_members={"alg", "kid", "typ"}).header.alg


def _jwks(gw: InProcessGateway) -> dict[str, Any]:
    jwks: dict[str, Any] = gw.http.get("/.well-known/jwks.json").json()
    return jwks


def _gateway_sm2_jwk(gw: InProcessGateway, kid: str) -> dict[str, Any]:
    (jwk,) = [k for k in _jwks(gw)["keys"] if k["kid"] == kid]
    assert jwk["alg"] == "SM2"
    assert jwk["crv"] == "SM2"
    return {k: jwk[k] for k in ("kty", "crv", "x", "y")}


def _openssl_verifies(tmp_path: Path, token: str, signer_jwk: dict[str, Any]) -> str:
    """What docs/sm2.md's verifying recipe, run as printed, says of ``token``."""
    found = re.search(r"<!-- sm2-verify -->\n```sh\n(.*?)```", _DOC.read_text("utf-8"), re.S)
    assert found
    (tmp_path / "signer.pub.jwk").write_text(json.dumps(signer_jwk, separators=(",", ":")))
    (tmp_path / "token").write_text(token + "\n")
    done = subprocess.run(
        ["bash", "-c", found.group(1)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout.strip()


def _gmalglib_verifies(token: str, signer_jwk: dict[str, Any]) -> bool:
    head, payload, signature = token.split(".")
    point = b"\x04" + _b64decode(signer_jwk["x"]) + _b64decode(signer_jwk["y"])
    verifier = GmalglibSM2(pk=point, uid=b"1234567812345678")
    return bool(verifier.verify(f"{head}.{payload}".encode(), _b64decode(signature)))


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path) -> Iterator[InProcessGateway]:
    """The demo district as `gateway init` makes it: ES256 answers by default."""
    with in_process_gateway(tmp_path_factory.mktemp("sm2-gateway"), keys_dir) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def sm2_gw(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path) -> Iterator[GatewayProcess]:
    """A gateway (``gateway serve``) whose answer algorithm is SM2 and whose answers do not
    follow the departments' keys: it signs everything with its SM2 key."""
    with running_gateway(
        tmp_path_factory.mktemp("sm2-answers"),
        keys_dir,
        server=False,
        env={
            "GATEWAY_ANSWER_ALGORITHM": "SM2",
            "GATEWAY_ANSWERS_FOLLOW_DEPARTMENT_KEY": "false",
        },
    ) as gateway:
        yield gateway


def _command_env(gw: InProcessGateway | GatewayProcess) -> dict[str, str]:
    if isinstance(gw, GatewayProcess):
        return {k: v for k, v in gw.environment().items() if k.startswith("GATEWAY_")}
    return {
        "GATEWAY_DATA_DIR": str(gw.data_dir),
        "GATEWAY_KEYS_DIR": str(gw.keys_dir),
        "GATEWAY_POLICIES_DIR": gw.settings.policies_dir,
        "GATEWAY_LOG_LEVEL": "warning",
    }


def _sealed_licence(database_url: str, issuer: str) -> str:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return str(
                conn.execute(
                    sa.text(
                        "SELECT sealed FROM licences WHERE issuer = :issuer "
                        "ORDER BY licence_id LIMIT 1"
                    ),
                    {"issuer": issuer},
                ).scalar_one()
            )
    finally:
        engine.dispose()


# --- the demo district: an SM2 department, answered in SM2 -----------------------------------


def test_the_jwks_publishes_an_es256_and_an_sm2_key(gw: InProcessGateway) -> None:
    keys = _jwks(gw)["keys"]
    assert sorted((k["alg"], k["status"]) for k in keys) == [
        ("ES256", "active"),
        ("SM2", "active"),
    ]
    (sm2_key,) = [k for k in keys if k["alg"] == "SM2"]
    assert set(sm2_key) == {"kty", "crv", "x", "y", "kid", "alg", "use", "status"}
    assert (sm2_key["kty"], sm2_key["crv"], sm2_key["use"]) == ("EC", "SM2", "sig")


@needs_openssl
def test_an_sm2_department_gets_an_sm2_answer_that_openssl_and_gmalglib_verify(
    gw: InProcessGateway, tmp_path: Path
) -> None:
    with gw.client("tax") as tax:
        assert tax.algorithm == "SM2"
        token = tax.lookup_token(case="SM2-ANS-0001", **LOOKUP)
        assert _alg(token) == "SM2"
        answer = tax.send_lookup(token)  # verified by the SDK against the JWKS
    assert _alg(answer.token) == "SM2"
    assert answer.data == {"name": COMPANY.name, "status": COMPANY.status}
    kid = parse_compact(answer.token, allowed_members={"alg", "kid", "typ"}).header.kid
    assert kid is not None
    signer = _gateway_sm2_jwk(gw, kid)
    assert _openssl_verifies(tmp_path, answer.token, signer) == "Verified OK"
    assert _gmalglib_verifies(answer.token, signer)
    # The same recipe refuses the answer with one claim changed.
    head, payload, signature = answer.token.split(".")
    claims = json.loads(_b64decode(payload))
    claims["data"]["status"] = "注销"
    changed = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert _openssl_verifies(tmp_path, f"{head}.{changed}.{signature}", signer) == (
        "Verification failure"
    )


def test_other_departments_are_answered_in_es256(gw: InProcessGateway) -> None:
    with gw.client("service-centre") as centre:
        answer = centre.lookup(
            resource="enterprise-registration",
            subject=("uscc", COMPANY.uscc),
            fields=["name", "legal_representative", "status"],
            item="000201002000",
            case="SM2-ANS-0002",
            reason="企业变更登记",
            operator="clerk-017",
        )
    assert _alg(answer.token) == "ES256"


def test_an_sm2_answer_is_refused_by_a_verifier_that_swaps_the_header(
    gw: InProcessGateway,
) -> None:
    with gw.client("tax") as tax:
        answer = tax.lookup(case="SM2-ANS-0003", **LOOKUP)
        head, payload, signature = answer.token.split(".")
        header = json.loads(_b64decode(head))
        # The SM2 key's kid under an ES256 header: the key's algorithm decides, not the header.
        swapped = base64.urlsafe_b64encode(json.dumps({**header, "alg": "ES256"}).encode()).rstrip(
            b"="
        )
        with pytest.raises(AnswerRejected):
            tax.verify_answer(f"{swapped.decode()}.{payload}.{signature}")
        with pytest.raises(AnswerRejected):  # a signature of zeros
            tax.verify_answer(f"{head}.{payload}.{base64.urlsafe_b64encode(bytes(64)).decode()}")


def test_the_sm2_sealed_certificate_verifies_online_and_offline(gw: InProcessGateway) -> None:
    case = demo_cases(gw.runtime.policy.current.departments)["real-estate-certificate"]
    holder = next(p for p in people() if p.name == case.holder_name)
    with gw.client("tax") as tax:
        found = tax.lookup(
            resource="licence-realestate",
            subject=("resident-id", holder.id_number),
            fields=["licence_id", "status", "sealed"],
            item=TAX_ITEM,
            case="SM2-SEAL-0001",
            reason="房产税申报：调取纳税人的不动产权证书",
            operator="tax-clerk-05",
        )
        sealed = str(found.data["sealed"])
        assert _alg(sealed) == "SM2"
        receipt = tax.verify_licence(
            licence=sealed,
            item=TAX_ITEM,
            case="SM2-SEAL-0001",
            reason="核验不动产权证书",
            operator="tax-clerk-05",
        )
        assert str(receipt.verdict) == found.data["status"] == "valid"
        assert _alg(receipt.token) == "SM2"  # the receipt follows 区税务局's key too
        list_id = sealed_status_list_id(sealed)
        assert list_id is not None
        offline = tax.offline_verifier(list_ids=[list_id])
    now = dt.datetime.now(dt.UTC)
    assert str(offline.verify(sealed, now=now).verdict) == "valid"
    head, payload, signature = sealed.split(".")
    forged = f"{head}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BA'}"
    assert str(offline.verify(forged, now=now).verdict) == "forged"


def test_answers_need_not_follow_the_department(
    tmp_path_factory: pytest.TempPathFactory, keys_dir: Path
) -> None:
    with (
        in_process_gateway(
            tmp_path_factory.mktemp("sm2-no-follow"),
            keys_dir,
            answers_follow_department_key=False,
        ) as gateway,
        gateway.client("tax") as tax,
    ):
        answer = tax.lookup(case="SM2-ANS-0004", **LOOKUP)
    assert _alg(answer.token) == "ES256"


# --- SM2 as the answer algorithm: every document ---------------------------------------------


def test_with_sm2_answers_every_document_is_sm2_and_verifies(
    sm2_gw: GatewayProcess, tmp_path: Path
) -> None:
    gw = sm2_gw
    with gw.client("service-centre") as centre:  # an ES256 department: SM2 all the same
        answer = centre.lookup(case="SM2-DOC-0001", **CENTRE_LOOKUP)
    assert _alg(answer.token) == "SM2"
    registry = gw.http.get("/v1/seals/registry").text
    assert _alg(registry) == "SM2"
    sealed = _sealed_licence(gw.database_url, "realestate")
    list_id = sealed_status_list_id(sealed)
    assert list_id is not None
    status_list = gw.http.get(f"/v1/status-lists/{list_id}").text
    assert _alg(status_list) == "SM2"
    now = dt.datetime.now(dt.UTC)
    verifier = OfflineVerifier(
        jwks=gw.http.get("/.well-known/jwks.json").json(),
        registry=registry,
        status_lists=[status_list],
        issuer="yiwang-gateway",
        now=now,
    )
    assert str(verifier.verify(sealed, now=now).verdict) == "valid"
    # The checkpoint: SM2, and what `gateway audit verify` and the witness accept.
    deadline = time.monotonic() + 10
    while (checkpoint := gw.http.get("/v1/audit/checkpoint")).status_code != 200:
        assert time.monotonic() < deadline, "no checkpoint was signed"
        time.sleep(0.2)
    assert _alg(checkpoint.text) == "SM2"
    env = _command_env(gw)
    verified = gateway_command("audit", "verify", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "OK: every entry" in verified.stdout
    state = tmp_path / "witness.json"
    for _ in range(2):  # the first run remembers the checkpoint, the second checks against it
        witness = gateway_command("audit", "witness", gw.url, "--state", str(state), env=env)
        assert witness.returncode == 0, witness.stdout + witness.stderr
    assert _alg(json.loads(state.read_text())["token"]) == "SM2"


def test_an_sm2_document_refused_when_the_jwks_does_not_vouch_for_it(
    sm2_gw: GatewayProcess,
) -> None:
    registry = sm2_gw.http.get("/v1/seals/registry").text
    served = sm2_gw.http.get("/.well-known/jwks.json").json()
    es256_only = {"keys": [k for k in served["keys"] if k["alg"] == "ES256"]}
    with pytest.raises(Exception, match="no gateway key"):
        OfflineVerifier(
            jwks=es256_only,
            registry=registry,
            status_lists=[],
            issuer="yiwang-gateway",
            now=dt.datetime.now(dt.UTC),
        )
    cache = JwksCache(http=sm2_gw.http, url=sm2_gw.url + "/.well-known/jwks.json")
    with sm2_gw.client("service-centre") as centre:
        token = centre.lookup_token(case="SM2-DOC-0002", **CENTRE_LOOKUP)
        answer = centre.send_lookup(token)
    # The answer is for service-centre, not for anyone else.
    with pytest.raises(AnswerRejected):
        verify_answer(answer.token, jwks=cache, audience="tax", typ=TokenType.LOOKUP_RESULT)


# --- SM2 keys registered by request, and the gateway's SM2 key rotated ------------------------


def test_a_department_registers_and_uses_an_sm2_key(gw: InProcessGateway) -> None:
    new_key = SigningKey.generate("SM2")
    with gw.client("service-centre") as centre:
        registered = centre.register_next_key(new_key, operator="admin-1")
        assert registered.claims["kid"] == new_key.key_id
        centre.use_key(new_key)
        deadline = time.monotonic() + 10
        while gw.runtime.exchanges.verifier.keyring.get(new_key.key_id) is None:
            assert time.monotonic() < deadline, "the key watcher did not load the new key"
            time.sleep(0.05)
        answer = centre.lookup(case="SM2-KEY-0001", **CENTRE_LOOKUP)
    assert _alg(answer.token) == "SM2"  # it signs with SM2 now: so is its answer
    entry = gw.audit_entry(answer.audit_index)
    assert entry["department"] == "service-centre"


def test_an_issuer_registers_an_sm2_seal_and_seals_with_it(gw: InProcessGateway) -> None:
    seal_key = SigningKey.generate("SM2")
    market_department = gw.runtime.policy.current.departments["market"]
    content = business_licence(
        next(c for c in companies()[LICENSED_COMPANIES:] if c.status == "存续"),
        issuer=market_department,
        serial=f"{JURISDICTION}7{secrets.randbelow(10**15):015d}",
        issue_date=dt.datetime.now(DISTRICT_TZ).date(),
    )
    with gw.client("market") as market:
        market.register_seal(
            seal_id="market-approval-sm2",
            name="区市场监督管理局行政审批专用章（国密）",
            type="administrative-approval",
            seal_key=seal_key,
            valid_from=dt.date(2026, 1, 1),
            valid_until=dt.date(2030, 12, 31),
            operator="admin-1",
        )
        issued = market.issue_licence(content=content, seal_key=seal_key, operator="clerk-3")
    assert _alg(issued.sealed) == "SM2"
    with gw.client("service-centre") as centre:
        receipt = centre.verify_licence(
            licence_id=content.licence_id,
            item="000201002000",
            case="SM2-SEAL-0002",
            reason="核验营业执照",
            operator="clerk-017",
        )
    assert str(receipt.verdict) == "valid"


def test_the_gateways_sm2_key_rotates_on_its_own(
    tmp_path_factory: pytest.TempPathFactory, keys_dir: Path
) -> None:
    with in_process_gateway(tmp_path_factory.mktemp("sm2-rotation"), keys_dir) as gateway:
        env = _command_env(gateway)
        before = {k["alg"]: k["kid"] for k in _jwks(gateway)["keys"]}
        with gateway.client("tax") as tax:
            old_answer = tax.lookup(case="SM2-ROT-0001", **LOOKUP)
        published = gateway_command("keys", "rotate", "--alg", "SM2", env=env)
        assert published.returncode == 0, published.stderr
        switched = gateway_command("keys", "rotate", "--alg", "SM2", "--now", env=env)
        assert switched.returncode == 0, switched.stderr
        deadline = time.monotonic() + 10
        while True:
            keys = _jwks(gateway)["keys"]
            active = {k["alg"]: k["kid"] for k in keys if k["status"] == "active"}
            if active["SM2"] != before["SM2"]:
                break
            assert time.monotonic() < deadline, "the SM2 key did not switch"
            time.sleep(0.1)
        assert active["ES256"] == before["ES256"]  # the ES256 key is untouched
        retired = {k["kid"]: k for k in keys}[before["SM2"]]
        assert retired["status"] == "retired"
        with gateway.client("tax") as tax:
            new_answer = tax.lookup(case="SM2-ROT-0002", **LOOKUP)
            # What the old SM2 key signed still verifies; the new answer is the new key's.
            tax.verify_answer(old_answer.token)
        header = parse_compact(new_answer.token, allowed_members={"alg", "kid", "typ"}).header
        assert (header.alg, header.kid) == ("SM2", active["SM2"])
