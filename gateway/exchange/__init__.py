"""The signed exchange: one pipeline for every endpoint that takes a department's token.

An endpoint is an :class:`Exchange` — a small declarative spec: the request's and the
answer's token types, the claims parser, the refused and done events, the role the sender
needs, the token's size cap — and a work function. :class:`SignedExchanges` runs every one of
them the same way::

    verify → parse → check → admit → work → audit → sign

each refusal audited, durably, before it is raised; no data released without its entry; the
answer signed by the gateway for the sender, bound to the request's hash and naming its entry.
"""

from gateway.exchange.draft import AuditDraft, elapsed_ms
from gateway.exchange.pipeline import SignedExchanges
from gateway.exchange.spec import Admit, Done, Exchange, Received, SignedAnswer

__all__ = [
    "Admit",
    "AuditDraft",
    "Done",
    "Exchange",
    "Received",
    "SignedAnswer",
    "SignedExchanges",
    "elapsed_ms",
]
