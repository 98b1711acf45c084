"""`gateway serve` says where everything is only once it listens, and the command line finds
its home from any directory."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from tests.support import ROOT, GatewayProcess, free_port, gateway_command


def test_the_banner_names_the_console_the_docs_and_the_operator_tokens(
    embedded_gateway: GatewayProcess,
) -> None:
    assert embedded_gateway.log_path is not None
    log = embedded_gateway.log_path.read_text(encoding="utf-8")
    url = embedded_gateway.url
    assert f"Yiwang Gateway ready on {url}" in log
    assert f"console:   {url}/console" in log
    assert f"API docs:  {url}/docs" in log
    operators = embedded_gateway.keys_dir / "operators"
    assert str(operators / "admin.token") in log
    assert str(operators / "auditor.token") in log


def test_a_busy_port_is_a_clear_error_and_never_ready(tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(ROOT / "policies", home / "policies")
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen(1)
        result = gateway_command(
            "--home", str(home), "serve", "--port", str(port), "--no-init", env={}, process=True
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"127.0.0.1:{port} is in use by another process" in result.stderr
    assert "ready" not in result.stdout + result.stderr


def test_a_command_typed_elsewhere_uses_the_home(tmp_path: Path) -> None:
    # The home's policy set, read from a directory that holds none: `policy check` names
    # the files it checked under the home given by --home and by GATEWAY_HOME alike.
    home = tmp_path / "home"
    shutil.copytree(ROOT / "policies", home / "policies")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    by_option = gateway_command("--home", str(home), "policy", "check", env={}, cwd=elsewhere)
    by_variable = gateway_command("policy", "check", env={"GATEWAY_HOME": str(home)}, cwd=elsewhere)
    for result in (by_option, by_variable):
        assert result.returncode == 0, result.stdout + result.stderr
        assert str(home / "policies") in result.stdout + result.stderr
