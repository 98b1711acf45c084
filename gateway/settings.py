"""Settings: read once at start from ``GATEWAY_*`` variables and an optional TOML file.

Every value is validated together, and all bad values are reported at once, each named by
the variable that set it. After :func:`load_settings` returns, nothing reads the environment.

The gateway's **home** is the directory its relative paths (policies, keys, data, upload
spool) are taken from, so that a command means the same wherever it is typed:
``GATEWAY_HOME`` (``gateway --home DIR``) when set; else the current directory when it holds
a policy set; else the source checkout the gateway runs from (``make run``'s clone) when it
holds one; else the current directory.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote

import msgspec

from gateway.errors import ConfigurationError

__all__ = [
    "HOME_MARKER",
    "AlertSettings",
    "AuditSettings",
    "CacheSettings",
    "DatabaseSettings",
    "KeySettings",
    "LicensingSettings",
    "LookupSettings",
    "ReadinessSettings",
    "RedisClusterAddress",
    "ServerSettings",
    "Settings",
    "TokenSettings",
    "UploadSettings",
    "find_home",
    "load_settings",
    "redis_cluster_address",
]

ENV_PREFIX = "GATEWAY_"

_Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
_Positive = Annotated[int, msgspec.Meta(ge=1)]


# --- the settings by concern -----------------------------------------------------------------
# The environment stays flat (``GATEWAY_*``, one variable a setting); the composition root hands
# each service only the group it needs.


class ServerSettings(msgspec.Struct, frozen=True, kw_only=True):
    host: str
    port: int
    workers: int
    worker_healthcheck_seconds: int
    log_level: str
    log_format: str  # text or json
    access_log: bool
    metrics_port: int  # 0: /metrics on the main port only
    metrics_refresh_seconds: float


class DatabaseSettings(msgspec.Struct, frozen=True, kw_only=True):
    url: str  # the effective URL (the embedded SQLite file when none is set)
    busy_timeout_ms: int
    idle_in_transaction_ms: int


class CacheSettings(msgspec.Struct, frozen=True, kw_only=True):
    redis_url: str  # empty: in-process caches
    key_prefix: str
    rate_limit: int
    rate_window_seconds: int


class TokenSettings(msgspec.Struct, frozen=True, kw_only=True):
    audience: str  # the gateway's id
    max_lifetime: int
    leeway: int
    max_bytes: int
    batch_max_bytes: int
    body_max_bytes: int
    answer_lifetime: int


class AuditSettings(msgspec.Struct, frozen=True, kw_only=True):
    batch_max: int
    linger_seconds: float  # the longest a commit waits for more entries under load
    timeout_seconds: float
    commit_grace_seconds: float
    checkpoint_seconds: float  # the longest an entry stays outside a signed checkpoint
    hmac_key: str  # hex; empty: the key file in keys_dir
    subject_keying: str  # hmac-sha256 or hmac-sm3 (new entries; old ones keep theirs)


class ReadinessSettings(msgspec.Struct, frozen=True, kw_only=True):
    timeout_seconds: float
    min_free_mb: int


class LookupSettings(msgspec.Struct, frozen=True, kw_only=True):
    batch_max_queries: int
    source_deadline_seconds: float


class UploadSettings(msgspec.Struct, frozen=True, kw_only=True):
    max_concurrent: int
    spool_dir: str  # resolved: data_dir/uploads when none is set


class LicensingSettings(msgspec.Struct, frozen=True, kw_only=True):
    status_list_ttl_seconds: int
    seal_registry_ttl_seconds: int


class AlertSettings(msgspec.Struct, frozen=True, kw_only=True):
    rate_factor: float
    rate_floor: int
    baseline_days: int
    token_failures: int
    token_window_seconds: int
    working_hours: str
    working_days: str
    expiry_days: int  # GATEWAY_KEY_EXPIRY_ALERT_DAYS: keys and seals expiring this soon


class KeySettings(msgspec.Struct, frozen=True, kw_only=True):
    jwks_max_age_seconds: int
    signing_key_lifetime_days: int
    expiry_alert_days: int
    answer_algorithm: str  # ES256 or SM2: what the gateway signs with by default
    answers_follow_department_key: bool  # an SM2 department's answers in SM2


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Validated configuration. See the README's configuration table for each setting."""

    host: str = "127.0.0.1"
    port: _Port = 8080
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    gateway_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] = "yiwang-gateway"
    home: str = ""  # empty: found by find_home; the relative directories below are under it
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
    # Under load the writer waits up to this long after an entry for more to join its commit
    # (0: never); an entry that comes alone is written at once (gateway.audit.log).
    audit_linger_ms: Annotated[float, msgspec.Meta(ge=0, le=50)] = 1.0
    audit_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0
    db_busy_timeout_ms: Annotated[int, msgspec.Meta(ge=100, le=60000)] = 3000
    db_idle_in_transaction_ms: Annotated[int, msgspec.Meta(ge=500, le=60000)] = 2000
    audit_commit_grace_seconds: Annotated[float, msgspec.Meta(gt=0, le=120)] = 2.0
    audit_checkpoint_seconds: Annotated[float, msgspec.Meta(ge=0.1, le=3600)] = 1.0
    readiness_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=30)] = 2.0
    readiness_min_free_mb: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 64
    worker_healthcheck_seconds: Annotated[int, msgspec.Meta(ge=1, le=600)] = 30
    audit_hmac_key: str = ""  # hex; empty: keys_dir/audit-hmac.key, made by `gateway init`
    # How new audit entries key their subject: HMAC-SHA256 or HMAC-SM3 (国密, docs/sm2.md).
    # Each entry's tag says which (an SM3 tag is written "sm3:<hex>"), so switching leaves
    # every older entry findable.
    audit_subject_keying: Annotated[str, msgspec.Meta(pattern=r"^hmac-(sha256|sm3)$")] = (
        "hmac-sha256"
    )
    log_level: str = "info"
    # Operations (gateway.telemetry): log lines as text or JSON, the access log (one line per
    # request), Prometheus metrics at /metrics behind the metrics operator token, and on a
    # separate port of their own when one is set (0: none).
    log_format: Annotated[str, msgspec.Meta(pattern=r"^(text|json)$")] = "text"
    access_log: bool = True
    metrics_port: _Port = 0
    metrics_refresh_seconds: Annotated[float, msgspec.Meta(ge=0.5, le=3600)] = 5.0
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
    # Key rotation (gateway.registry.gateway_keys): how long verifiers may cache the JWKS
    # (its Cache-Control max-age; a next key is published at least twice that long before it
    # signs), a new gateway key's planned lifetime, and how many days ahead an expiring key
    # or seal raises an officers' alert.
    jwks_max_age_seconds: Annotated[int, msgspec.Meta(ge=0, le=7 * 86400)] = 300
    signing_key_lifetime_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 365
    key_expiry_alert_days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 30
    # What the gateway signs with (docs/sm2.md): its answers, receipts, checkpoints, status
    # lists and registry snapshots, with the active key of this algorithm; and whether an
    # answer to a department follows the algorithm of the department's request key where
    # the gateway has an active key of it (SM2 → SM2, ES256 → ES256; EdDSA: the above).
    answer_algorithm: Annotated[str, msgspec.Meta(pattern=r"^(ES256|SM2)$")] = "ES256"
    answers_follow_department_key: bool = True

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

    @property
    def server(self) -> ServerSettings:
        return ServerSettings(
            host=self.host,
            port=self.port,
            workers=self.workers,
            worker_healthcheck_seconds=self.worker_healthcheck_seconds,
            log_level=self.log_level,
            log_format=self.log_format,
            access_log=self.access_log,
            metrics_port=self.metrics_port,
            metrics_refresh_seconds=self.metrics_refresh_seconds,
        )

    @property
    def database(self) -> DatabaseSettings:
        return DatabaseSettings(
            url=self.effective_database_url,
            busy_timeout_ms=self.db_busy_timeout_ms,
            idle_in_transaction_ms=self.db_idle_in_transaction_ms,
        )

    @property
    def cache(self) -> CacheSettings:
        return CacheSettings(
            redis_url=self.redis_url,
            key_prefix=self.redis_key_prefix,
            rate_limit=self.rate_limit,
            rate_window_seconds=self.rate_window_seconds,
        )

    @property
    def tokens(self) -> TokenSettings:
        return TokenSettings(
            audience=self.gateway_id,
            max_lifetime=self.token_max_lifetime,
            leeway=self.token_leeway,
            max_bytes=self.token_max_bytes,
            batch_max_bytes=self.batch_token_max_bytes,
            body_max_bytes=self.body_max_bytes,
            answer_lifetime=self.answer_lifetime,
        )

    @property
    def audit(self) -> AuditSettings:
        return AuditSettings(
            batch_max=self.audit_batch_max,
            linger_seconds=self.audit_linger_ms / 1000,
            timeout_seconds=self.audit_timeout_seconds,
            commit_grace_seconds=self.audit_commit_grace_seconds,
            checkpoint_seconds=self.audit_checkpoint_seconds,
            hmac_key=self.audit_hmac_key,
            subject_keying=self.audit_subject_keying,
        )

    @property
    def readiness(self) -> ReadinessSettings:
        return ReadinessSettings(
            timeout_seconds=self.readiness_timeout_seconds, min_free_mb=self.readiness_min_free_mb
        )

    @property
    def lookups(self) -> LookupSettings:
        return LookupSettings(
            batch_max_queries=self.batch_max_queries,
            source_deadline_seconds=self.source_deadline_seconds,
        )

    @property
    def uploads(self) -> UploadSettings:
        return UploadSettings(
            max_concurrent=self.upload_max_concurrent,
            spool_dir=self.upload_spool_dir or str(Path(self.data_dir) / "uploads"),
        )

    @property
    def licensing(self) -> LicensingSettings:
        return LicensingSettings(
            status_list_ttl_seconds=self.status_list_ttl_seconds,
            seal_registry_ttl_seconds=self.seal_registry_ttl_seconds,
        )

    @property
    def keys(self) -> KeySettings:
        return KeySettings(
            jwks_max_age_seconds=self.jwks_max_age_seconds,
            signing_key_lifetime_days=self.signing_key_lifetime_days,
            expiry_alert_days=self.key_expiry_alert_days,
            answer_algorithm=self.answer_algorithm,
            answers_follow_department_key=self.answers_follow_department_key,
        )

    @property
    def alerts(self) -> AlertSettings:
        return AlertSettings(
            rate_factor=self.alert_rate_factor,
            rate_floor=self.alert_rate_floor,
            baseline_days=self.alert_baseline_days,
            token_failures=self.alert_token_failures,
            token_window_seconds=self.alert_token_window_seconds,
            working_hours=self.alert_working_hours,
            working_days=self.alert_working_days,
            expiry_days=self.key_expiry_alert_days,
        )


_FIELDS = {f.name for f in msgspec.structs.fields(Settings)}

#: A directory holding this file holds a policy set: a home.
HOME_MARKER = Path("policies") / "departments.toml"
#: The checkout the running code comes from (``gateway/`` is at its top).
_CHECKOUT = Path(__file__).resolve().parent.parent


def find_home(configured: str = "", *, cwd: Path | None = None) -> Path:
    """The gateway's home (see the module docstring): ``configured`` when given, else the
    first of the current directory and the source checkout that holds a policy set."""
    here = Path.cwd() if cwd is None else cwd
    if configured:
        return (here / configured).resolve()
    for candidate in (here, _CHECKOUT):
        if (candidate / HOME_MARKER).is_file():
            return candidate.resolve()
    return here.resolve()


def _under_home(settings: Settings, problems: list[str], *, cwd: Path | None) -> Settings:
    """``settings`` with its home found and every relative directory made absolute under it."""
    home = find_home(settings.home, cwd=cwd)
    if settings.home and not home.is_dir():
        problems.append(f"GATEWAY_HOME={settings.home!r}: not a directory")

    def under(path: str) -> str:
        return str(home / path) if path else path

    return msgspec.structs.replace(
        settings,
        home=str(home),
        data_dir=under(settings.data_dir),
        policies_dir=under(settings.policies_dir),
        keys_dir=under(settings.keys_dir),
        upload_spool_dir=under(settings.upload_spool_dir),
    )


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Build :class:`Settings` from the environment (and ``GATEWAY_CONFIG`` TOML file).

    Precedence: ``overrides`` (command-line flags) > environment > TOML file > defaults.
    The directories come back absolute, under the home (``cwd``: the current directory's
    stand-in, for tests). Raises :class:`ConfigurationError` listing every bad value by its
    variable name.
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
    settings = _under_home(msgspec.convert(raw, Settings, strict=False), problems, cwd=cwd)
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
    if s.redis_url and not s.redis_url.startswith(_REDIS_SCHEMES):
        problems.append(
            "GATEWAY_REDIS_URL: must be a redis://, rediss:// or unix:// URL, or "
            "redis+cluster:// (rediss+cluster://) for a Redis Cluster"
        )
    elif s.redis_url:
        try:
            redis_cluster_address(s.redis_url)
        except ValueError as exc:  # the reason only: the URL may hold a password
            problems.append(f"GATEWAY_REDIS_URL: {exc}")
    if s.audit_hmac_key:
        try:
            if len(bytes.fromhex(s.audit_hmac_key)) < 32:
                problems.append("GATEWAY_AUDIT_HMAC_KEY: must be at least 32 bytes (64 hex)")
        except ValueError:
            problems.append("GATEWAY_AUDIT_HMAC_KEY: must be hexadecimal")
    if s.metrics_port and s.metrics_port == s.port:
        problems.append(
            f"GATEWAY_METRICS_PORT={s.metrics_port}: must differ from GATEWAY_PORT (or be 0)"
        )
    if s.log_level.lower() not in {"debug", "info", "warning", "error", "critical"}:
        problems.append(f"GATEWAY_LOG_LEVEL={s.log_level!r}: not a log level")


# --- Redis Cluster ---------------------------------------------------------------------------
# An operator says "this is a cluster" in the one setting that says where Redis is: a
# ``redis+cluster://`` URL naming one or more of its nodes (the client learns the others and
# the slot layout from whichever answers first; more than one seed lets a gateway start while
# one node is down). One setting, so every process and command that reads GATEWAY_REDIS_URL
# (the gateway, ``gateway policy publish``) connects the same way.

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
_CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme: TLS
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*$")
#: More seeds than this is a mistake: three (one per master) are plenty.
MAX_CLUSTER_SEEDS = 16


class RedisClusterAddress(msgspec.Struct, frozen=True, kw_only=True):
    """Where a Redis Cluster is: its seed nodes, the credentials, whether TLS is used."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False


def redis_cluster_address(url: str) -> RedisClusterAddress | None:
    """The cluster ``url`` names — ``redis+cluster://[user[:password]@]host:port[,host:port]…``
    (``rediss+cluster://`` for TLS) — or ``None`` for a URL of one Redis server.

    Strict: every seed needs a host and a port; the path may only be empty or ``/0`` (a
    cluster has database 0 only); no query or fragment (the client's options are the
    gateway's). Raises :class:`ValueError` with the reason, never echoing the URL (it may
    hold a password).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _CLUSTER_SCHEMES:
        return None
    if "?" in rest or "#" in rest:
        raise ValueError("a cluster URL takes no query or fragment")
    userinfo, _, hosts_and_path = rest.rpartition("@")
    hosts, _, path = hosts_and_path.partition("/")
    if path not in ("", "0"):
        raise ValueError("a Redis Cluster has database 0 only: the path must be empty or /0")
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes: list[tuple[str, int]] = []
    for n, seed in enumerate(hosts.split(","), start=1):
        nodes.append(_cluster_seed(seed, n))
    if len(nodes) > MAX_CLUSTER_SEEDS:
        raise ValueError(f"at most {MAX_CLUSTER_SEEDS} seed nodes")
    return RedisClusterAddress(
        nodes=tuple(nodes), username=username, password=password, tls=_CLUSTER_SCHEMES[scheme]
    )


def _cluster_seed(seed: str, n: int) -> tuple[str, int]:
    if seed.startswith("["):  # [IPv6]:port
        host, bracket, port = seed[1:].partition("]:")
        if not bracket:
            raise ValueError(f"seed node {n}: an IPv6 address needs [address]:port")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"seed node {n}: not an IPv6 address") from None
    else:
        host, colon, port = seed.rpartition(":")
        if not colon or not host:
            raise ValueError(f"seed node {n}: must be host:port")
        if not _HOSTNAME.match(host):
            raise ValueError(f"seed node {n}: not a host name or IPv4 address")
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"seed node {n}: the port must be a number from 1 to 65535")
    return host, int(port)
