"""Strict decoding of everything that enters the gateway: one set of wire types and decoders.

Every value a sender controls — token headers and claims, query parameters, form fields,
upload rows, licence contents — is decoded here into typed structures (msgspec Structs with
constraints), never checked by hand in a dict:

* **JSON** is RFC 8259 JSON only: ``NaN``, ``Infinity`` and other extensions are refused (the
  standard library's parser accepts them, and every comparison with NaN is false); text must
  be valid UTF-8 and escapes must not leave lone surrogates; nesting deeper than the decoder's
  recursion limit is refused as malformed rather than raising out of the request.
* **Numbers** are integers where the protocol counts (time claims are whole seconds) and lie
  in the range the code handles; floats must be finite.
* **Text** is valid Unicode without NUL, other C0/C1 control characters, lone surrogates,
  non-characters or bidirectional overrides (:data:`Text`); identifiers are ASCII names
  (:data:`Name`).

A failure names the field and says why (:class:`~gateway.errors.InvalidInput`); the caller
decides whether it is a 400 (request claims, parameters) or an opaque 401 (token headers and
registered claims).

:func:`storable` is the last line: whatever text reaches the audit log is normalised so that
no entry can fail to be written because of what a sender sent.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, TypeVar

import msgspec

from gateway.errors import InvalidInput

__all__ = [
    "EARLIEST_TIME",
    "LATEST_TIME",
    "MAX_INDEX",
    "NAME_PATTERN",
    "SAFE_TEXT_PATTERN",
    "UNSAFE_MULTILINE_TEXT",
    "UNSAFE_TEXT",
    "Name",
    "NumericDate",
    "ShortText",
    "Text",
    "WireError",
    "convert",
    "decode_json",
    "invalid_input_from",
    "storable",
    "text_problem",
]

#: Characters refused in any text a sender gives us: C0 controls (NUL included) and DEL, C1
#: controls, UTF-16 surrogates (lone ones survive some decoders and no store accepts them),
#: the non-characters U+FFFE/U+FFFF, and the bidirectional embeddings, overrides and isolates
#: that make text display other than it reads ("Trojan source").
# Written with escapes, not the characters themselves: the pattern is also published in the
# OpenAPI document (JSON Schema patterns read ``\uXXXX`` the same way), which cannot carry a
# lone surrogate.
_UNSAFE_CLASS = r"\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff\u202a-\u202e\u2066-\u2069"
UNSAFE_TEXT: Final = re.compile(f"[{_UNSAFE_CLASS}]")
#: The same, but tab, line feed and carriage return allowed: for fields that document them
#: (multi-line values of an uploaded file).
UNSAFE_MULTILINE_TEXT: Final = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff\u202a-\u202e\u2066-\u2069]"
)
SAFE_TEXT_PATTERN = f"^[^{_UNSAFE_CLASS}]*$"
NAME_PATTERN = r"^[A-Za-z0-9_.:-]+$"

#: Free text (a reason in words, a name): 1–256 characters, no unsafe characters.
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=SAFE_TEXT_PATTERN)]
#: Short free text (a label): 1–64 characters, no unsafe characters.
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=SAFE_TEXT_PATTERN)]
#: An identifier chosen by a system (operator, case number, resource id): 1–64 ASCII
#: letters, digits or ``_ . : -``.
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=NAME_PATTERN)]

#: The window of instants the gateway accepts in a time claim (2000-01-01 … 2100-01-01 UTC):
#: far wider than any clock skew, far narrower than anything that overflows a float or a
#: database column.
EARLIEST_TIME: Final = 946_684_800
LATEST_TIME: Final = 4_102_444_800
#: The largest count or index (entry index, tree size, version) taken from a sender: exact in
#: a JSON double and in every database's 64-bit integer.
MAX_INDEX: Final = 2**53 - 1
#: A JWT NumericDate as the gateway takes it: whole seconds since the epoch, in the window.
NumericDate = Annotated[int, msgspec.Meta(ge=EARLIEST_TIME, le=LATEST_TIME)]

# What the constraint messages mean, in words, for the field-level problem a sender gets.
_PATTERN_REASONS = {
    SAFE_TEXT_PATTERN: "must not contain control characters, lone surrogates, "
    "non-characters or bidirectional overrides",
    NAME_PATTERN: "must be 1-64 letters, digits or _ . : - characters",
}
_PATTERN_REASONS_BY_REPR = {repr(p): reason for p, reason in _PATTERN_REASONS.items()}
_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_MISSING = re.compile(r"Object missing required field `([^`]+)`")
_UNKNOWN = re.compile(r"Object contains unknown field `([^`]+)`")
_REGEX = re.compile(r"Expected `str` matching regex (?P<pattern>'.*')$", re.S)

_T = TypeVar("_T")


class WireError(ValueError):
    """Bytes that are not strict JSON (syntax, encoding, nesting, numbers)."""


def decode_json(data: bytes | str, *, what: str = "body") -> Any:
    """Decode strict JSON, or raise :class:`WireError` (never anything else).

    msgspec refuses ``NaN``/``Infinity``, invalid UTF-8 and lone surrogate escapes; a number
    beyond a float's range is a validation error there, and nesting beyond the interpreter's
    recursion limit a ``RecursionError`` — both become :class:`WireError` here.
    """
    try:
        return msgspec.json.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeError, RecursionError) as exc:
        raise WireError(f"{what} is not strict JSON: {_short(exc)}") from None


def convert(raw: Any, kind: type[_T], prefix: str = "") -> _T:
    """``raw`` (decoded JSON, or strings from a form or query) as ``kind``, or
    :class:`~gateway.errors.InvalidInput` naming the field (under ``prefix``)."""
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        raise invalid_input_from(exc, prefix) from None
    except (UnicodeError, RecursionError):
        # A member name with a lone surrogate, or nesting beyond the limit: msgspec raises
        # these while building its own message, so the field cannot be named.
        raise InvalidInput(prefix or "body", "is not valid text or is nested too deeply") from None


def invalid_input_from(exc: msgspec.ValidationError, prefix: str = "") -> InvalidInput:
    """Turn msgspec's message ``Expected `str` - at `$.a.b``` into a field and a reason.

    The reason never repeats what the sender sent (a member name may itself be hostile): an
    unknown member is reported by position, a failed pattern by what the pattern means.
    """
    m = _PATH.match(str(exc))
    msg, path = (m.group("msg"), m.group("path") or "") if m else (str(exc), "")
    path = path.lstrip(".")
    if missing := _MISSING.match(msg):
        name = missing.group(1)
        path = f"{path}.{name}" if path else name
        msg = "is required"
    elif _UNKNOWN.match(msg):
        msg = "has a member that is not part of this request"
    elif regex := _REGEX.match(msg):
        msg = _PATTERN_REASONS_BY_REPR.get(regex.group("pattern"), "has the wrong format")
    field = ".".join(p for p in (prefix, path) if p) or "body"
    return InvalidInput(storable(field, 128), storable(msg, 200))


def text_problem(value: str, *, multiline: bool = False) -> str | None:
    """Why ``value`` is not acceptable free text, or ``None`` when it is (``multiline``: tab,
    line feed and carriage return allowed)."""
    if (UNSAFE_MULTILINE_TEXT if multiline else UNSAFE_TEXT).search(value):
        if multiline:
            return (
                "must not contain control characters other than tab and line breaks, lone "
                "surrogates, non-characters or bidirectional overrides"
            )
        return _PATTERN_REASONS[SAFE_TEXT_PATTERN]
    return None


def storable(value: str, limit: int | None = None) -> str:
    """``value`` as text any store accepts: unsafe characters replaced by U+FFFD, at most
    ``limit`` characters. The identity (the same object) for text that is already safe."""
    if UNSAFE_TEXT.search(value):
        value = UNSAFE_TEXT.sub("\ufffd", value)
    if limit is not None and len(value) > limit:
        value = value[:limit]
    return value


def _short(exc: BaseException) -> str:
    return storable(str(exc), 120)
