"""Yiwang Gateway: signed, policy-bound, audited data sharing between government departments.

Public entry points:

- :mod:`gateway.client` — what a department system uses to send signed lookups and verify
  the gateway's answers;
- ``gateway`` (the console script, :mod:`gateway.app.commands`) — serve, init, lookup, demo;
- :func:`gateway.app.factory.create_app` — the ASGI app for given
  :class:`~gateway.settings.Settings`.
"""

__version__ = "0.1.0"
