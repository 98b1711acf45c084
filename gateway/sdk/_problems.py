"""The gateway's refusals (RFC 9457 problem details) as typed exceptions, and rejected answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from gateway.errors import Error

__all__ = [
    "AnswerRejected",
    "BadRequest",
    "Forbidden",
    "GatewayProblem",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Replayed",
    "ServiceUnavailable",
    "Unauthorized",
    "problem_from",
]


class GatewayProblem(Error):
    """The gateway refused the request with RFC 9457 problem details."""

    status = 0

    def __init__(self, problem: Mapping[str, Any]) -> None:
        super().__init__(
            f"{problem.get('status')} {problem.get('title')}: {problem.get('detail', '')}"
        )
        self.problem = dict(problem)

    @property
    def audit_index(self) -> int | None:  # type: ignore[override]
        value = self.problem.get("audit_index")
        return value if isinstance(value, int) else None

    @property
    def reason(self) -> str | None:
        """The machine-readable reason (policy reason code or invalid field reason)."""
        value = self.problem.get("reason")
        return value if isinstance(value, str) else None


class BadRequest(GatewayProblem):
    """400: the request is malformed; ``problem['field']`` names where."""

    status = 400


class Unauthorized(GatewayProblem):
    """401: the request token was not accepted."""

    status = 401


class Forbidden(GatewayProblem):
    """403: the sharing policy refuses; ``reason`` gives the code."""

    status = 403


class NotFound(GatewayProblem):
    """404: the grant allows the lookup but the subject has no record."""

    status = 404


class Replayed(GatewayProblem):
    """409: this token was already used."""

    status = 409


class PayloadTooLarge(GatewayProblem):
    """413: the body is over the gateway's cap."""

    status = 413


class RateLimited(GatewayProblem):
    """429: the department's budget is spent; see ``retry_after``."""

    status = 429

    @property
    def retry_after(self) -> int:
        value = self.problem.get("retry_after", 1)
        return value if isinstance(value, int) else 1


class ServiceUnavailable(GatewayProblem):
    """503: a store the gateway needs is down; nothing was released."""

    status = 503


_BY_STATUS = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Replayed,
        PayloadTooLarge,
        RateLimited,
        ServiceUnavailable,
    )
}


class AnswerRejected(Error):
    """The gateway's answer did not verify: never use its data."""


def problem_from(response: httpx.Response) -> GatewayProblem:
    """The typed exception for a refusal (a non-200 answer), from its problem details."""
    try:
        problem = response.json()
        if not isinstance(problem, dict):
            raise ValueError
    except ValueError:
        problem = {"status": response.status_code, "title": response.reason_phrase}
    cls = _BY_STATUS.get(response.status_code, GatewayProblem)
    return cls(problem)
