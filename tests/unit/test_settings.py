"""Settings are validated once, and every bad value is named by its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigurationError
from gateway.settings import load_settings


def test_defaults_are_the_embedded_setup() -> None:
    s = load_settings({})
    assert s.embedded
    assert s.effective_database_url.startswith("sqlite:///")
    assert s.workers == 1


def test_environment_values_are_converted() -> None:
    s = load_settings({"GATEWAY_PORT": "9000", "GATEWAY_AUDIT_TIMEOUT_SECONDS": "2.5"})
    assert s.port == 9000
    assert s.audit_timeout_seconds == 2.5


def test_every_bad_value_is_reported_at_once() -> None:
    with pytest.raises(ConfigurationError) as err:
        load_settings(
            {"GATEWAY_PORT": "eighty", "GATEWAY_TOKEN_LEEWAY": "300", "GATEWAY_NO_SUCH": "1"}
        )
    text = "\n".join(err.value.problems)
    assert "GATEWAY_PORT='eighty'" in text
    assert "GATEWAY_TOKEN_LEEWAY='300'" in text
    assert "GATEWAY_NO_SUCH: not a known setting" in text


def test_token_lifetime_cannot_exceed_five_minutes() -> None:
    with pytest.raises(ConfigurationError, match="GATEWAY_TOKEN_MAX_LIFETIME"):
        load_settings({"GATEWAY_TOKEN_MAX_LIFETIME": "600"})


def test_more_workers_need_shared_state() -> None:
    with pytest.raises(ConfigurationError) as err:
        load_settings({"GATEWAY_WORKERS": "4"})
    text = "\n".join(err.value.problems)
    assert "GATEWAY_REDIS_URL" in text
    assert "GATEWAY_DATABASE_URL" in text
    ok = load_settings(
        {
            "GATEWAY_WORKERS": "4",
            "GATEWAY_REDIS_URL": "redis://127.0.0.1:6379/0",
            "GATEWAY_DATABASE_URL": "postgresql+psycopg://u@127.0.0.1/db",
        }
    )
    assert ok.workers == 4


def test_toml_file_with_environment_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text('port = 7000\ngateway_id = "district-a"\n')
    s = load_settings({"GATEWAY_CONFIG": str(cfg), "GATEWAY_PORT": "7001"})
    assert (s.port, s.gateway_id) == (7001, "district-a")
    assert load_settings({"GATEWAY_CONFIG": str(cfg)}, overrides={"port": 7002}).port == 7002
