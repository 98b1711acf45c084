"""A department holds several active keys: it registers its next key by a request signed
with a current one, carrying a proof of possession of the new one, then retires the old one;
an administrator can do both for it. Every act is an audit entry; hostile input is refused
with a problem naming the field and changes nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from gateway.core.keyring import jwk_thumbprint, public_jwk
from gateway.core.protocol import TokenType
from gateway.demo.population import people
from gateway.errors import InvalidInput
from gateway.registry.claims import check_new_key
from gateway.sdk import BadRequest, GatewayClient, Unauthorized, key_proof, load_private_jwk
from tests.inprocess import InProcessGateway, in_process_gateway
from tests.support import gateway_command

QUERY = {
    "resource": "resident-identity",
    "subject": ("resident-id", people()[0].id_number),
    "fields": ["name"],
    "item": "000105001000",
    "case": "DKEY-2026-0001",
    "reason": "最低生活保障申请：核验身份",
    "operator": "clerk-ca",
}
AUDIENCE = "yiwang-gateway"


def _new_key(alg: str = "ES256") -> jwt.PyJWK:
    """A fresh private key as the SDK holds one (a private JWK with its kid)."""
    if alg == "EdDSA":
        jwk: dict[str, Any] = OKPAlgorithm.to_jwk(
            ed25519.Ed25519PrivateKey.generate(), as_dict=True
        )
    else:
        jwk = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()), as_dict=True)
    return jwt.PyJWK({**jwk, "kid": jwk_thumbprint(jwk), "alg": alg, "use": "sig"})


def _private(key: jwt.PyJWK) -> dict[str, Any]:
    """The private JWK of ``key`` (what must never be registered)."""
    algorithm = OKPAlgorithm if key.algorithm_name == "EdDSA" else ECAlgorithm
    jwk: dict[str, Any] = algorithm.to_jwk(key.key, as_dict=True)
    return {**jwk, "kid": key.key_id, "alg": key.algorithm_name}


def _public(key: jwt.PyJWK) -> dict[str, Any]:
    return public_jwk(key.key, alg=key.algorithm_name)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path) -> Iterator[InProcessGateway]:
    """A gateway of this module's own: its registry changes (the demo keys stay as they are:
    new keys are made here, in memory)."""
    with in_process_gateway(tmp_path_factory.mktemp("department-keys"), keys_dir) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def server_gw(
    tmp_path_factory: pytest.TempPathFactory, keys_dir: Path
) -> Iterator[InProcessGateway]:
    """The same on PostgreSQL and Redis, a database of its own."""
    root = tmp_path_factory.mktemp("department-keys-server")
    with in_process_gateway(root, keys_dir, server=True) as gateway:
        yield gateway


def _keys(gw: InProcessGateway, department: str) -> dict[str, str]:
    engine = sa.create_engine(gw.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT kid, status FROM department_keys WHERE department_id = :d"),
                {"d": department},
            )
            return {str(kid): str(status) for kid, status in rows}
    finally:
        engine.dispose()


def _allowed(client: GatewayClient) -> bool:
    try:
        client.lookup(**QUERY)
    except Unauthorized:
        return False
    return True


def _admin(gw: InProcessGateway) -> dict[str, str]:
    token = (gw.keys_dir / "operators" / "admin.token").read_text().strip()
    return {"Authorization": f"Bearer {token}"}


def test_a_department_registers_its_next_key_then_retires_the_old_one(
    gw: InProcessGateway,
) -> None:
    with gw.client("civil-affairs") as client:
        old = client.key_id
        new = _new_key("EdDSA")
        expires = int(time.time()) + 90 * 86400
        answer = client.register_next_key(new, operator="admin-ca", expires_at=expires)
        assert answer.claims["kid"] == new.key_id
        assert answer.claims["status"] == "active"
        assert answer.claims["expires_at"] == expires
        assert _keys(gw, "civil-affairs") == {old: "active", new.key_id: "active"}
        assert _allowed(client)  # both keys verify: the old one...
        client.use_key(new)
        assert _allowed(client)  # ...and the new one
        retired = client.retire_key(old, operator="admin-ca")
        assert retired.claims["previous"] == "active"
        assert _keys(gw, "civil-affairs") == {old: "retired", new.key_id: "active"}
        assert _allowed(client)
        # The last active key cannot go: the department would lock itself out.
        with pytest.raises(BadRequest) as last:
            client.retire_key(str(new.key_id), operator="admin-ca")
        assert last.value.problem["field"] == "kid"
    with gw.client("civil-affairs") as stale:  # still signing with the retired key
        assert not _allowed(stale)
    events = {
        (r["event"], r["department"], r["operator"])
        for r in gw.audit_rows("event IN ('key:department:registered', 'key:department:retired')")
    }
    assert events >= {
        ("key:department:registered", "civil-affairs", "admin-ca"),
        ("key:department:retired", "civil-affairs", "admin-ca"),
    }


def test_the_same_on_the_server_setup(server_gw: InProcessGateway) -> None:
    with server_gw.client("police") as client:
        old = str(client.key_id)
        new = _new_key()
        client.register_next_key(new, operator="p-1")
        client.use_key(new)
        client.retire_key(old, operator="p-1")
        with pytest.raises(BadRequest) as twice:  # the same key again: registered already
            client.register_next_key(new, operator="p-1")
        assert twice.value.problem["field"] == "jwk"
    assert _keys(server_gw, "police") == {old: "retired", str(new.key_id): "active"}


def _registration(
    client: GatewayClient,
    *,
    jwk: Any,
    proof: Any,
    jti: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": client.department,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 60,
        "jti": jti or f"reg-{time.monotonic_ns()}",
        "operator": "admin-1",
        "jwk": jwk,
        "proof": proof,
        **extra,
    }
    return claims


def _hostile_cases() -> dict[str, Any]:
    """Each: (how the claims are made from (new key, jti), the field the problem names)."""
    other = _new_key()

    def proof_of(key: jwt.PyJWK, **payload: Any) -> str:
        kid = _public(key)["kid"]
        return jwt.encode(
            {"department": "market", "kid": kid, "aud": AUDIENCE, **payload},
            key.key,
            algorithm=key.algorithm_name,
            headers={"kid": kid, "typ": TokenType.KEY_PROOF},
        )

    def good_proof(key: jwt.PyJWK, jti: str) -> str:
        return key_proof(key, department="market", audience=AUDIENCE, jti=jti)

    return {
        "private part": (lambda k, j: {"jwk": _private(k), "proof": good_proof(k, j)}, "jwk"),
        "wrong alg": (
            lambda k, j: {"jwk": {**_public(k), "alg": "RS256"}, "proof": good_proof(k, j)},
            "jwk.alg",
        ),
        "HS alg": (
            lambda k, j: {"jwk": {**_public(k), "alg": "HS256"}, "proof": good_proof(k, j)},
            "jwk.alg",
        ),
        "kid not its thumbprint": (
            lambda k, j: {"jwk": {**_public(k), "kid": other.key_id}, "proof": good_proof(k, j)},
            "jwk.kid",
        ),
        "not a key": (lambda k, j: {"jwk": {"kty": "EC", "alg": "ES256"}, "proof": "x"}, "jwk"),
        "missing proof": (lambda k, j: {"jwk": _public(k)}, "proof"),
        "proof by another key": (
            lambda k, j: {"jwk": _public(k), "proof": good_proof(other, j)},
            "proof",
        ),
        "proof of another request": (
            lambda k, j: {"jwk": _public(k), "proof": good_proof(k, "another-jti")},
            "proof",
        ),
        "proof for another department": (
            lambda k, j: {
                "jwk": _public(k),
                "proof": key_proof(k, department="police", audience=AUDIENCE, jti=j),
            },
            "proof",
        ),
        "proof of another typ": (
            lambda k, j: {
                "jwk": _public(k),
                "proof": jwt.encode(
                    {"department": "market", "kid": k.key_id, "aud": AUDIENCE, "jti": j},
                    k.key,
                    algorithm="ES256",
                    headers={"typ": TokenType.SEAL_PROOF},
                ),
            },
            "proof",
        ),
        "proof by time, not by request": (
            lambda k, j: {"jwk": _public(k), "proof": proof_of(k, iat=int(time.time()))},
            "proof",
        ),
        "expiry in the past": (
            lambda k, j: {
                "jwk": _public(k),
                "proof": good_proof(k, j),
                "expires_at": 1_600_000_000,
            },
            "expires_at",
        ),
    }


@pytest.mark.parametrize("case", sorted(_hostile_cases()))
def test_hostile_registrations_are_refused_and_change_nothing(
    gw: InProcessGateway, case: str
) -> None:
    make, field = _hostile_cases()[case]
    before = _keys(gw, "market")
    with gw.client("market") as client:
        jti = f"hostile-{time.monotonic_ns()}"
        claims = _registration(client, jti=jti, jwk=None, proof=None)
        del claims["jwk"], claims["proof"]
        claims.update(make(_new_key(), jti))
        token = client.sign(claims, typ=TokenType.KEY_REGISTER)
        response = gw.http.post(
            "/v1/keys", content=token.encode(), headers={"Content-Type": "application/jwt"}
        )
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert _keys(gw, "market") == before
    (entry,) = gw.audit_rows("request_hash = :h", h=_sha256(token))
    assert entry["event"] == "key:change:refused"
    assert entry["department"] == "market"


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_a_key_registered_elsewhere_is_refused(gw: InProcessGateway) -> None:
    # Even with the other department's private key at hand (the demo's key store has it),
    # and so a good proof, its key cannot become this department's too.
    police = load_private_jwk(gw.keys_dir / "departments" / "police.private.jwk.json")
    with gw.client("market") as client, pytest.raises(BadRequest) as refused:
        client.register_next_key(police, operator="admin-1")
    assert refused.value.problem["field"] == "jwk"
    assert police.key_id not in _keys(gw, "market")


def test_an_administrator_registers_and_retires_a_department_key(gw: InProcessGateway) -> None:
    before = _keys(gw, "police")
    (old,) = [kid for kid, status in before.items() if status == "active"]
    new = _new_key("EdDSA")
    proof = key_proof(new, department="police", audience=AUDIENCE)
    url = "/v1/departments/police/keys"
    body = {"jwk": _public(new), "proof": proof, "reason": "年度轮换"}
    assert gw.http.post(url, json=body).status_code == 401
    registered = gw.http.post(url, json=body, headers=_admin(gw))
    assert registered.status_code == 200, registered.text
    assert registered.json()["kid"] == new.key_id
    again = gw.http.post(url, json=body, headers=_admin(gw))
    assert again.status_code == 400
    assert again.json()["field"] == "jwk"  # registered already
    stale = key_proof(new, department="police", audience=AUDIENCE, now=time.time() - 3600)
    late = gw.http.post(url, json={**body, "proof": stale}, headers=_admin(gw))
    assert late.status_code == 400
    assert late.json()["field"] == "proof"
    retired = gw.http.post(
        f"/v1/departments/police/keys/{old}/retire", json={"reason": "年度轮换"}, headers=_admin(gw)
    )
    assert retired.status_code == 200, retired.text
    assert _keys(gw, "police") == {old: "retired", new.key_id: "active"}
    client = GatewayClient(
        base_url=gw.url, department="police", key=new, audience=AUDIENCE, http=gw.http
    )
    assert client.register_next_key(_new_key(), operator="p-1").claims["status"] == "active"
    events = [
        (r["event"], r["operator"])
        for r in gw.audit_rows("department = 'police' AND event LIKE 'key:department:%'")
    ]
    assert ("key:department:registered", "admin") in events
    assert ("key:department:retired", "admin") in events
    assert ("key:department:refused", "admin") in events


def test_the_command_registers_and_retires_for_a_department(
    gw: InProcessGateway, tmp_path: Path
) -> None:
    env = {
        "GATEWAY_DATA_DIR": str(gw.data_dir),
        "GATEWAY_KEYS_DIR": str(gw.keys_dir),
        "GATEWAY_POLICIES_DIR": gw.settings.policies_dir,
        "GATEWAY_LOG_LEVEL": "warning",
    }
    new = _new_key()
    private = tmp_path / "hrss-next.private.jwk.json"
    private.write_text(json.dumps(_private(new)))
    made = gateway_command(
        "keys", "department", "proof", str(private), "--department", "hrss", env=env
    )
    assert made.returncode == 0, made.stderr
    proof_line, jwk_line = made.stdout.splitlines()
    (tmp_path / "proof.jws").write_text(proof_line)
    (tmp_path / "public.json").write_text(jwk_line)
    assert "d" not in json.loads(jwk_line)
    old = next(kid for kid, status in _keys(gw, "hrss").items() if status == "active")
    args = ("--jwk", str(tmp_path / "public.json"), "--proof", str(tmp_path / "proof.jws"))
    done = gateway_command(
        "keys", "department", "register", "hrss", *args, "--reason", "轮换", env=env
    )
    assert done.returncode == 0, done.stderr
    retired = gateway_command(
        # "--": a kid may begin with "-" (base64url), which would read as an option.
        "keys",
        "department",
        "retire",
        "--reason",
        "轮换",
        "--",
        "hrss",
        old,
        env=env,
    )
    assert retired.returncode == 0, retired.stderr
    assert _keys(gw, "hrss") == {old: "retired", new.key_id: "active"}
    last = gateway_command(
        "keys", "department", "retire", "--reason", "x", "--", "hrss", str(new.key_id), env=env
    )
    assert last.returncode == 1
    assert "only active key" in last.stderr


_members = st.dictionaries(
    st.sampled_from(["kty", "crv", "x", "y", "d", "alg", "kid", "use", "k", "n", "e", "zz"]),
    st.one_of(
        st.text(max_size=60),
        st.sampled_from(
            ["EC", "OKP", "P-256", "Ed25519", "SM2", "ES256", "EdDSA", "none", "HS256"]
        ),
        # Members of the wrong JSON types, unhashable ones too (a list as alg).
        st.none(),
        st.integers(),
        st.lists(st.text(max_size=3), max_size=2),
        st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(jwk=_members, proof=st.text(max_size=200))
def test_any_jwk_and_proof_is_refused_with_a_named_field(jwk: dict[str, Any], proof: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_new_key(
            jwk,
            department="market",
            proof=proof,
            audience=AUDIENCE,
            jti="j",
            expires_at=None,
            now=time.time(),
        )
    assert refused.value.field.split(".")[0] in {"jwk", "proof", "expires_at"}


def test_a_good_key_with_its_proof_passes_the_check() -> None:
    key = _new_key()
    jti = "j-1"
    checked = check_new_key(
        _public(key),
        department="market",
        proof=key_proof(key, department="market", audience=AUDIENCE, jti=jti),
        audience=AUDIENCE,
        jti=jti,
        expires_at=int(dt.datetime(2100, 1, 1, tzinfo=dt.UTC).timestamp()),
        now=time.time(),
    )
    assert checked.kid == key.key_id


def test_keys_and_seals_expiring_soon_raise_an_alert(gw: InProcessGateway) -> None:
    soon = int(time.time()) + 10 * 86400
    with gw.client("market") as client:
        expiring = client.register_next_key(_new_key(), operator="m-1", expires_at=soon)
    env = {
        "GATEWAY_DATA_DIR": str(gw.data_dir),
        "GATEWAY_KEYS_DIR": str(gw.keys_dir),
        "GATEWAY_POLICIES_DIR": gw.settings.policies_dir,
        "GATEWAY_LOG_LEVEL": "warning",
    }

    def expiry_alerts(**extra: str) -> list[dict[str, Any]]:
        shown = gateway_command("audit", "alerts", "--json", env={**env, **extra})
        assert shown.returncode == 0, shown.stderr
        return [
            a
            for a in json.loads(shown.stdout)["alerts"]
            if a["kind"] in ("key-expiring", "seal-expiring")
        ]

    # The default horizon (30 days): the key expiring in 10 days, nothing else of the demo.
    (alert,) = expiry_alerts()
    assert alert["kind"] == "key-expiring"
    assert alert["department"] == "market"
    assert alert["numbers"]["id"] == expiring.claims["kid"]
    assert 9.5 < alert["numbers"]["days_left"] <= 10
    assert "register its successor" in alert["why"]
    # A year ahead: the gateway's key too (its planned retirement is a year after init).
    far = {a["numbers"]["what"] for a in expiry_alerts(GATEWAY_KEY_EXPIRY_ALERT_DAYS="365")}
    assert far == {"department-key", "gateway-key"}  # the seals are valid for years yet
    # A seal whose validity ends in a week (this module's own database).
    week = (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).date()
    engine = sa.create_engine(gw.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE seals SET valid_until = :d WHERE seal_id = 'market-food-1'"),
                {"d": week},
            )
    finally:
        engine.dispose()
    (seal,) = [a for a in expiry_alerts() if a["kind"] == "seal-expiring"]
    assert seal["department"] == "market"
    assert seal["numbers"]["id"] == "market-food-1"
    assert 6 < seal["numbers"]["days_left"] <= 8
