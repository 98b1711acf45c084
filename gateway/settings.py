"""Settings: read once at start from ``GATEWAY_*`` variables and an optional TOML file.

Every value is validated together, and all bad values are reported at once, each named by
the variable that set it. After :func:`load_settings` returns, nothing reads the environment.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec

from gateway.errors import ConfigurationError

__all__ = ["Settings", "load_settings"]

ENV_PREFIX = "GATEWAY_"

_Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
_Positive = Annotated[int, msgspec.Meta(ge=1)]


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Validated configuration. See the README's configuration table for each setting."""

    host: str = "127.0.0.1"
    port: _Port = 8080
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    gateway_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] = "yiwang-gateway"
    data_dir: str = "data"
    database_url: str = ""  # empty: SQLite file in data_dir
    redis_url: str = ""  # empty: in-process caches (one worker only)
    redis_key_prefix: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,32}$")] = "yiwang"
    policies_dir: str = "policies"
    keys_dir: str = "keys"
    token_max_lifetime: Annotated[int, msgspec.Meta(ge=10, le=300)] = 300
    token_leeway: Annotated[int, msgspec.Meta(ge=0, le=30)] = 30
    token_max_bytes: Annotated[int, msgspec.Meta(ge=512, le=8192)] = 8192
    body_max_bytes: Annotated[int, msgspec.Meta(ge=1024, le=16 * 1024 * 1024)] = 64 * 1024
    answer_lifetime: Annotated[int, msgspec.Meta(ge=10, le=86400)] = 300
    rate_limit: _Positive = 6000
    rate_window_seconds: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 60
    batch_max_queries: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    batch_token_max_bytes: Annotated[int, msgspec.Meta(ge=8192, le=4 * 1024 * 1024)] = 256 * 1024
    upload_max_concurrent: Annotated[int, msgspec.Meta(ge=1, le=32)] = 2
    upload_spool_dir: str = ""  # empty: data_dir/uploads
    # How long offline verifiers may trust a fetched status list / seal registry snapshot:
    # a suspension reaches them within this time.
    status_list_ttl_seconds: Annotated[int, msgspec.Meta(ge=60, le=7 * 86400)] = 3600
    seal_registry_ttl_seconds: Annotated[int, msgspec.Meta(ge=60, le=30 * 86400)] = 86400
    source_deadline_seconds: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10.0
    audit_batch_max: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 512
    audit_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0
    db_busy_timeout_ms: Annotated[int, msgspec.Meta(ge=100, le=60000)] = 3000
    db_idle_in_transaction_ms: Annotated[int, msgspec.Meta(ge=500, le=60000)] = 2000
    audit_commit_grace_seconds: Annotated[float, msgspec.Meta(gt=0, le=120)] = 2.0
    readiness_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=30)] = 2.0
    readiness_min_free_mb: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 64
    worker_healthcheck_seconds: Annotated[int, msgspec.Meta(ge=1, le=600)] = 30
    audit_hmac_key: str = ""  # hex; empty: keys_dir/audit-hmac.key, made by `gateway init`
    log_level: str = "info"
    # Security officers' alerts (gateway.oversight.alerts): a department reading more distinct
    # subjects in an hour than factor × its usual rate (median over its active hours in the
    # baseline days) and at least the floor; token failures of one department within a
    # window; reads outside the district's working hours (UTC+8).
    alert_rate_factor: Annotated[float, msgspec.Meta(gt=1, le=1000)] = 3.0
    alert_rate_floor: _Positive = 20
    alert_baseline_days: Annotated[int, msgspec.Meta(ge=1, le=90)] = 7
    alert_token_failures: Annotated[int, msgspec.Meta(ge=2, le=100000)] = 5
    alert_token_window_seconds: Annotated[int, msgspec.Meta(ge=10, le=86400)] = 600
    alert_working_hours: Annotated[
        str, msgspec.Meta(pattern=r"^[0-2][0-9]:[0-5][0-9]-[0-2][0-9]:[0-5][0-9]$")
    ] = "08:00-18:00"
    alert_working_days: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{3}(,[a-z]{3})*$")] = (
        "mon,tue,wed,thu,fri"  # checked day by day at start
    )

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to the embedded SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'gateway.sqlite3'}"

    @property
    def embedded(self) -> bool:
        """Whether caches live in this process (no Redis configured)."""
        return not self.redis_url


_FIELDS = {f.name for f in msgspec.structs.fields(Settings)}


def load_settings(
    environ: Mapping[str, str] | None = None, *, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Build :class:`Settings` from the environment (and ``GATEWAY_CONFIG`` TOML file).

    Precedence: ``overrides`` (command-line flags) > environment > TOML file > defaults.
    Raises :class:`ConfigurationError` listing every bad value by its variable name.
    """
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    problems: list[str] = []
    config_file = env.get(ENV_PREFIX + "CONFIG")
    if config_file:
        try:
            raw.update(tomllib.loads(Path(config_file).read_text(encoding="utf-8")))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            problems.append(f"GATEWAY_CONFIG={config_file}: {exc}")
    for name, value in env.items():
        if name.startswith(ENV_PREFIX) and name != ENV_PREFIX + "CONFIG":
            key = name[len(ENV_PREFIX) :].lower()
            if key in _FIELDS:
                raw[key] = value
            else:
                problems.append(f"{name}: not a known setting")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})

    # Convert one field at a time so that every bad value is reported, not just the first.
    defaults = Settings()
    for key, value in list(raw.items()):
        if key not in _FIELDS:
            problems.append(f"{key}: not a known setting")
            raw.pop(key)
            continue
        try:
            msgspec.convert(
                {**msgspec.structs.asdict(defaults), key: value}, Settings, strict=False
            )
        except msgspec.ValidationError as exc:
            reason = str(exc).split(" - at ")[0]
            problems.append(f"{ENV_PREFIX}{key.upper()}={value!r}: {reason}")
            raw.pop(key)
    if problems:
        raise ConfigurationError(problems)
    settings = msgspec.convert(raw, Settings, strict=False)
    _check_consistency(settings, problems)
    if problems:
        raise ConfigurationError(problems)
    return settings


def _check_consistency(s: Settings, problems: list[str]) -> None:
    if s.workers > 1 and s.embedded:
        problems.append(
            f"GATEWAY_WORKERS={s.workers}: more than one worker needs GATEWAY_REDIS_URL — "
            "the replay cache and rate limits of the embedded setup live in one process"
        )
    if s.workers > 1 and s.effective_database_url.startswith("sqlite"):
        problems.append(
            f"GATEWAY_WORKERS={s.workers}: more than one worker needs GATEWAY_DATABASE_URL "
            "(PostgreSQL); the embedded SQLite file serves one process"
        )
    if s.database_url and not s.database_url.split(":", 1)[0].startswith(("sqlite", "postgresql")):
        problems.append("GATEWAY_DATABASE_URL: must be an sqlite:/// or postgresql:// URL")
    if s.redis_url and not s.redis_url.startswith(("redis://", "rediss://", "unix://")):
        problems.append("GATEWAY_REDIS_URL: must be a redis://, rediss:// or unix:// URL")
    if s.audit_hmac_key:
        try:
            if len(bytes.fromhex(s.audit_hmac_key)) < 32:
                problems.append("GATEWAY_AUDIT_HMAC_KEY: must be at least 32 bytes (64 hex)")
        except ValueError:
            problems.append("GATEWAY_AUDIT_HMAC_KEY: must be hexadecimal")
    if s.log_level.lower() not in {"debug", "info", "warning", "error", "critical"}:
        problems.append(f"GATEWAY_LOG_LEVEL={s.log_level!r}: not a log level")
