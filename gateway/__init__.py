"""Yiwang Gateway: signed, policy-bound, audited data sharing between government departments.

Public entry points:

- :mod:`gateway.sdk` — the department SDK: what a department system uses to send signed
  requests and verify the gateway's answers and documents (it needs httpx, PyJWT, msgspec,
  cryptography and rfc8785, not the server's framework, database or cache);
- ``gateway`` (the console script, :mod:`gateway.app.commands`) — serve, init, lookup, demo;
- :func:`gateway.app.factory.create_app` — the ASGI app for given
  :class:`~gateway.settings.Settings`.

This module imports nothing, so importing :mod:`gateway.sdk` does not start the server's
machinery.
"""

__version__ = "0.1.0"
