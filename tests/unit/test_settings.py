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


def test_each_group_carries_the_values_of_its_variables(tmp_path: Path) -> None:
    s = load_settings(
        {
            "GATEWAY_DATA_DIR": str(tmp_path),
            "GATEWAY_REDIS_URL": "redis://127.0.0.1:6390/2",
            "GATEWAY_REDIS_KEY_PREFIX": "t1",
            "GATEWAY_RATE_LIMIT": "7",
            "GATEWAY_TOKEN_LEEWAY": "3",
            "GATEWAY_BATCH_TOKEN_MAX_BYTES": "9000",
            "GATEWAY_AUDIT_TIMEOUT_SECONDS": "1.5",
            "GATEWAY_DB_BUSY_TIMEOUT_MS": "1234",
            "GATEWAY_READINESS_MIN_FREE_MB": "5",
            "GATEWAY_SOURCE_DEADLINE_SECONDS": "2.5",
            "GATEWAY_UPLOAD_MAX_CONCURRENT": "3",
            "GATEWAY_STATUS_LIST_TTL_SECONDS": "600",
            "GATEWAY_ALERT_RATE_FLOOR": "11",
            "GATEWAY_WORKERS": "3",
            "GATEWAY_DATABASE_URL": "postgresql+psycopg://u@127.0.0.1:5432/d",
        }
    )
    assert (s.cache.redis_url, s.cache.key_prefix, s.cache.rate_limit) == (
        "redis://127.0.0.1:6390/2",
        "t1",
        7,
    )
    assert (s.tokens.leeway, s.tokens.batch_max_bytes, s.tokens.audience) == (
        3,
        9000,
        "yiwang-gateway",
    )
    assert s.audit.timeout_seconds == 1.5
    assert s.database.busy_timeout_ms == 1234
    assert s.database.url == "postgresql+psycopg://u@127.0.0.1:5432/d"
    assert s.readiness.min_free_mb == 5
    assert s.lookups.source_deadline_seconds == 2.5
    assert s.uploads.max_concurrent == 3
    assert s.uploads.spool_dir == str(tmp_path / "uploads")
    assert s.licensing.status_list_ttl_seconds == 600
    assert s.alerts.rate_floor == 11
    assert s.server.workers == 3


# --- the home: relative directories mean the same wherever a command is typed ---------------


def _home_with_policies(path: Path) -> Path:
    (path / "policies").mkdir(parents=True)
    (path / "policies" / "departments.toml").write_text("", encoding="utf-8")
    return path


def test_gateway_home_holds_the_relative_directories(tmp_path: Path) -> None:
    home = _home_with_policies(tmp_path / "home")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    s = load_settings({"GATEWAY_HOME": str(home)}, cwd=elsewhere)
    assert s.home == str(home.resolve())
    assert s.policies_dir == str(home.resolve() / "policies")
    assert s.keys_dir == str(home.resolve() / "keys")
    assert s.data_dir == str(home.resolve() / "data")
    assert s.effective_database_url == f"sqlite:///{home.resolve() / 'data' / 'gateway.sqlite3'}"
    assert s.uploads.spool_dir == str(home.resolve() / "data" / "uploads")


def test_absolute_directories_stay_where_they_are(tmp_path: Path) -> None:
    home = _home_with_policies(tmp_path / "home")
    keys = tmp_path / "keys-elsewhere"
    s = load_settings({"GATEWAY_HOME": str(home), "GATEWAY_KEYS_DIR": str(keys)})
    assert s.keys_dir == str(keys)
    assert s.policies_dir == str(home.resolve() / "policies")


def test_without_gateway_home_a_directory_holding_policies_is_the_home(tmp_path: Path) -> None:
    home = _home_with_policies(tmp_path / "deployment")
    s = load_settings({}, cwd=home)
    assert s.home == str(home.resolve())


def test_elsewhere_the_source_checkout_is_the_home(tmp_path: Path) -> None:
    # No policy set in the current directory: the checkout the code runs from holds one.
    checkout = Path(__file__).resolve().parents[2]
    s = load_settings({}, cwd=tmp_path)
    assert s.home == str(checkout)
    assert s.policies_dir == str(checkout / "policies")


def test_a_gateway_home_that_is_not_a_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="GATEWAY_HOME='nowhere': not a directory"):
        load_settings({"GATEWAY_HOME": "nowhere"}, cwd=tmp_path)
