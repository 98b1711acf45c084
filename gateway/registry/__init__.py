"""The district's registry: departments and their keys, operators, key administration.

- :mod:`~gateway.registry.store` — departments and keys in the database, the key ring;
- :mod:`~gateway.registry.keystore` — key files on disk (the gateway's key, the audit secret);
- :mod:`~gateway.registry.keys` — revocation, and the watcher that spreads it to every process;
- :mod:`~gateway.registry.operators` — bearer tokens of operators (auditors, administrators);
- :mod:`~gateway.registry.routes` — the administrators' API.
"""
