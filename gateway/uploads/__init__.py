"""Periodic uploads from departments whose systems stay separate (issue 4 §3).

The provider of a resource whose catalogue entry says ``source.adapter = "upload"`` sends a
CSV or JSON Lines file; valid rows become a new *version* of the resource, which replaces the
previous one atomically; rejected rows go to a report the provider downloads. Lookups read the
current version through :mod:`gateway.uploads.adapter`.

Modules: :mod:`~gateway.uploads.options` (the catalogue's source options),
:mod:`~gateway.uploads.claims` (token types and claims), :mod:`~gateway.uploads.validation`
(reading and checking rows, no I/O beyond the file), :mod:`~gateway.uploads.store` (versions
in the gateway's database) and :mod:`~gateway.uploads.service` (the signed endpoints).

Nothing is imported here, so that the client SDK can import the token types from
:mod:`~gateway.uploads.claims` without pulling in the database layer.
"""
