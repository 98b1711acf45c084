"""Rotating the gateway's signing key leaves everything it signed before verifiable with the
JWKS — answers, receipts, status lists, registry snapshots, checkpoints — through the SDK,
offline and by the witness; the next key is published ahead of use, the switch is one
command, and every gateway process picks it up without a restart."""

from __future__ import annotations

import datetime as dt
import functools
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization

from gateway.audit.verify import verify_log
from gateway.core.keyring import SWITCH_GRACE_SECONDS, public_jwk
from gateway.core.protocol import TokenType
from gateway.core.status_lists import StatusListRejected
from gateway.demo.population import people
from gateway.sdk import AnswerRejected, OfflineVerifier, sealed_status_list_id
from gateway.sdk._answers import JwksCache, verify_answer
from tests.inprocess import InProcessGateway, in_process_gateway
from tests.support import GatewayProcess, es256_only, gateway_command, running_gateway

QUERY = {
    "resource": "resident-identity",
    "subject": ("resident-id", people()[0].id_number),
    "fields": ["name"],
    "item": "000105001000",
    "case": "ROT-2026-0001",
    "reason": "最低生活保障申请：核验身份",
    "operator": "clerk-ca",
}
PURPOSE = {"item": "000201002000", "case": "ROT-2026-LIC-1", "reason": "核验营业执照"}
#: Short, so that the switch may follow the publication after 2 × 1 s without --now.
MAX_AGE = 1


def _own_keys(keys_dir: Path, target: Path) -> Path:
    """A copy of the session's demo keys: a rotation must not touch the shared key set."""
    shutil.copytree(keys_dir, target)
    return target


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path) -> Iterator[InProcessGateway]:
    root = tmp_path_factory.mktemp("rotation")
    with in_process_gateway(
        root / "data", _own_keys(keys_dir, root / "keys"), jwks_max_age_seconds=MAX_AGE
    ) as gateway:
        yield gateway


def _env(gw: InProcessGateway) -> dict[str, str]:
    return {
        "GATEWAY_DATA_DIR": str(gw.data_dir),
        "GATEWAY_KEYS_DIR": str(gw.keys_dir),
        "GATEWAY_POLICIES_DIR": gw.settings.policies_dir,
        "GATEWAY_JWKS_MAX_AGE_SECONDS": str(MAX_AGE),
        "GATEWAY_LOG_LEVEL": "warning",
    }


def _jwks(gw: InProcessGateway) -> dict[str, Any]:
    response = gw.http.get("/.well-known/jwks.json")
    assert response.status_code == 200
    jwks: dict[str, Any] = response.json()
    # This file rotates the ES256 key (the answer algorithm's); the SM2 key beside it rotates
    # on its own (test_sm2_gateway.py) and stays out of these counts.
    return es256_only(jwks)


def _active(jwks: dict[str, Any]) -> str:
    (kid,) = [k["kid"] for k in jwks["keys"] if k["status"] == "active"]
    return str(kid)


def _until(check: Any, seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _sealed_licence(gw: InProcessGateway) -> str:
    engine = sa.create_engine(gw.database_url)
    try:
        with engine.connect() as conn:
            return str(
                conn.execute(
                    sa.text(
                        "SELECT sealed FROM licences WHERE issuer = 'market' "
                        "ORDER BY licence_id LIMIT 1"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _documents(gw: InProcessGateway, sealed: str) -> tuple[str, str]:
    list_id = sealed_status_list_id(sealed)
    assert list_id is not None
    registry = gw.http.get("/v1/seals/registry").text
    status_list = gw.http.get(f"/v1/status-lists/{list_id}").text
    return registry, status_list


def _verify_log(gw: InProcessGateway, jwks: dict[str, Any]) -> Any:
    engine = sa.create_engine(gw.database_url)
    try:
        return verify_log(engine, gateway_jwks=jwks, issuer=gw.settings.gateway_id)
    finally:
        engine.dispose()


def test_the_jwks_states_how_long_it_may_be_cached(embedded_app: InProcessGateway) -> None:
    response = embedded_app.http.get("/.well-known/jwks.json")
    assert response.headers["cache-control"] == "public, max-age=300"  # the default
    (key,) = es256_only(response.json())["keys"]
    assert key["status"] == "active"
    assert "exp" not in key


def test_a_rotation_leaves_every_earlier_document_verifiable(gw: InProcessGateway) -> None:
    env = _env(gw)
    assert gw.http.get("/.well-known/jwks.json").headers["cache-control"] == (
        f"public, max-age={MAX_AGE}"
    )
    before = _jwks(gw)
    old = _active(before)
    sealed = _sealed_licence(gw)
    # What the old key signs: an answer, a receipt, a status list, a registry snapshot and a
    # checkpoint.
    with gw.client("civil-affairs") as citizen_desk:
        answer = citizen_desk.lookup(**QUERY)
    with gw.client("service-centre") as clerk:
        receipt = clerk.verify_licence(
            licence=sealed,
            operator="clerk-007",
            item=PURPOSE["item"],
            case=PURPOSE["case"],
            reason=PURPOSE["reason"],
        )
    registry, status_list = _documents(gw, sealed)
    assert gw.runtime.transparency.make_checkpoint(dt.datetime.now(dt.UTC)) is not None
    for token in (answer.token, receipt.token, registry, status_list):
        assert jwt.get_unverified_header(token)["kid"] == old

    # First run: the next key is published, nothing signs with it yet.
    published = gateway_command("keys", "rotate", env=env)
    assert published.returncode == 0, published.stderr
    ahead = _until(lambda: len(_jwks(gw)["keys"]) == 2 and _jwks(gw))
    assert ahead, "the next key did not reach the JWKS"
    (upcoming,) = [k for k in ahead["keys"] if k["status"] == "next"]
    new = upcoming["kid"]
    assert new in published.stdout
    assert _active(ahead) == old
    with gw.client("civil-affairs") as citizen_desk:
        assert jwt.get_unverified_header(citizen_desk.lookup(**QUERY).token)["kid"] == old
    # The switch is refused until the next key has been published for 2 × max-age.
    early = gateway_command("keys", "rotate", env=env)
    assert early.returncode == 1
    assert "not before" in early.stderr
    assert _active(_jwks(gw)) == old
    time.sleep(2 * MAX_AGE + 0.2)
    switched = gateway_command("keys", "rotate", env=env)
    assert switched.returncode == 0, switched.stderr
    assert _until(lambda: gw.runtime.signer.kid == new), "the process did not switch"
    after = _jwks(gw)
    by_kid = {k["kid"]: k for k in after["keys"]}
    assert by_kid[new]["status"] == "active"
    assert "nbf" in by_kid[new]
    assert by_kid[old]["status"] == "retired"
    assert by_kid[old]["exp"] > answer.claims["iat"]

    # New documents are signed by the new key, and a verifier that cached the JWKS of the
    # publication (`ahead`) verifies them without fetching it again.
    with gw.client("civil-affairs") as citizen_desk:
        fresh = citizen_desk.lookup(**QUERY)
    assert jwt.get_unverified_header(fresh.token)["kid"] == new
    cached = JwksCache(http=gw.http, url="/.well-known/jwks.json")
    cached.get(old)  # fetched now: the JWKS as served after the switch
    for token, typ, audience in (
        (answer.token, TokenType.LOOKUP_RESULT, "civil-affairs"),
        (receipt.token, TokenType.VERIFICATION_RECEIPT, "service-centre"),
        (fresh.token, TokenType.LOOKUP_RESULT, "civil-affairs"),
    ):
        assert verify_answer(token, jwks=cached, audience=audience, typ=typ).claims["iss"]
    # Offline: the documents of before the rotation, with the JWKS of after it.
    now = dt.datetime.now(dt.UTC)
    offline = OfflineVerifier(
        jwks=after, registry=registry, status_lists=[status_list], issuer="yiwang-gateway", now=now
    )
    assert offline.verify(sealed, now=now).verdict == receipt.verdict
    new_registry, new_list = _documents(gw, sealed)
    assert jwt.get_unverified_header(new_registry)["kid"] == new
    OfflineVerifier(
        jwks=ahead, registry=new_registry, status_lists=[new_list], issuer="yiwang-gateway", now=now
    )
    # Checkpoints of both keys verify against the JWKS.
    assert gw.runtime.transparency.make_checkpoint(dt.datetime.now(dt.UTC)) is not None
    report = _verify_log(gw, after)
    assert report.ok, report.problems
    assert report.checkpoints >= 2
    # ...and the officers' integrity view of the latest checkpoint (signed by the new key).
    claims, problem = gw.runtime.integrity.checkpoint_claims()
    assert problem is None
    assert claims is not None
    # A receipt of before the rotation is still the gateway's when a clerk brings it back to
    # print; one the old key signed after its retirement would not be (see the next test).
    with gw.http.portal() as portal:
        printed = portal.call(
            functools.partial(
                gw.runtime.licensing.console_receipt,
                receipt.token,
                department="service-centre",
                operator="clerk-007",
                now=time.time(),
            )
        )
    assert printed is not None
    assert printed[0]["verdict"] == str(receipt.verdict)

    listed = gateway_command("keys", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert '"status": "retired"' in listed.stdout
    assert new in listed.stdout
    events = [r["event"] for r in gw.audit_rows("event LIKE 'key:gateway:%'")]
    assert events == ["key:gateway:published", "key:gateway:activated", "key:gateway:retired"]


def _forged_after_retirement(gw: InProcessGateway, kid: str, template: str) -> str:
    """``template``'s claims signed again by the retired key ``kid`` (its private file is
    still on disk), dated after its retirement."""
    pem = gw.keys_dir / "gateway" / "signing.private.pem"
    key = serialization.load_pem_private_key(pem.read_bytes(), password=None)
    assert public_jwk(key, alg="ES256")["kid"] == kid  # type: ignore[arg-type]
    retired_exp = {k["kid"]: k for k in _jwks(gw)["keys"]}[kid]["exp"]
    claims = jwt.decode(template, options={"verify_signature": False})
    claims.update(iat=retired_exp + 1, exp=retired_exp + 300)
    header = jwt.get_unverified_header(template)
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid, "typ": header["typ"]})  # type: ignore[arg-type]


def test_a_retired_key_vouches_only_for_what_it_signed_before(gw: InProcessGateway) -> None:
    jwks = _jwks(gw)
    retired = [k for k in jwks["keys"] if k["status"] == "retired"]
    if not retired:
        pytest.skip("needs the rotation of the test before")  # pragma: no cover
    old = retired[0]["kid"]
    assert retired[0]["exp"] - SWITCH_GRACE_SECONDS <= time.time()
    with gw.client("civil-affairs") as citizen_desk:
        template = citizen_desk.lookup(**QUERY).token
    forged = _forged_after_retirement(gw, old, template)
    cache = JwksCache(http=gw.http, url="/.well-known/jwks.json")
    with pytest.raises(AnswerRejected):
        verify_answer(forged, jwks=cache, audience="civil-affairs", typ=TokenType.LOOKUP_RESULT)
    # (PyJWT refuses it first while its iat is still ahead of the clock: the key's rule, once
    # the signature holds, is this one.)
    forged_iat = jwt.decode(forged, options={"verify_signature": False})["iat"]
    with pytest.raises(AnswerRejected, match="retired"):
        cache.for_token(old, iat=forged_iat)
    # A key the JWKS does not list is refused too.
    stranger = {**jwt.get_unverified_header(template), "kid": "A" * 43}
    unknown = jwt.encode(
        jwt.decode(template, options={"verify_signature": False}),
        serialization.load_pem_private_key(
            (gw.keys_dir / "gateway" / "signing.private.pem").read_bytes(), password=None
        ),  # type: ignore[arg-type]
        algorithm="ES256",
        headers={"kid": stranger["kid"], "typ": stranger["typ"]},
    )
    with pytest.raises(AnswerRejected, match="unknown gateway key"):
        verify_answer(unknown, jwks=cache, audience="civil-affairs", typ=TokenType.LOOKUP_RESULT)
    # A receipt the retired key signed after its retirement is not the gateway's to print.
    with gw.client("service-centre") as clerk:
        genuine = clerk.verify_licence(
            licence=_sealed_licence(gw),
            operator="clerk-007",
            item=PURPOSE["item"],
            case=PURPOSE["case"],
            reason=PURPOSE["reason"],
        ).token
    late_receipt = _forged_after_retirement(gw, old, genuine)
    with gw.http.portal() as portal:
        for token, own in ((genuine, True), (late_receipt, False)):
            printed = portal.call(
                functools.partial(
                    gw.runtime.licensing.console_receipt,
                    token,
                    department="service-centre",
                    operator="clerk-007",
                    now=time.time(),
                )
            )
            assert (printed is not None) is own
    # Offline: a status list the retired key signed after its retirement is refused.
    sealed = _sealed_licence(gw)
    registry, status_list = _documents(gw, sealed)
    late_list = _forged_after_retirement(gw, old, status_list)
    with pytest.raises(StatusListRejected, match="retired"):
        OfflineVerifier(
            jwks=jwks,
            registry=registry,
            status_lists=[late_list],
            issuer="yiwang-gateway",
            now=dt.datetime.now(dt.UTC),
        )


def test_the_active_key_cannot_be_retired_and_a_next_key_can_be_withdrawn(
    gw: InProcessGateway,
) -> None:
    env = _env(gw)
    active = _active(_jwks(gw))
    refused = gateway_command("keys", "retire", "--", active, env=env)
    assert refused.returncode == 1
    assert "rotate" in refused.stderr
    assert gateway_command("keys", "retire", "nope", env=env).returncode == 1
    assert gateway_command("keys", "rotate", env=env).returncode == 0
    upcoming = _until(lambda: [k["kid"] for k in _jwks(gw)["keys"] if k["status"] == "next"])
    assert upcoming, "the next key was not published"
    withdrawn = gateway_command("keys", "retire", "--", upcoming[0], env=env)
    assert withdrawn.returncode == 0, withdrawn.stderr
    assert _until(lambda: upcoming[0] not in {k["kid"] for k in _jwks(gw)["keys"]})
    assert not (gw.keys_dir / "gateway" / f"{upcoming[0]}.private.pem").exists()
    assert _active(_jwks(gw)) == active


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("rotation-server")
    with running_gateway(
        root / "data",
        _own_keys(keys_dir, root / "keys"),
        server=True,
        env={"GATEWAY_JWKS_MAX_AGE_SECONDS": str(MAX_AGE)},
    ) as gateway:
        yield gateway


def test_every_worker_switches_and_the_witness_keeps_verifying(
    server: GatewayProcess, tmp_path: Path
) -> None:
    env = server.environment()
    state = tmp_path / "witness.json"
    with server.client("civil-affairs") as citizen_desk:
        citizen_desk.lookup(**QUERY)
    # A checkpoint covers it (the checkpointer looks each second; the machine may be busy).
    assert _until(lambda: server.http.get("/v1/audit/checkpoint").status_code == 200)
    first = gateway_command("audit", "witness", server.url, "--state", str(state), env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert gateway_command("keys", "rotate", env=env).returncode == 0
    time.sleep(2 * MAX_AGE + 0.2)
    switched = gateway_command("keys", "rotate", env=env)
    assert switched.returncode == 0, switched.stderr
    new = switched.stdout.split()[1]

    def all_switched() -> bool:
        # Each request may land on either worker: every one of them must sign with the new key.
        with server.client("civil-affairs") as citizen_desk:
            kids = {
                jwt.get_unverified_header(citizen_desk.lookup(**QUERY).token)["kid"]
                for _ in range(8)
            }
        return kids == {new}

    assert _until(all_switched), "a worker kept signing with the old key"

    def newest_checkpoint_is_the_new_keys() -> bool:
        # Grow the log, then look: a checkpoint signed while a worker was still switching
        # may have covered the lookups above with the old key; one over a log that grew
        # after every worker switched can only be the new key's.
        with server.client("civil-affairs") as desk:
            desk.lookup(**QUERY)
        time.sleep(1.2)  # the checkpointer looks once a second
        token = server.http.get("/v1/audit/checkpoint").text
        return bool(jwt.get_unverified_header(token)["kid"] == new)

    assert _until(newest_checkpoint_is_the_new_keys, 20.0), "no checkpoint by the new key"
    again = gateway_command("audit", "witness", server.url, "--state", str(state), env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "consistent:" in again.stdout


def test_a_process_on_a_database_without_a_key_set_adopts_its_key_file(
    tmp_path: Path, keys_dir: Path
) -> None:
    """A database migrated but not initialised since key sets exist: the first process to
    read it records its key file as the active key (as `gateway init` would), so that every
    process reads one set."""
    from gateway.audit import GroupCommitAuditLog
    from gateway.core.keyring import GatewaySigner, KeyRing
    from gateway.core.tokens import RequestTokenVerifier
    from gateway.registry import keystore
    from gateway.registry.gateway_keys import load_gateway_keys
    from gateway.registry.keys import KeyAdministration
    from gateway.storage import migrations

    keys = _own_keys(keys_dir, tmp_path / "keys")
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'gateway.sqlite3'}")
    try:
        migrations.upgrade(engine)
        assert load_gateway_keys(engine) == []
        signer = GatewaySigner(private_key=keystore.ensure_gateway_key(keys), issuer="g")
        first = signer.kid
        administration = KeyAdministration(
            engine=engine,
            verifier=RequestTokenVerifier(keyring=KeyRing([]), audience="g"),
            audit=GroupCommitAuditLog(engine=engine),
            signer=signer,
            keys_dir=keys,
        )
        administration.load_gateway_keys_now()
        # The key file is adopted as the active ES256 key, and a new SM2 key made beside it.
        adopted, sm2_key = sorted(load_gateway_keys(engine), key=lambda k: k.alg)
        assert (adopted.kid, adopted.alg, str(adopted.status)) == (first, "ES256", "active")
        assert (sm2_key.alg, str(sm2_key.status)) == ("SM2", "active")
        assert (keys / "gateway" / f"{sm2_key.kid}.private.jwk.json").is_file()
        assert signer.can_sign
        assert signer.algorithms == {"ES256", "SM2"}
        assert {k["status"] for k in signer.jwks()["keys"]} == {"active"}
    finally:
        engine.dispose()
