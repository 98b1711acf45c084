"""What a lookup request says, once its token is verified: schema and parsing.

The registered claims (iss, aud, iat, exp, jti) were checked by the token verifier; here we
check the body of the request — purpose, operator, query — and turn it into a
:class:`LookupRequest` with a parsed, check-character-verified subject. Any problem is an
:class:`~gateway.errors.InvalidInput` naming the claim path (``query.subject.id``, …).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from gateway.core.identifiers import SubjectId, parse_subject
from gateway.errors import InvalidInput

__all__ = ["MAX_FIELDS", "LookupRequest", "Purpose", "parse_lookup_claims"]

MAX_FIELDS = 64

_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


class Purpose(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Why the data is read: the service item, the case and a reason in words (用证事由)."""

    item: _Name
    case: _Name
    reason: _Text


class _Subject(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: _Name
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class _Query(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    resource: _Name
    subject: _Subject
    fields: Annotated[list[_Name], msgspec.Meta(min_length=1, max_length=MAX_FIELDS)]


class _LookupClaims(msgspec.Struct, frozen=True):
    # Registered claims are already verified; only the request's own claims are typed here.
    purpose: Purpose
    operator: _Name
    query: _Query


@dataclass(frozen=True, slots=True)
class LookupRequest:
    """A verified, well-formed lookup: who asks, why, for which record and fields."""

    consumer: str
    operator: str
    purpose: Purpose
    resource: str
    subject: SubjectId
    fields: tuple[str, ...]


_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def invalid_input_from(exc: msgspec.ValidationError, prefix: str = "") -> InvalidInput:
    """Turn msgspec's message ``Expected `str` - at `$.a.b``` into a field and a reason."""
    m = _PATH.match(str(exc))
    msg, path = (m.group("msg"), m.group("path") or "") if m else (str(exc), "")
    path = path.lstrip(".")
    missing = re.match(r"Object missing required field `([^`]+)`", msg)
    if missing:
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
        msg = "is required"
    field = ".".join(p for p in (prefix, path) if p) or "body"
    return InvalidInput(field, msg)


def parse_lookup_claims(consumer: str, claims: dict[str, Any]) -> LookupRequest:
    """Validate the request claims of a verified token; raise :class:`InvalidInput`."""
    try:
        body = msgspec.convert(claims, _LookupClaims)
    except msgspec.ValidationError as exc:
        raise invalid_input_from(exc) from None
    subject = body.query.subject
    try:
        subject_id = parse_subject(subject.type, subject.id)
    except InvalidInput as exc:
        raise InvalidInput(
            "query.subject." + ("type" if exc.field == "type" else "id"), exc.reason
        ) from None
    return LookupRequest(
        consumer=consumer,
        operator=body.operator,
        purpose=body.purpose,
        resource=body.query.resource,
        subject=subject_id,
        fields=tuple(dict.fromkeys(body.query.fields)),
    )
