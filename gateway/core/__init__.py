"""The domain core: identifiers, sharing policy, tokens and the key ring.

Nothing in this package imports a web framework, an ORM, a cache client or an HTTP client, nor
any other part of the gateway but :mod:`gateway.errors` (ruff's TID251 ban and the
``lint-imports`` contracts in ``pyproject.toml`` hold it to that). It is plain logic over plain
values, so it can be tested, reasoned about and reused by the CLI, the HTTP layer and the
department SDK (:mod:`gateway.sdk`) alike. Its third-party needs are PyJWT, cryptography,
msgspec and rfc8785.
"""
