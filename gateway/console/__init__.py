"""The web console: pages for people at a desk, over :mod:`gateway.accounts`.

:mod:`~gateway.console.settings` (the session cookie policy from the settings, no web
framework), :mod:`~gateway.console.text` (the interface text in Chinese and English) and
:mod:`~gateway.console.routes` (the Litestar handlers under ``/console``, HTML rendered with
Jinja2 from ``templates/``; no external script, style sheet or font).
"""
