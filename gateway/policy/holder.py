"""The policy set in force in this process."""

from __future__ import annotations

from gateway.core.policy import PolicySet

__all__ = ["PolicyHolder"]


class PolicyHolder:
    """Holds the policy set in force. Swapping ``current`` is atomic for readers, and each
    request reads it once, so no request is answered under a half-loaded set."""

    def __init__(self, policy: PolicySet) -> None:
        self.current = policy
