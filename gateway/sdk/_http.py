"""Small HTTP helpers shared by the client and the offline documents."""

from __future__ import annotations

import functools
import ssl
import urllib.parse

import httpx

from gateway.sdk._problems import problem_from

__all__ = ["get", "http_client", "quoted", "tls_context"]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS settings of every client this process makes: httpx's defaults (certifi's CA
    bundle, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``), built once per process.

    httpx builds them again for every client made without them, and that loads and parses the
    whole CA bundle: about 20 ms of CPU per client, more than a signed lookup costs the gateway.
    One context may serve any number of clients and threads (httpx's own advice).
    """
    return httpx.create_ssl_context()


def http_client(base_url: str, *, timeout: float) -> httpx.Client:
    """A client of ``base_url`` with this process's one TLS context (see :func:`tls_context`)."""
    return httpx.Client(base_url=base_url, timeout=timeout, verify=tls_context())


def get(http: httpx.Client, path: str) -> httpx.Response:
    """GET ``path``; a typed :class:`~gateway.sdk.GatewayProblem` unless the answer is 200."""
    response = http.get(path)
    if response.status_code != 200:
        raise problem_from(response)
    return response


def quoted(segment: str) -> str:
    """A path segment: identifiers are data, never path syntax (a "/" or "?" in one must not
    change the route)."""
    return urllib.parse.quote(segment, safe="")
