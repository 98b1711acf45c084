"""The signed lookup: from a department's request token to the gateway's signed answer."""

from gateway.lookups.service import LookupAnswer, LookupService, PolicyHolder

__all__ = ["LookupAnswer", "LookupService", "PolicyHolder"]
