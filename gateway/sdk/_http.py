"""Small HTTP helpers shared by the client and the offline documents."""

from __future__ import annotations

import urllib.parse

import httpx

from gateway.sdk._problems import problem_from

__all__ = ["get", "quoted"]


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
