"""What docs/deployment.md promises: its example files are well formed and say only what the
gateway understands, nginx in front of a gateway does what the example says, and a primary
whose synchronous standby is gone releases nothing.

The unit files are checked by ``systemd-analyze verify`` (any warning is a failure) and
``systemd-analyze security``; the environment file's ``GATEWAY_*`` variables must be settings
and validate; nginx's body caps must be the gateway's; the nginx example is run, as it is
but for its addresses and certificate, in front of the session's gateway.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from litestar.testing import TestClient

import gateway.settings
from gateway.app.bootstrap import initialise
from gateway.app.factory import create_app
from gateway.core.protocol import TokenType
from gateway.licensing.claims import LICENCE_TOKEN_MAX_BYTES
from gateway.settings import load_settings, redis_cluster_address
from gateway.uploads.options import DEFAULT_MAX_BYTES
from tests.faults import private_postgres
from tests.inprocess import BASE_URL, InProcessGateway, district_settings
from tests.integration.test_lookups import COMPANY, QUERY
from tests.support import ROOT, GatewayProcess, apt_install, free_port, unavailable

DEPLOYMENT = ROOT / "docs" / "deployment"
UNITS = ["gateway.service", "gateway-witness.service", "gateway-witness.timer"]
NGINX_CONF = DEPLOYMENT / "nginx" / "yiwang-gateway.conf"
#: Where the examples expect the installation; the checks put this checkout's in its place.
INSTALLED_GATEWAY = "/opt/yiwang-gateway/.venv/bin/gateway"
JWT = {"Content-Type": "application/jwt"}
SETTINGS = {f.upper() for f in gateway.settings._FIELDS} | {"CONFIG"}


def _environment_file() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in (DEPLOYMENT / "gateway.env").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, line
            values[name.strip()] = value.strip()
    return values


# --- the files -------------------------------------------------------------------------------


def test_the_unit_files_pass_systemd_analyze(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        unavailable("systemd-analyze", "not installed")
    gateway_command = Path(sys.executable).with_name("gateway")
    for name in UNITS:
        text = (DEPLOYMENT / name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(text.replace(INSTALLED_GATEWAY, str(gateway_command)))
    done = subprocess.run(
        [str(analyze), "verify", *(str(tmp_path / n) for n in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # verify exits 0 on an unknown or misspelt directive, but says so: nothing may be said.
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")
    security = subprocess.run(
        [str(analyze), "security", "--offline=yes", str(tmp_path / "gateway.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    level = re.search(r"Overall exposure level for gateway\.service: ([0-9.]+)", security.stdout)
    assert level is not None, security.stdout[-500:] + security.stderr[-500:]
    assert float(level.group(1)) <= 2.0  # systemd's "OK" band: the hardening is in force


def test_the_service_runs_serve_without_init_from_the_environment_file() -> None:
    unit = (DEPLOYMENT / "gateway.service").read_text(encoding="utf-8")
    assert f"ExecStart={INSTALLED_GATEWAY} serve --no-init\n" in unit
    assert "EnvironmentFile=/etc/yiwang-gateway/gateway.env\n" in unit
    witness = (DEPLOYMENT / "gateway-witness.service").read_text(encoding="utf-8")
    assert f"ExecStart={INSTALLED_GATEWAY} audit witness https://" in witness
    assert "OnUnitActiveSec=" in (DEPLOYMENT / "gateway-witness.timer").read_text()


def test_every_gateway_variable_of_the_deployment_docs_is_a_setting_and_validates(
    tmp_path: Path,
) -> None:
    mentioned: set[str] = set()
    for path in [ROOT / "docs" / "deployment.md", *DEPLOYMENT.rglob("*")]:
        if path.is_file():
            mentioned |= set(re.findall(r"\bGATEWAY_([A-Z0-9_]+)", path.read_text("utf-8")))
    assert mentioned
    assert mentioned <= SETTINGS, mentioned - SETTINGS
    env = {k: v for k, v in _environment_file().items() if k.startswith("GATEWAY_")}
    assert {k.removeprefix("GATEWAY_") for k in env} <= SETTINGS
    # The values are valid together (the home is the one thing that must exist: here, a
    # stand-in), and they make the server setup on a Redis Cluster.
    s = load_settings({**env, "GATEWAY_HOME": str(tmp_path)})
    assert not s.embedded
    assert s.workers > 1
    assert s.effective_database_url.startswith("postgresql+psycopg://")
    address = redis_cluster_address(s.redis_url)
    assert address is not None
    assert len(address.nodes) == 3


def _nginx_sizes() -> dict[str, int]:
    """``client_max_body_size`` of the server (key ``""``) and of each exact location."""
    sizes: dict[str, int] = {}
    location = ""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    for line in NGINX_CONF.read_text(encoding="utf-8").splitlines():
        words = line.split()
        if words[:1] == ["location"]:
            location = words[-2]
        elif words[:1] == ["}"] and line.startswith("    }"):
            location = ""
        elif words[:1] == ["client_max_body_size"]:
            value = words[1].rstrip(";")
            sizes[location] = int(value[:-1]) * units[value[-1]]
    return sizes


def test_the_load_balancers_body_caps_are_the_gateways() -> None:
    env = _environment_file()
    body_max = int(env["GATEWAY_BODY_MAX_BYTES"])
    batch_max = int(env["GATEWAY_BATCH_TOKEN_MAX_BYTES"])
    # The gateway's own caps (gateway.http.signed: a larger token's cap + 1 KiB).
    assert _nginx_sizes() == {
        "": body_max,
        "/v1/lookups:batch": max(body_max, batch_max + 1024),
        "/v1/licences": max(body_max, LICENCE_TOKEN_MAX_BYTES + 1024),
        "/v1/verifications": max(body_max, LICENCE_TOKEN_MAX_BYTES + 1024),
        "/v1/uploads/": DEFAULT_MAX_BYTES,
    }


# --- nginx in front of a gateway -------------------------------------------------------------


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for the load balancer on 127.0.0.1, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway.district.example")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _nginx_binary() -> str:
    found = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if found is None:
        why = apt_install("nginx")
        if why:
            unavailable("nginx", why)
        found = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
        assert found is not None
    return found


@dataclass(frozen=True)
class LoadBalancer:
    """The example nginx, running: where it answers and what it wrote."""

    url: str  # https://127.0.0.1:port
    tls: ssl.SSLContext  # trusts its certificate
    http_port: int  # where it redirects plain HTTP
    directory: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.tls, timeout=30)

    def access_log(self) -> str:
        return (self.directory / "access.log").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def load_balancer(
    tmp_path_factory: pytest.TempPathFactory, embedded_gateway: GatewayProcess
) -> Iterator[LoadBalancer]:
    """The example nginx in front of the session's gateway: its upstream servers, listen
    addresses, certificate and log path replaced, nothing else."""
    binary = _nginx_binary()
    root = tmp_path_factory.mktemp("nginx")
    cert, key = _self_signed(root)
    https_port, http_port = free_port(), free_port()
    text = NGINX_CONF.read_text(encoding="utf-8")
    text = re.sub(
        r"server 10\.20\.0\.1[123]:8080", f"server 127.0.0.1:{embedded_gateway.port}", text
    )
    text = text.replace("listen 443 ssl", f"listen 127.0.0.1:{https_port} ssl")
    text = text.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    text = text.replace("/etc/nginx/tls/gateway.district.example.crt", str(cert))
    text = text.replace("/etc/nginx/tls/gateway.district.example.key", str(key))
    text = text.replace("/var/log/nginx/yiwang-gateway.access.log", str(root / "access.log"))
    (root / "yiwang-gateway.conf").write_text(text, encoding="utf-8")
    # As root, nginx's workers would run as nobody, who cannot enter the temporary directory.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {root / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (root / "nginx.conf").write_text(
        f"{user}pid {root / 'nginx.pid'};\nerror_log {root / 'error.log'} warn;\n"
        f"events {{}}\nhttp {{\n{temp}\n    include {root / 'yiwang-gateway.conf'};\n}}\n",
        encoding="utf-8",
    )
    command = [binary, "-p", str(root), "-c", str(root / "nginx.conf")]
    checked = subprocess.run(
        [*command, "-t"], capture_output=True, text=True, timeout=30, check=False
    )
    assert checked.returncode == 0, checked.stderr
    assert "[warn]" not in checked.stderr, checked.stderr
    proc = subprocess.Popen(
        [*command, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", https_port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield LoadBalancer(
            url=f"https://127.0.0.1:{https_port}",
            tls=ssl.create_default_context(cafile=str(cert)),
            http_port=http_port,
            directory=root,
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_nginx_passes_readiness_and_request_ids_and_answers_signed_lookups(
    load_balancer: LoadBalancer, embedded_gateway: GatewayProcess
) -> None:
    with load_balancer.client() as lb:
        ready = lb.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        assert re.fullmatch(r"[0-9a-f]{32}", ready.headers["X-Request-Id"])  # made by nginx
        mine = f"req-{uuid.uuid4().hex[:12]}"
        echoed = lb.get("/healthz", headers={"X-Request-Id": mine})
        assert echoed.headers.get_list("X-Request-Id") == [mine]  # once, whoever echoes it
        too_long = "x" * 65
        replaced = lb.get("/healthz", headers={"X-Request-Id": too_long}).headers["X-Request-Id"]
        assert re.fullmatch(r"[0-9a-f]{32}", replaced)
        with embedded_gateway.client("service-centre") as c:
            token = c.lookup_token(**{**QUERY, "fields": ["name"]})
            sent = lb.post("/v1/lookups", content=token, headers=JWT)
            assert sent.status_code == 200, sent.text
            answer = c.verify_answer(sent.text, request_token=token, typ=TokenType.LOOKUP_RESULT)
    assert answer.data == {"name": COMPANY.name}
    assert f"request_id={mine}" in load_balancer.access_log()


def test_nginx_refuses_a_body_over_the_gateways_cap_with_the_gateways_problem(
    load_balancer: LoadBalancer,
) -> None:
    with load_balancer.client() as lb:
        too_large = lb.post("/v1/lookups", content=b"x" * (70 * 1024), headers=JWT)
        assert too_large.status_code == 413
        assert too_large.headers["Content-Type"].startswith("application/problem+json")
        problem = too_large.json()
        assert problem["type"] == "urn:yiwang:problem:payload-too-large"
        assert "audit_index" not in problem  # nginx's: the gateway never saw it
        # The same size is within a sealed licence's cap: it reaches the gateway, whose
        # answer to a body that is no token is its opaque (and audited) 401.
        licence = lb.post("/v1/licences", content=b"x" * (70 * 1024), headers=JWT)
        assert licence.status_code == 401
        assert "audit_index" in licence.json()
    with httpx.Client(timeout=10) as plain:
        redirect = plain.get(f"http://127.0.0.1:{load_balancer.http_port}/readyz")
    assert redirect.status_code == 308
    assert redirect.headers["Location"].startswith("https://")


# --- PostgreSQL without its synchronous standby ----------------------------------------------


def _standby(admin: sa.Engine, names: str | None) -> None:
    """Name the synchronous standby the primary waits for (``None``: none, commits return
    at the primary's own flush)."""
    with admin.connect() as conn:
        if names is None:
            conn.execute(sa.text("ALTER SYSTEM RESET synchronous_standby_names"))
        else:
            conn.execute(sa.text(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'"))
        conn.execute(sa.text("SELECT pg_reload_conf()"))


def test_without_its_synchronous_standby_the_primary_releases_nothing(
    tmp_path: Path, keys_dir: Path
) -> None:
    """A standby named in ``synchronous_standby_names`` that is not there (lost, or never
    connected) holds every commit at the primary: the entry is not durable in the promised
    sense, so nothing is released — 503 within the audit wait, readiness down — until the
    standby is back; then the held entries land, each corrected if its answer was never
    handed over."""
    with private_postgres() as primary:
        admin = sa.create_engine(primary.url, isolation_level="AUTOCOMMIT")
        settings = district_settings(
            tmp_path,
            keys_dir,
            database_url=primary.url,
            audit_timeout_seconds=1.0,
            audit_commit_grace_seconds=0.5,
            readiness_timeout_seconds=0.5,
        )
        initialise(settings, demo=True)
        with (
            TestClient(create_app(settings), base_url=BASE_URL) as http,
            InProcessGateway(settings=settings, http=http).client("service-centre") as c,
        ):
            gw = InProcessGateway(settings=settings, http=http)

            def send(token: str) -> httpx.Response:
                return gw.http.post("/v1/lookups", content=token, headers=JWT)

            assert send(c.lookup_token(**{**QUERY, "fields": ["name"]})).status_code == 200
            _standby(admin, "standby_a")  # synchronous_commit is on: the default
            held = c.lookup_token(**{**QUERY, "fields": ["name"]})
            started = time.monotonic()
            refused = send(held)
            waited = time.monotonic() - started
            assert refused.status_code == 503
            assert waited < 1.0 + 0.5 + 1.0  # the audit wait and its grace, and a margin
            ready = gw.http.get("/readyz")
            assert (ready.status_code, ready.json()["checks"]["database"]) == (503, False)
            _standby(admin, None)  # the standby is back (or no longer waited for)
            deadline = time.monotonic() + 10
            while send(c.lookup_token(**{**QUERY, "fields": ["name"]})).status_code != 200:
                assert time.monotonic() < deadline, "lookups did not come back"
                time.sleep(0.1)
        # The held request's entry landed after its 503: a correction says it was withheld.
        with admin.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT idx, event, withholds FROM audit_entries WHERE request_hash = :h"),
                {"h": hashlib.sha256(held.encode()).hexdigest()},
            ).all()
            released = [r.idx for r in rows if r.event == "lookup:record:released"]
            withheld = conn.execute(
                sa.text("SELECT count(*) FROM audit_entries WHERE withholds = ANY(:ids)"),
                {"ids": released},
            ).scalar_one()
        admin.dispose()
        assert released, rows
        assert withheld == len(released)
