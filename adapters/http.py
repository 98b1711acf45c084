"""HTTP source adapter: a department's REST API, read with one GET per record.

Catalogue options (``[resource.source]``)::

    adapter = "http"
    url = "http://127.0.0.1:9100/v1/enterprises/{subject}"  # {subject} is percent-encoded
    auth = { type = "jwt" }                                  # or "header" / "none", see below
    connect_timeout_ms = 1000     # TCP (and TLS) connect, per attempt           (10..60000)
    read_timeout_ms = 2000        # longest wait for the next bytes, per attempt (10..60000)
    deadline_ms = 3000            # the whole fetch, retries and backoff included (10..60000)
    retries = 2                   # extra attempts after an idempotent failure       (0..5)
    backoff_ms = 100              # first backoff; doubles per retry, with jitter (1..10000)
    circuit_failures = 5          # consecutive failed fetches that open the circuit (1..1000)
    circuit_cooldown_ms = 10000   # how long an open circuit fails fast  (10..3600000)
    max_body_bytes = 65536        # larger replies are refused, unread past the cap
    max_connections = 20          # connection pool size towards this API       (1..1000)
    fields_path = "data"          # where the record sits in the reply (dotted); default: root
    not_found_status = 404        # the status that means "no record"           (400..499)
    missing_fields = "null"       # a catalogued field absent from the reply: "null" | "fail"

Authentication (``auth``) is required, so that an unauthenticated source is a written choice:

* ``{ type = "jwt" }`` — every attempt carries ``Authorization: Bearer <JWT>`` signed with the
  gateway's key (ES256, ``typ`` ``yiwang-source-request+jwt``, verifiable with the gateway's
  JWKS): ``iss`` the gateway id, ``aud`` the provider department, ``sub`` the subject,
  ``resource`` the resource id, ``iat``/``exp`` 30 s apart and a fresh ``jti``. ``sub`` binds
  the token to the one record it asks for, so a leaked token reads nothing else.
* ``{ type = "header", name = "X-Api-Key", env = "MARKET_API_KEY" }`` — a fixed header whose
  value is read once, when the adapter is built, from the gateway's environment.
* ``{ type = "none" }`` — no credentials (e.g. a source reachable only over a private link).

Each catalogued field is read from the reply key ``column`` (default: the field's name) and
checked against its type: ``string`` a JSON string, ``integer`` a JSON integer (not a
boolean; 64-bit), ``number`` an integer or a finite float (released as a float, as the SQL
adapter does), ``boolean`` ``true``/``false``, ``date`` a ``YYYY-MM-DD`` string that is a real
date. ``null`` is allowed for every field; keys the catalogue does not name are ignored. A
catalogued field absent from the reply is ``null`` (APIs commonly omit empty members), unless
``missing_fields = "fail"``, which refuses the reply instead — safer where the API always
sends every member, since a renamed member then fails loudly rather than reading as empty.

Failures never yield a partial record. The status ``not_found_status`` means no record
(``None``). A reply that is 2xx but not a JSON object of the right shape, larger than
``max_body_bytes``, or any other status raises :class:`~gateway.errors.SourceFailed` (502);
running out of time raises :class:`~gateway.errors.SourceTimeout` (504). Only failures that
are safe to repeat for a GET are retried — connection refused or reset, a connect timeout, a
connection closed without an answer, 502/503/504 — with exponential backoff and jitter, and
never past ``deadline_ms``. Read timeouts are not retried (the source is slow, not gone; asking
again adds load and could not finish within the deadline anyway); 4xx and malformed replies
are not retried either (the answer would be the same).

A circuit breaker per adapter counts consecutive fetches that failed in a way that says the
source is unhealthy (transport errors, timeouts, 5xx). After ``circuit_failures`` of them,
fetches fail at once with "circuit open" for ``circuit_cooldown_ms``; then one trial fetch
(a single attempt) goes through: success closes the circuit, failure opens it again. A source
that answers at all with a non-5xx status (also 4xx or a malformed body) is up and resets the
count. Redirects are not followed (credentials must not travel to another host), and proxy
and ``.netrc`` settings from the environment are ignored. The gateway's own backstop,
``GATEWAY_SOURCE_DEADLINE_SECONDS`` (10 s by default), still applies on top of ``deadline_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import math
import random
import re
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import httpx

from gateway.core.policy import Field, FieldType, Resource
from gateway.core.protocol import TokenType
from gateway.core.sources import AdapterContext, SourceRecord
from gateway.core.wire import WireError, decode_json
from gateway.errors import ConfigurationError, SourceFailed, SourceTimeout

__all__ = ["CircuitBreaker", "HttpSourceAdapter", "create"]

log = logging.getLogger(__name__)

# httpx logs every request URL at INFO, and our URLs carry the subject: the gateway's logs
# must not list who was looked up (the audit log keys subjects for the same reason). An
# operator who configured the httpx logger explicitly keeps their setting.
_httpx_log = logging.getLogger("httpx")
if _httpx_log.level == logging.NOTSET:
    _httpx_log.setLevel(logging.WARNING)

#: ``typ`` of the JWT the gateway sends to a source with ``auth = { type = "jwt" }``.
_TOKEN_LIFETIME_SECONDS = 30
_RETRY_STATUSES = frozenset({502, 503, 504})
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers the transport itself must control; a catalogue that sets them is a mistake.
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "te", "upgrade"}
)
_INT64 = (-(2**63), 2**63 - 1)
_OPTIONS = frozenset(
    {
        "adapter",
        "url",
        "auth",
        "connect_timeout_ms",
        "read_timeout_ms",
        "deadline_ms",
        "retries",
        "backoff_ms",
        "circuit_failures",
        "circuit_cooldown_ms",
        "max_body_bytes",
        "max_connections",
        "fields_path",
        "not_found_status",
        "missing_fields",
    }
)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every source this process calls (httpx's defaults, the process's
    environment left out): httpx would otherwise load the whole CA bundle again for each
    adapter it builds."""
    return httpx.create_ssl_context(trust_env=False)


class _Failure(Exception):
    """One attempt's failure: the error to raise, whether another attempt may help, and
    whether it says the source is unhealthy (what the circuit breaker counts)."""

    def __init__(self, error: SourceFailed, *, retryable: bool, unhealthy: bool) -> None:
        super().__init__(error.reason)
        self.error = error
        self.retryable = retryable
        self.unhealthy = unhealthy


class CircuitBreaker:
    """Closed → open after ``threshold`` consecutive failures → half-open after ``cooldown``
    seconds (one trial at a time) → closed on the trial's success, open again on its failure.

    ``clock`` is a monotonic clock in seconds; tests pass a fake one. The gateway runs one
    event loop per process and nothing here awaits, so no lock is needed.
    """

    def __init__(self, *, threshold: int, cooldown: float, clock: Callable[[], float]) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> Literal["closed", "open", "half-open"]:
        """``closed`` (requests flow), ``open`` (fail fast) or ``half-open`` (trial due)."""
        if self._opened_at is None:
            return "closed"
        if self._trial_running or self._clock() - self._opened_at < self.cooldown:
            return "open"
        return "half-open"

    def admit(self) -> bool | None:
        """``None`` if the request must fail fast; else whether it is the half-open trial."""
        state = self.state
        if state == "closed":
            return False
        if state == "open":
            return None
        self._trial_running = True
        return True

    def succeeded(self) -> None:
        """A request found the source healthy: close the circuit."""
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def failed(self, *, trial: bool) -> bool:
        """A request found the source unhealthy. Returns whether the circuit (re)opened."""
        if trial:
            self._trial_running = False
            self._opened_at = self._clock()
            return True
        if self._opened_at is not None:
            # A request admitted before the circuit opened: the circuit already counts it.
            return False
        self._failures += 1
        if self._failures >= self.threshold:
            self._opened_at = self._clock()
            return True
        return False

    def released(self) -> None:
        """A trial ended without a verdict (cancelled): open again, so the next cool-down
        decides, rather than leaving the circuit half-open with no trial running."""
        if self._trial_running:
            self._trial_running = False
            self._opened_at = self._clock()


@dataclass(frozen=True, slots=True)
class _Settings:
    connect_timeout: float
    read_timeout: float
    deadline: float
    retries: int
    backoff: float
    max_body_bytes: int
    fields_path: tuple[str, ...]
    not_found_status: int
    missing_fail: bool


def _quote_subject(subject: str) -> str:
    # Everything but unreserved letters and digits is percent-encoded, dots included: httpx
    # removes "." and ".." path segments, so a subject ".." would otherwise climb the path.
    return quote(subject, safe="").replace(".", "%2E")


class HttpSourceAdapter:
    """Reads one resource's records from a department's REST API (see the module docstring).

    Holds one pooled :class:`httpx.AsyncClient`, closed by :meth:`close`.
    """

    def __init__(
        self,
        *,
        resource: Resource,
        url_template: str,
        settings: _Settings,
        client: httpx.AsyncClient,
        auth: Callable[[str], Mapping[str, str]],
        breaker: CircuitBreaker,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._resource = resource
        self._url_template = url_template
        self._settings = settings
        self._client = client
        self._auth = auth
        self.breaker = breaker
        self._sleep = sleep
        self._jitter = jitter
        self._fields: tuple[Field, ...] = resource.fields
        # Host and port only: the path may carry the subject, the userinfo is refused anyway.
        self.description = f"http:{urlsplit(url_template.replace('{subject}', 'x')).netloc}"

    def _fail(self, reason: str, *, retryable: bool = False, unhealthy: bool = False) -> _Failure:
        return _Failure(
            SourceFailed(self._resource.id, reason), retryable=retryable, unhealthy=unhealthy
        )

    def _timeout(self, reason: str, *, retryable: bool = False) -> _Failure:
        return _Failure(
            SourceTimeout(self._resource.id, reason), retryable=retryable, unhealthy=True
        )

    async def fetch(self, subject: str) -> SourceRecord | None:
        """The record for ``subject``, ``None`` on ``not_found_status``; see the module."""
        rid = self._resource.id
        trial = self.breaker.admit()
        if trial is None:
            raise SourceFailed(rid, "circuit open")
        try:
            result = await self._fetch_within_deadline(subject, retries=0 if trial else None)
        except _Failure as failure:
            if not failure.unhealthy:
                self.breaker.succeeded()  # it answered: up, even if the answer was bad
            elif self.breaker.failed(trial=trial):
                log.warning(
                    "source of %s: circuit opened for %g s (%s)",
                    rid,
                    self.breaker.cooldown,
                    failure.error.reason,
                )
            raise failure.error from None
        except BaseException:
            if trial:
                self.breaker.released()  # cancelled mid-trial: no verdict either way
            raise
        if trial:
            log.info("source of %s: circuit closed after a successful trial", rid)
        self.breaker.succeeded()
        return result

    async def _fetch_within_deadline(
        self, subject: str, *, retries: int | None
    ) -> SourceRecord | None:
        settings = self._settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.deadline
        try:
            async with asyncio.timeout_at(deadline):
                return await self._attempts(
                    subject, deadline, settings.retries if retries is None else retries
                )
        except TimeoutError:
            raise self._timeout(f"no answer within {settings.deadline:g} s") from None

    async def _attempts(self, subject: str, deadline: float, retries: int) -> SourceRecord | None:
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            try:
                return await self._attempt(subject)
            except _Failure as failure:
                if not failure.retryable or attempt >= retries:
                    raise
                # "Equal jitter": at least half the exponential step, so retries always back
                # off, plus a random half so that many gateways do not retry in lockstep.
                step = self._settings.backoff * 2**attempt
                delay = step / 2 + step / 2 * self._jitter()
                if loop.time() + delay >= deadline:
                    raise  # no time left for another attempt: report what happened
                await self._sleep(delay)
                attempt += 1

    async def _attempt(self, subject: str) -> SourceRecord | None:
        settings = self._settings
        url = self._url_template.replace("{subject}", _quote_subject(subject))
        try:
            async with self._client.stream("GET", url, headers=self._auth(subject)) as response:
                status = response.status_code
                if status == settings.not_found_status:
                    await self._drain(response)
                    return None
                if status in _RETRY_STATUSES:
                    raise self._fail(f"status {status}", retryable=True, unhealthy=True)
                if status >= 500:
                    raise self._fail(f"status {status}", unhealthy=True)
                if not 200 <= status < 300:
                    raise self._fail(f"unexpected status {status}")
                body = await self._read_capped(response)
        except httpx.ConnectTimeout:
            raise self._timeout("connect timed out", retryable=True) from None
        except httpx.PoolTimeout:
            raise self._timeout("no free connection in time") from None
        except httpx.TimeoutException:
            raise self._timeout("read or write timed out") from None
        except (httpx.NetworkError, httpx.RemoteProtocolError):
            # Refused, reset, or closed without an answer: nothing was read, a GET may repeat.
            raise self._fail("connection failed", retryable=True, unhealthy=True) from None
        except httpx.DecodingError:
            raise self._fail("reply body could not be decoded") from None
        except (httpx.HTTPError, httpx.InvalidURL):
            raise self._fail("request failed", unhealthy=True) from None
        return self._record(body)

    async def _read_capped(self, response: httpx.Response) -> bytes:
        cap = self._settings.max_body_bytes
        if "content-encoding" not in response.headers:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > cap:
                raise self._fail(f"reply larger than {cap} bytes")
        chunks: list[bytes] = []
        size = 0
        # Decoded chunks are counted, so a compressed reply cannot expand past the cap either.
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise self._fail(f"reply larger than {cap} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _drain(self, response: httpx.Response) -> None:
        # Reading a small not-found body lets the connection go back to the pool; a large or
        # broken one is abandoned (the connection is closed), which changes nothing else.
        with contextlib.suppress(_Failure, httpx.HTTPError):
            await self._read_capped(response)

    def _record(self, body: bytes) -> SourceRecord:
        try:
            document = decode_json(body, what="reply")
        except WireError:  # not JSON, NaN, 1e400, lone surrogates, nesting beyond the limit
            raise self._fail("reply is not JSON") from None
        record: Any = document
        for depth, key in enumerate(self._settings.fields_path):
            if not isinstance(record, dict) or key not in record:
                where = ".".join(self._settings.fields_path[: depth + 1])
                raise self._fail(f"reply lacks {where}")
            record = record[key]
        if not isinstance(record, dict):
            raise self._fail("record is not a JSON object")
        values: dict[str, Any] = {}
        for f in self._fields:
            key = f.column or f.name
            if key not in record:
                if self._settings.missing_fail:
                    raise self._fail(f"reply lacks field {f.name}")
                values[f.name] = None
                continue
            value = _checked(record[key], f.type)
            if value is _WRONG:
                raise self._fail(f"field {f.name} is not a valid {f.type}")
            values[f.name] = value
        as_of = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return SourceRecord(values=values, source=self.description, as_of=as_of)

    async def close(self) -> None:
        """Close the pooled connections."""
        await self._client.aclose()


_WRONG = object()


def _checked(value: Any, kind: FieldType) -> Any:
    """``value`` as the field's type, or ``_WRONG``. No coercion between JSON types: a
    source that sends ``"12"`` for an integer is broken, and guessing would hide it."""
    if value is None:
        return None
    if kind is FieldType.STRING:
        return value if isinstance(value, str) else _WRONG
    if kind is FieldType.BOOLEAN:
        return value if isinstance(value, bool) else _WRONG
    if kind is FieldType.INTEGER:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return value if ok and _INT64[0] <= value <= _INT64[1] else _WRONG
    if kind is FieldType.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _WRONG
        try:
            number = float(value)
        except OverflowError:
            return _WRONG
        return number if math.isfinite(number) else _WRONG
    if kind is FieldType.DATE:
        if not isinstance(value, str) or not _DATE.match(value):
            return _WRONG
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            return _WRONG
        return value
    return _WRONG


# --- building from the catalogue ------------------------------------------------------------


def _auth(
    resource: Resource, spec: Any, context: AdapterContext, problems: list[str]
) -> Callable[[str], Mapping[str, str]]:
    def none(_subject: str) -> Mapping[str, str]:
        return {}

    if not isinstance(spec, dict):
        problems.append('auth must be a table, e.g. { type = "jwt" }')
        return none
    kind = spec.get("type")
    allowed = {"jwt": {"type"}, "header": {"type", "name", "env"}, "none": {"type"}}
    if not isinstance(kind, str) or kind not in allowed:
        problems.append('auth.type must be "jwt", "header" or "none"')
        return none
    unknown = sorted(set(spec) - allowed[kind])
    if unknown:
        problems.append(f"auth of type {kind!r} does not take {', '.join(unknown)}")
    if kind == "none":
        return none
    if kind == "jwt":
        issuer, audience, rid = context.gateway_id, resource.provider, resource.id
        sign = context.sign

        def jwt_auth(subject: str) -> Mapping[str, str]:
            # A fresh token per attempt: a source that refuses replayed jti must still accept
            # the retry of a request whose first attempt reached it.
            now = int(time.time())
            claims = {
                "iss": issuer,
                "aud": audience,
                "sub": subject,
                "resource": rid,
                "iat": now,
                "exp": now + _TOKEN_LIFETIME_SECONDS,
                "jti": uuid.uuid4().hex,
            }
            return {"Authorization": f"Bearer {sign(claims, TokenType.SOURCE_REQUEST)}"}

        return jwt_auth
    name, env = spec.get("name"), spec.get("env")
    if not isinstance(name, str) or not _HEADER_NAME.match(name):
        problems.append("auth.name must be an HTTP header name")
        return none
    if name.lower() in _RESERVED_HEADERS:
        problems.append(f"auth.name must not be {name}")
        return none
    if not isinstance(env, str) or not env:
        problems.append("auth.env must name an environment variable")
        return none
    secret = context.environ.get(env, "")
    if not secret:
        # Name the variable, never a value.
        problems.append(f"environment variable {env} (auth.env) is not set or empty")
        return none
    if any(c in secret for c in "\r\n\0"):
        problems.append(f"environment variable {env} (auth.env) holds a line break or NUL")
        return none
    header = {name: secret}

    def header_auth(_subject: str) -> Mapping[str, str]:
        return header

    return header_auth


def _url_template(options: Mapping[str, Any], problems: list[str]) -> str:
    url = options.get("url")
    if not isinstance(url, str) or url.count("{subject}") != 1:
        problems.append("url must be a string with {subject} exactly once")
        return ""
    parts = urlsplit(url.replace("{subject}", "x"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append("url must be an absolute http:// or https:// URL")
    elif "{subject}" in urlsplit(url).netloc:
        problems.append("{subject} must be in the url's path or query, not its host")
    elif parts.username is not None or parts.password is not None:
        problems.append("url must not carry credentials; use auth")
    elif parts.fragment:
        problems.append("url must not have a fragment")
    return url


def create(
    resource: Resource,
    *,
    context: AdapterContext,
    clock: Callable[[], float] = time.monotonic,
) -> HttpSourceAdapter:
    """Build the adapter from the resource's ``source`` options (``clock``: for tests)."""
    options = resource.source
    problems: list[str] = []

    def number(name: str, default: int, low: int, high: int) -> int:
        value = options.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            problems.append(f"{name} must be an integer {low}..{high}")
            return default
        return value

    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        problems.append(f"unknown options {', '.join(unknown)}")
    url = _url_template(options, problems)
    auth = _auth(resource, options.get("auth"), context, problems)
    connect_ms = number("connect_timeout_ms", 1000, 10, 60_000)
    read_ms = number("read_timeout_ms", 2000, 10, 60_000)
    deadline_ms = number("deadline_ms", 3000, 10, 60_000)
    retries = number("retries", 2, 0, 5)
    backoff_ms = number("backoff_ms", 100, 1, 10_000)
    failures = number("circuit_failures", 5, 1, 1000)
    cooldown_ms = number("circuit_cooldown_ms", 10_000, 10, 3_600_000)
    max_body = number("max_body_bytes", 65_536, 256, 16 * 1024 * 1024)
    connections = number("max_connections", 20, 1, 1000)
    not_found = number("not_found_status", 404, 400, 499)
    path = options.get("fields_path", "")
    if not isinstance(path, str) or (path and not all(path.split("."))):
        problems.append('fields_path must be a dotted path such as "data" or "result.record"')
        path = ""
    missing = options.get("missing_fields", "null")
    if missing not in ("null", "fail"):
        problems.append('missing_fields must be "null" or "fail"')
    if problems:
        raise ConfigurationError([f"resource {resource.id!r}: http source: {p}" for p in problems])
    settings = _Settings(
        connect_timeout=connect_ms / 1000,
        read_timeout=read_ms / 1000,
        deadline=deadline_ms / 1000,
        retries=retries,
        backoff=backoff_ms / 1000,
        max_body_bytes=max_body,
        fields_path=tuple(path.split(".")) if path else (),
        not_found_status=not_found,
        missing_fail=missing == "fail",
    )
    client = httpx.AsyncClient(
        verify=_tls_context(),
        timeout=httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=settings.connect_timeout,
        ),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        headers={"Accept": "application/json", "User-Agent": f"{context.gateway_id} (yiwang)"},
        follow_redirects=False,
        trust_env=False,
    )
    return HttpSourceAdapter(
        resource=resource,
        url_template=url,
        settings=settings,
        client=client,
        auth=auth,
        breaker=CircuitBreaker(threshold=failures, cooldown=cooldown_ms / 1000, clock=clock),
    )
