"""The gateway's exceptions: one root, :class:`Error`, and one subclass per kind of refusal.

Each class carries, as class attributes, everything the rest of the gateway says about it —
the one table: ``status`` (HTTP), ``slug`` and ``title`` (of its RFC 9457 problem) and
``audit_code`` (the ``reason_code`` its audit entry records). The domain never speaks HTTP; the
HTTP layer reads these attributes. Messages are safe to show to the caller unless a class says
otherwise (token failures keep their precise reason for the audit log only).
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "Error",
    "InvalidIdentifier",
    "InvalidInput",
    "PayloadTooLarge",
    "PolicyDenied",
    "PolicySetInvalid",
    "RateLimited",
    "RecordNotFound",
    "Replayed",
    "SourceFailed",
    "SourceTimeout",
    "StoreUnavailable",
    "TokenRejected",
    "UnsupportedMediaType",
]


class Error(Exception):
    """Root of every error the gateway raises on purpose."""

    #: HTTP status of the problem answering it.
    status: int = 500
    #: ``type`` of that problem: ``urn:yiwang:problem:<slug>``, and its title.
    slug: str = "internal"
    title: str = "Internal error"
    #: Index of the audit entry that recorded this refusal, once it has been audited.
    audit_index: int | None = None

    @property
    def audit_code(self) -> str:
        """The ``reason_code`` an audit entry records for this refusal."""
        return self.slug


class ConfigurationError(Error):
    """Settings, keys or files are unusable; ``problems`` lists each one in words."""

    status, slug, title = 500, "configuration", "The gateway is misconfigured"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class PolicySetInvalid(ConfigurationError):
    """A policy set failed validation; the set in force (if any) stays in force."""


class InvalidInput(Error):
    """The request is well-signed but malformed: ``field`` names where, ``reason`` says why."""

    status, slug, title = 400, "invalid-input", "The request is malformed"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def under(self, prefix: str) -> InvalidInput:
        """The same error with its field located under ``prefix`` (e.g. ``query.subject``)."""
        return type(self)(f"{prefix}.{self.field}" if prefix else self.field, self.reason)


class InvalidIdentifier(InvalidInput):
    """An identifier is malformed or its check character is wrong."""


class UnsupportedMediaType(Error):
    """The body is not of the media type the endpoint takes."""

    status, slug, title = 415, "unsupported-media-type", "Wrong content type"

    def __init__(self, expected: str) -> None:
        super().__init__(f"expected Content-Type {expected}")
        self.expected = expected


class PayloadTooLarge(Error):
    """The request body exceeds the configured cap."""

    status, slug, title = 413, "payload-too-large", "The request body is too large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"body exceeds {limit} bytes")
        self.limit = limit


class TokenRejected(Error):
    """A request token failed a check. ``reason`` is for the audit log, never for the caller.

    Callers all see one opaque 401 so that probing cannot tell which check failed.
    """

    status, slug, title = 401, "token-rejected", "The request token was not accepted"

    def __init__(self, reason: str, *, claimed_issuer: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.claimed_issuer = claimed_issuer

    @property
    def audit_code(self) -> str:
        return f"token:{self.reason}"


class Replayed(Error):
    """The token's ``jti`` was used before and has not yet expired."""

    status, slug, title = 409, "token-replayed", "This request token was already used"

    @property
    def audit_code(self) -> str:
        return "replay"


class PolicyDenied(Error):
    """The sharing policy refuses the request; ``reason_code`` says which rule."""

    status, slug, title = 403, "policy-denied", "The sharing policy does not allow this"

    def __init__(self, reason_code: str, detail: str) -> None:
        super().__init__(detail)
        self.reason_code = reason_code
        self.detail = detail

    @property
    def audit_code(self) -> str:
        return self.reason_code


class RecordNotFound(Error):
    """The grant allows the lookup but the provider holds no record for the subject."""

    status, slug, title = 404, "record-not-found", "No record for this subject"

    @property
    def audit_code(self) -> str:
        return "not-found"


class RateLimited(Error):
    """The department's request budget for the current window is spent."""

    status, slug, title = 429, "rate-limited", "Too many requests from this department"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


class SourceFailed(Error):
    """A provider's source failed or answered something malformed (502); nothing released."""

    status, slug, title = 502, "source-failed", "The provider's source failed"

    def __init__(self, resource: str, reason: str) -> None:
        super().__init__(f"source of {resource}: {reason}")
        self.resource = resource
        self.reason = reason


class SourceTimeout(SourceFailed):
    """A provider's source did not answer within its deadline (504); nothing released."""

    status, slug, title = 504, "source-timeout", "The provider's source did not answer in time"


class StoreUnavailable(Error):
    """A store the request needs (audit log, replay cache, source) cannot be reached.

    ``in_doubt``: the request gave up while its entry's commit was under way, so whether it
    landed is not known (if it did, a correction entry will say its answer was withheld).
    """

    status, slug, title = 503, "store-unavailable", "A required store is unavailable"

    def __init__(self, store: str, *, in_doubt: bool = False) -> None:
        super().__init__(f"{store} unavailable")
        self.store = store
        self.in_doubt = in_doubt
