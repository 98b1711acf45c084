"""The composition root: the runtime that builds every service once, the bootstrap that
prepares a district, the Litestar app factory and the ``gateway`` command group.

Nothing below this package imports it: features receive their services from here (by
Litestar dependency injection for routes, by :mod:`gateway.app.services` for commands).
"""
