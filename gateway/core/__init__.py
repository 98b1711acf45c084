"""The domain core: identifiers, sharing policy, tokens and the key ring.

Nothing in this package imports a web framework, an ORM or a cache client. It is plain logic
over plain values, so it can be tested, reasoned about and reused by the CLI, the HTTP layer
and the client SDK alike.
"""
