"""Periodic uploads from departments whose systems stay separate (issue 4 §3).

The provider of a resource whose catalogue entry says ``source.adapter = "upload"`` sends a
CSV or JSON Lines file; valid rows become a new *version* of the resource, which replaces the
previous one atomically; rejected rows go to a report the provider downloads. Lookups read the
current version through :mod:`gateway.uploads.adapter`.

Modules: :mod:`~gateway.uploads.options` (the catalogue's source options),
:mod:`~gateway.uploads.claims` (the claims as the gateway validates them; the wire contract
itself is :mod:`gateway.core.uploads`), :mod:`~gateway.uploads.validation`
(reading and checking rows, no I/O beyond the file), :mod:`~gateway.uploads.store` (versions
in the gateway's database) and :mod:`~gateway.uploads.service` (the signed endpoints).

Nothing is imported here, so that importing one module (the CLI's validation, say) does not
pull in the database layer.
"""
