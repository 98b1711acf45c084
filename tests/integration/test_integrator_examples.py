"""The Java and Go examples of ``docs/integrators/`` run for real against a served gateway:
each signs a lookup (ES256), sends it, verifies the answer against the JWKS and prints its
claims; an answer altered on the way (through a proxy) is rejected and nothing printed.
A missing toolchain is installed with apt-get when running as root (Debian's
``openjdk-17-jdk-headless``, ``golang-go``), as the browser tests install Chromium; otherwise
the tests skip with a message — except under ``CI=true``, where they fail."""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from tests.integration.test_lookups import COMPANY, QUERY
from tests.support import ROOT, GatewayProcess, apt_install, unavailable

# Room for apt-get to install a missing toolchain on the first test (an installed one takes
# seconds).
pytestmark = pytest.mark.timeout(900)

EXAMPLES = ROOT / "docs" / "integrators"
DEPARTMENT = "service-centre"  # an ES256 key in the demo district


#: The Debian package that brings each toolchain.
PACKAGES = {"java": "openjdk-17-jdk-headless", "go": "golang-go"}


def _toolchain(name: str) -> None:
    """Install ``name`` if it is missing and this can be done; skip (fail in CI) if not."""
    if shutil.which(name) is not None:
        return
    why = apt_install(PACKAGES[name])
    if why is not None:
        unavailable(name, why)
    if shutil.which(name) is None:
        unavailable(name, f"apt-get installed {PACKAGES[name]} but there is no {name}")


def _command(toolchain: str, tmp_path: Path, env: dict[str, str]) -> list[str]:
    """How to run the example: the JDK runs a source file; Go's is built first, so that the
    exit status is the program's own (``go run`` turns every failure into 1)."""
    if toolchain == "java":
        return ["java", str(EXAMPLES / "java" / "Lookup.java")]
    binary = tmp_path / "lookup"
    built = subprocess.run(
        ["go", "build", "-o", str(binary), str(EXAMPLES / "go" / "lookup.go")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=240,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return [str(binary)]


def _run(
    toolchain: str, url: str, gw: GatewayProcess, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    _toolchain(toolchain)
    env = {
        **os.environ,
        "GATEWAY_ID": "yiwang-gateway",
        # Go's caches in the test's own directory, not the caller's home.
        "GOCACHE": str(tmp_path / "gocache"),
        "GOPATH": str(tmp_path / "gopath"),
        # The reason is Chinese: Java decodes its arguments in the locale's charset.
        "LC_ALL": "C.UTF-8",
    }
    return subprocess.run(
        [
            *_command(toolchain, tmp_path, env),
            url,
            DEPARTMENT,
            str(gw.keys_dir / "departments" / f"{DEPARTMENT}.private.jwk.json"),
            QUERY["resource"],
            f"uscc:{COMPANY.uscc}",
            "name,status",
            QUERY["item"],
            QUERY["case"],
            QUERY["reason"],
            QUERY["operator"],
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=240,
        check=False,
    )


@pytest.mark.parametrize("toolchain", ["java", "go"])
def test_example_signs_sends_and_verifies_a_lookup(
    toolchain: str, embedded_gateway: GatewayProcess, tmp_path: Path
) -> None:
    done = _run(toolchain, embedded_gateway.url, embedded_gateway, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    claims = json.loads(done.stdout)
    assert claims["data"] == {"name": COMPANY.name, "status": COMPANY.status}
    assert claims["aud"] == DEPARTMENT
    assert claims["query"]["resource"] == QUERY["resource"]
    assert isinstance(claims["audit"]["index"], int)


class _AlteringProxy(http.server.BaseHTTPRequestHandler):
    """Forwards to the gateway, and changes one released value in the answer's payload
    (the signature left as it was): what a tampering middlebox would do."""

    upstream = ""

    def do_GET(self) -> None:
        self._answer(httpx.get(self.upstream + self.path, timeout=30))

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        forwarded = httpx.post(
            self.upstream + self.path,
            content=body,
            headers={"Content-Type": self.headers["Content-Type"]},
            timeout=30,
        )
        head, payload, sig = forwarded.text.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        claims["data"]["status"] = "注销"
        altered = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        self._answer(forwarded, f"{head}.{altered}.{sig}".encode())

    def _answer(self, upstream: httpx.Response, body: bytes | None = None) -> None:
        content = upstream.content if body is None else body
        self.send_response(upstream.status_code)
        self.send_header("Content-Type", upstream.headers["content-type"])
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, *_: object) -> None:
        pass


@pytest.mark.parametrize("toolchain", ["java", "go"])
def test_example_rejects_an_altered_answer(
    toolchain: str, embedded_gateway: GatewayProcess, tmp_path: Path
) -> None:
    handler = type("Proxy", (_AlteringProxy,), {"upstream": embedded_gateway.url})
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as proxy:
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        try:
            done = _run(
                toolchain, f"http://127.0.0.1:{proxy.server_port}", embedded_gateway, tmp_path
            )
        finally:
            proxy.shutdown()
    assert done.returncode == 2, done.stdout + done.stderr
    assert "bad signature" in done.stderr
    assert done.stdout == ""  # nothing it has not verified
