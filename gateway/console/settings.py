"""How the console's session cookie is sent, decided from the gateway's settings."""

from __future__ import annotations

from gateway.accounts import SessionPolicy
from gateway.settings import Settings

__all__ = ["LOOPBACK_HOSTS", "console_session_policy"]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def console_session_policy(settings: Settings) -> SessionPolicy:
    """Secure (HTTPS-only, ``__Host-``) cookies, except for the embedded setup listening on
    the loopback interface only: that one is reached over plain http://127.0.0.1, where a
    browser would drop a Secure cookie. The server setup sits behind a TLS proxy."""
    plain_http = settings.embedded and settings.host in LOOPBACK_HOSTS
    return SessionPolicy(secure_cookie=not plain_http)
