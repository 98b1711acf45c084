"""The client's JWKS cache against a real HTTP server whose key set changes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core.keyring import public_jwk
from gateway.sdk import AnswerRejected, JwksCache


class _Jwks(BaseHTTPRequestHandler):
    keys: ClassVar[list[dict[str, Any]]] = []
    hits: ClassVar[int] = 0
    cache_control: ClassVar[str | None] = None

    def do_GET(self) -> None:
        type(self).hits += 1
        body = json.dumps({"keys": self.keys}).encode()
        self.send_response(200)
        if self.cache_control is not None:
            self.send_header("Cache-Control", self.cache_control)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Jwks)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _jwk() -> dict[str, Any]:
    return public_jwk(ec.generate_private_key(ec.SECP256R1()), alg="ES256")


def test_fetched_once_refreshed_on_unknown_kid_with_cooldown(server: str) -> None:
    first, second = _jwk(), _jwk()
    _Jwks.keys, _Jwks.hits = [first], 0
    with httpx.Client(base_url=server) as http:
        cache = JwksCache(http=http, url="/jwks", cooldown=3600)
        assert cache.get(first["kid"]).key_id == first["kid"]
        assert cache.get(first["kid"]).key_id == first["kid"]
        assert _Jwks.hits == 1  # cached
        # An unknown kid inside the cool-down does not hammer the server.
        with pytest.raises(AnswerRejected):
            cache.get(second["kid"])
        assert _Jwks.hits == 1
        # With no cool-down left, an unknown kid triggers one refresh (key rotation).
        rotating = JwksCache(http=http, url="/jwks", cooldown=0)
        rotating.get(first["kid"])
        _Jwks.keys = [first, second]
        assert rotating.get(second["kid"]).key_id == second["kid"]
        assert _Jwks.hits == 3


def test_a_copy_older_than_its_max_age_is_fetched_again(server: str) -> None:
    """A key's retirement (its ``exp``) reaches the cache within the JWKS's max-age."""
    key = _jwk()
    _Jwks.keys, _Jwks.hits, _Jwks.cache_control = [{**key, "status": "active"}], 0, "max-age=0"
    try:
        with httpx.Client(base_url=server) as http:
            cache = JwksCache(http=http, url="/jwks", cooldown=3600)
            cache.for_token(key["kid"], iat=2_000_000_000)
            _Jwks.keys = [{**key, "status": "retired", "exp": 1_900_000_000}]
            with pytest.raises(AnswerRejected, match="retired"):
                cache.for_token(key["kid"], iat=2_000_000_000)
            assert cache.for_token(key["kid"], iat=1_800_000_000).key_id == key["kid"]
            assert _Jwks.hits == 3  # max-age 0: fetched at each use
            _Jwks.cache_control = "public, max-age=300"
            cache.get(key["kid"])
            cache.get(key["kid"])
            assert _Jwks.hits == 4  # fetched once, then within its lifetime
    finally:
        _Jwks.cache_control = None
