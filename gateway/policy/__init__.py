"""The policy set at run time: the set in force, its reload and publication, its tools."""

from gateway.policy.holder import PolicyHolder

__all__ = ["PolicyHolder"]
