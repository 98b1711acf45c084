"""The policy set at run time: the set in force, its reload and publication, its tools.

Every gateway process watches its policy files; a changed set is validated first (an invalid
one is refused and the set in force stays), then published to a :class:`PolicyStore` — in
process for the embedded setup, Redis for many processes — and every process that sees a new
version in the store swaps it in. Requests read the set in force once, so none is answered
under a half-loaded set.
"""

from gateway.policy.holder import PolicyHolder
from gateway.policy.store import InProcessPolicyStore, PolicyStore, RedisPolicyStore
from gateway.policy.watcher import PolicyWatcher

__all__ = [
    "InProcessPolicyStore",
    "PolicyHolder",
    "PolicyStore",
    "PolicyWatcher",
    "RedisPolicyStore",
]
