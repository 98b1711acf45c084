"""A stand-in department API for tests: a real HTTP/1.1 server on 127.0.0.1, in a thread.

It serves synthetic records keyed by subject at any path whose last segment is the subject
(``GET /v1/enterprises/<subject>`` answers ``{"data": <record>, "request_id": …}``, or 404).
How it answers is switchable, so tests can exercise every way a real source misbehaves:

* per request path: a first segment naming a behaviour applies to that request, e.g.
  ``/slow-1500/v1/enterprises/<subject>`` or ``/status-503/…`` (see :func:`behaviour_named`);
  a catalogue can point one resource at each such prefix;
* by control methods: :meth:`DepartmentApi.set_default` for every request, and
  :meth:`DepartmentApi.then` for a queue of one-shot behaviours that win over both (``then(
  status(503), NORMAL)``: the first request fails, the next one succeeds).

Every request is recorded (method, path, headers with lower-case names, which behaviour
answered it) so tests can count retries and check credentials.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = [
    "BARE",
    "MALFORMED",
    "NORMAL",
    "NOT_FOUND",
    "OVERSIZED",
    "OVERSIZED_STREAM",
    "RESET",
    "WRONG_TYPES",
    "Behaviour",
    "DepartmentApi",
    "SeenRequest",
    "behaviour_named",
    "raw",
    "slow",
    "status",
]


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How the server answers one request. ``kind`` is one of: ``normal`` (the record in an
    envelope, or 404), ``bare`` (the record itself), ``slow`` (``delay_ms``, then normal),
    ``status`` (``status`` with a small JSON problem), ``reset`` (TCP reset, no answer),
    ``malformed`` (cut-off JSON), ``wrong-types`` (every value of the wrong JSON type),
    ``oversized`` (a large body with Content-Length), ``oversized-stream`` (a chunked body
    that does not end), ``not-found`` (404 whatever the subject), ``raw`` (``body``)."""

    kind: str
    status: int = 200
    delay_ms: int = 0
    body: bytes = b""

    @property
    def name(self) -> str:
        """A short label, as recorded in :class:`SeenRequest`."""
        if self.kind == "status":
            return f"status-{self.status}"
        if self.kind == "slow":
            return f"slow-{self.delay_ms}"
        return self.kind


NORMAL = Behaviour("normal")
BARE = Behaviour("bare")
RESET = Behaviour("reset")
MALFORMED = Behaviour("malformed")
WRONG_TYPES = Behaviour("wrong-types")
OVERSIZED = Behaviour("oversized")
OVERSIZED_STREAM = Behaviour("oversized-stream")
NOT_FOUND = Behaviour("not-found")
_FIXED = {
    b.kind: b
    for b in (NORMAL, BARE, RESET, MALFORMED, WRONG_TYPES, OVERSIZED, OVERSIZED_STREAM, NOT_FOUND)
}


def slow(delay_ms: int) -> Behaviour:
    """Wait ``delay_ms`` before answering normally."""
    return Behaviour("slow", delay_ms=delay_ms)


def status(code: int) -> Behaviour:
    """Answer ``code`` with a small JSON problem body."""
    return Behaviour("status", status=code)


def raw(body: bytes | str | Mapping[str, Any], *, code: int = 200) -> Behaviour:
    """Answer ``code`` with exactly ``body`` (a mapping is JSON-encoded)."""
    if isinstance(body, Mapping):
        data = json.dumps(body, ensure_ascii=False).encode()
    else:
        data = body.encode() if isinstance(body, str) else body
    return Behaviour("raw", status=code, body=data)


def behaviour_named(name: str) -> Behaviour | None:
    """The behaviour a path prefix names: a fixed kind (``reset``, ``malformed`` …),
    ``slow-<ms>`` or ``status-<code>``; ``None`` for any other segment."""
    if name in _FIXED:
        return _FIXED[name]
    kind, _, number = name.rpartition("-")
    if number.isdigit() and kind == "slow":
        return slow(int(number))
    if number.isdigit() and kind == "status" and 100 <= int(number) <= 599:
        return status(int(number))
    return None


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """One request the server received."""

    method: str
    path: str
    headers: Mapping[str, str]  # names lower-cased
    subject: str
    behaviour: str


def _wrong_types(record: Mapping[str, Any]) -> dict[str, Any]:
    def wrong(value: Any) -> Any:
        if isinstance(value, bool):
            return "yes"
        if isinstance(value, int | float):
            return str(value)
        if isinstance(value, str):
            return 42
        return value

    return {k: wrong(v) for k, v in record.items()}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: DepartmentApi

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that gave up (timeouts, resets on purpose) are what these tests are about;
        # their broken pipes are not errors worth printing.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the adapter's connection pool is used
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        api = self.server.api
        path = urlsplit(self.path).path
        segments = [unquote(s) for s in path.strip("/").split("/")]
        by_path = behaviour_named(segments[0]) if segments else None
        behaviour = api._next_behaviour(by_path)
        subject = segments[-1] if segments else ""
        api._record(
            SeenRequest(
                method="GET",
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                subject=subject,
                behaviour=behaviour.name,
            )
        )
        self._answer(api, behaviour, subject)

    def _answer(self, api: DepartmentApi, behaviour: Behaviour, subject: str) -> None:
        kind = behaviour.kind
        record = api.records.get(subject)
        if kind == "slow":
            if api._stopping.wait(behaviour.delay_ms / 1000):
                self.close_connection = True  # shutting down: answer nothing
                return
            kind = "normal"
        if kind == "reset":
            # SO_LINGER with a zero timeout makes close() send RST: a connection reset.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if kind == "status":
            self._send(behaviour.status, {"status": behaviour.status, "title": "failing"})
        elif kind == "raw":
            self._send_bytes(behaviour.status, behaviour.body)
        elif kind == "not-found" or record is None:
            self._send(404, {"status": 404, "title": "no such record"})
        elif kind == "bare":
            self._send(200, dict(record))
        elif kind == "malformed":
            self._send_bytes(200, b'{"data": {"name": "cut off')
        elif kind == "wrong-types":
            self._send(200, {"data": _wrong_types(record)})
        elif kind == "oversized":
            self._send(200, {"data": {**record, "padding": "x" * api.oversized_bytes}})
        elif kind == "oversized-stream":
            self._stream_forever()
        else:
            self._send(200, {"data": dict(record), "request_id": uuid.uuid4().hex})

    def _send(self, code: int, document: Mapping[str, Any]) -> None:
        self._send_bytes(code, json.dumps(document, ensure_ascii=False).encode())

    def _send_bytes(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream_forever(self) -> None:
        # A chunked body with no declared length that goes on (up to 64 MiB) until the
        # client stops reading: only a reader that enforces its own cap gets out quickly.
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"x" * 16384
        try:
            self.wfile.write(b'4\r\n{"a"\r\n' + b'2\r\n:"\r\n')
            for _ in range(4096):
                if self.server.api._stopping.is_set():
                    break
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        except OSError:
            pass
        self.close_connection = True


class DepartmentApi:
    """The stand-in server. Use as a context manager, or call :meth:`start`/:meth:`stop`."""

    def __init__(
        self, records: Mapping[str, Mapping[str, Any]], *, oversized_bytes: int = 256 * 1024
    ) -> None:
        self.records: dict[str, Mapping[str, Any]] = dict(records)
        self.oversized_bytes = oversized_bytes
        self._lock = threading.Lock()
        self._default = NORMAL
        self._queue: deque[Behaviour] = deque()
        self._seen: list[SeenRequest] = []
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.api = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def url_template(self, prefix: str = "") -> str:
        """An adapter ``url`` for the records, optionally under a behaviour ``prefix``."""
        head = f"/{prefix}" if prefix else ""
        return f"{self.url}{head}/v1/enterprises/{{subject}}"

    def start(self) -> DepartmentApi:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; handlers still sleeping are woken and answer nothing."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> DepartmentApi:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def set_default(self, behaviour: Behaviour) -> None:
        """How requests are answered when neither the queue nor the path says otherwise."""
        with self._lock:
            self._default = behaviour

    def then(self, *behaviours: Behaviour) -> None:
        """Queue one-shot behaviours for the next requests, in order (they win over all)."""
        with self._lock:
            self._queue.extend(behaviours)

    def reset(self) -> None:
        """Back to normal: default behaviour, empty queue, no recorded requests."""
        with self._lock:
            self._default = NORMAL
            self._queue.clear()
            self._seen.clear()

    @property
    def requests(self) -> list[SeenRequest]:
        """The requests seen so far, oldest first."""
        with self._lock:
            return list(self._seen)

    def count(self, path_contains: str = "") -> int:
        """How many requests were seen (whose path contains ``path_contains``)."""
        return sum(1 for r in self.requests if path_contains in r.path)

    @contextlib.contextmanager
    def behaving(self, behaviour: Behaviour) -> Iterator[DepartmentApi]:
        """Answer every request with ``behaviour`` inside the block."""
        self.set_default(behaviour)
        try:
            yield self
        finally:
            self.set_default(NORMAL)

    def _next_behaviour(self, by_path: Behaviour | None) -> Behaviour:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            return by_path or self._default

    def _record(self, request: SeenRequest) -> None:
        with self._lock:
            self._seen.append(request)
