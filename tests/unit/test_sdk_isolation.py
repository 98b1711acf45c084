"""The department SDK stands on its own: importing and using it loads no server machinery.

A department system installs the SDK next to its own code; it must not drag in the gateway's
web framework, ORM, cache client, migrations, templates or server. A fresh interpreter imports
:mod:`gateway.sdk`, builds a client from a generated key file and signs a lookup token offline
(no gateway is running), then reports what it loaded. ``lint-imports`` checks the same rule
statically; this checks what really happens at run time (including what third-party packages
pull in).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Top-level packages the SDK must never load.
FORBIDDEN = ("litestar", "sqlalchemy", "redis", "alembic", "jinja2", "uvicorn")
#: The only parts of this project the SDK may load (besides the ``gateway`` package itself).
ALLOWED_OWN = ("gateway.errors", "gateway.core", "gateway.sdk")

_SCRIPT = textwrap.dedent(
    """
    import json, sys, tempfile
    from pathlib import Path

    import gateway.sdk as sdk
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    key = ec.generate_private_key(ec.SECP256R1())
    private = {**ECAlgorithm.to_jwk(key, as_dict=True), "alg": "ES256"}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dept.private.jwk.json"
        path.write_text(json.dumps(private))
        client = sdk.GatewayClient.from_key_file(
            base_url="http://127.0.0.1:9", department="service-centre", key_path=path
        )
    token = client.lookup_token(
        resource="enterprise-registration", subject=("uscc", "91350100M000100Y43"),
        fields=["name"], item="000201002000", case="BJ-2026-000001",
        reason="check", operator="clerk-017",
    )
    client.close()
    claims = jwt.decode(
        token, key.public_key(), algorithms=["ES256"], audience="yiwang-gateway"
    )
    print(json.dumps({
        "sdk": sdk.__file__,
        "typ": jwt.get_unverified_header(token)["typ"],
        "claims": claims,
        "modules": sorted(sys.modules),
    }))
    """
)


def _allowed(module: str) -> bool:
    return module == "gateway" or any(
        module == a or module.startswith(f"{a}.") for a in ALLOWED_OWN
    )


def _run_sdk() -> dict[str, object]:
    # This checkout first, whatever else the environment puts on the path.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_the_sdk_signs_offline_without_loading_server_code() -> None:
    result = _run_sdk()
    # The worktree's code, not some installed copy, is what was checked.
    assert Path(str(result["sdk"])).resolve().is_relative_to(ROOT / "gateway" / "sdk")
    assert result["typ"] == "yiwang-lookup+jwt"
    claims = result["claims"]
    assert isinstance(claims, dict)
    assert claims["iss"] == "service-centre"
    assert claims["query"]["resource"] == "enterprise-registration"

    modules = result["modules"]
    assert isinstance(modules, list)
    loaded = {str(m).split(".")[0] for m in modules}
    assert not loaded & set(FORBIDDEN), sorted(loaded & set(FORBIDDEN))
    own = sorted(
        m
        for m in map(str, modules)
        if m.split(".")[0] in ("gateway", "adapters") and not _allowed(m)
    )
    assert not own, f"the SDK loaded server modules: {own}"
