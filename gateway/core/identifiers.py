"""Chinese identifiers with check characters (the formats: docs/identifiers.md).

Each identifier type is a small frozen value whose constructor ``parse`` raises
:class:`InvalidIdentifier` unless the text is well-formed *and* its check character is right.
Only a parsed identifier may reach a policy, an adapter or the audit log as a subject.
"""

from __future__ import annotations

import datetime as dt
import enum
import operator
import re
from dataclasses import dataclass

from gateway.errors import InvalidIdentifier

__all__ = [
    "LicenceId",
    "ResidentId",
    "SubjectId",
    "SubjectType",
    "Uscc",
    "parse_subject",
    "resident_id_check_character",
    "uscc_check_character",
]

# --- Unified Social Credit Code (GB 32100-2015) -------------------------------------------
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUE = {c: i for i, c in enumerate(_USCC_ALPHABET)}
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


#: The alphabet as a character class (no I, O, S, V, Z): checked in C, not per character.
_USCC_TEXT = re.compile(r"[0-9A-HJ-NP-RTUW-Y]*")


def uscc_check_character(body: str) -> str:
    """Return the check character for the first 17 characters of a USCC."""
    if len(body) != 17 or not _USCC_TEXT.fullmatch(body):
        raise InvalidIdentifier("uscc", "the first 17 characters must use the USCC alphabet")
    total = sum(map(operator.mul, map(_USCC_VALUE.__getitem__, body), _USCC_WEIGHTS))
    return _USCC_ALPHABET[(31 - total % 31) % 31]


# --- Resident ID number (GB 11643-1999, ISO 7064 MOD 11-2) ---------------------------------
_RID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RID_CHECK = "10X98765432"
#: Σ weight × ord("0"): what the byte values add on top of the digits' values.
_RID_ZERO_OFFSET = sum(_RID_WEIGHTS) * ord("0")


def resident_id_check_character(body: str) -> str:
    """Return the check character for the first 17 digits of a resident ID number."""
    if len(body) != 17 or not body.isascii() or not body.isdigit():
        raise InvalidIdentifier("resident-id", "the first 17 characters must be digits")
    # On the ASCII bytes in C (map), not a generator of int(c): uploads check one per row.
    total = sum(map(operator.mul, body.encode("ascii"), _RID_WEIGHTS)) - _RID_ZERO_OFFSET
    return _RID_CHECK[total % 11]


# --- E-licence identifier (GB/T 36904-2018, ISO/IEC 7064 MOD 37,36) ------------------------
_MOD37_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MOD37_VALUE = {c: i for i, c in enumerate(_MOD37_ALPHABET)}
LICENCE_ROOT = "1.2.156.3005.2"


_MOD37_TEXT = re.compile(r"[0-9A-Z]*")
#: One step of MOD 37,36 as a table: the next ``p`` for each ``p`` (0..36) and value (0..35).
_MOD37_STEP = tuple(tuple((2 * ((p + v) % 36 or 36)) % 37 for v in range(36)) for p in range(37))


def licence_check_character(payload: str) -> str:
    """ISO/IEC 7064 MOD 37,36 check character over the concatenated licence id parts."""
    if not _MOD37_TEXT.fullmatch(payload):
        ch = next(c for c in payload if c not in _MOD37_VALUE)
        raise InvalidIdentifier("licence-id", f"character {ch!r} is outside 0-9A-Z")
    p = 36
    step = _MOD37_STEP
    for v in map(_MOD37_VALUE.__getitem__, payload):
        p = step[p][v]
    return _MOD37_ALPHABET[(37 - p) % 36]


class SubjectType(enum.StrEnum):
    """What kind of identifier names the subject of a lookup."""

    RESIDENT_ID = "resident-id"
    USCC = "uscc"


@dataclass(frozen=True, slots=True)
class Uscc:
    """A Unified Social Credit Code whose check character has been verified."""

    value: str

    type = SubjectType.USCC

    @classmethod
    def parse(cls, text: str) -> Uscc:
        """Parse and check ``text``; raise :class:`InvalidIdentifier` if it is not a USCC."""
        if not isinstance(text, str) or len(text) != 18:
            raise InvalidIdentifier("uscc", "must be 18 characters")
        if not _USCC_TEXT.fullmatch(text):
            raise InvalidIdentifier("uscc", "uses a character outside the USCC alphabet")
        if uscc_check_character(text[:17]) != text[17]:
            raise InvalidIdentifier("uscc", "check character is wrong")
        return cls(text)


@dataclass(frozen=True, slots=True)
class ResidentId:
    """A resident ID number whose birth date and check character have been verified."""

    value: str

    type = SubjectType.RESIDENT_ID

    @classmethod
    def parse(cls, text: str) -> ResidentId:
        """Parse and check ``text``; raise :class:`InvalidIdentifier` if it is not valid."""
        if not isinstance(text, str) or len(text) != 18:
            raise InvalidIdentifier("resident-id", "must be 18 characters")
        body, check = text[:17], text[17]
        if not body.isascii() or not body.isdigit() or check not in _RID_CHECK:
            raise InvalidIdentifier("resident-id", "must be 17 digits and a check character")
        try:
            dt.date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
        except ValueError:
            raise InvalidIdentifier("resident-id", "birth date is not a real date") from None
        if resident_id_check_character(body) != check:
            raise InvalidIdentifier("resident-id", "check character is wrong")
        return cls(text)

    @property
    def birth_date(self) -> dt.date:
        """The birth date encoded in positions 7-14."""
        v = self.value
        return dt.date(int(v[6:10]), int(v[10:12]), int(v[12:14]))


@dataclass(frozen=True, slots=True)
class LicenceId:
    """An e-licence identifier (电子证照标识) whose check character has been verified."""

    value: str
    type_code: str
    issuer: Uscc
    serial: str
    version: str

    @classmethod
    def parse(cls, text: str) -> LicenceId:
        """Parse and check ``text``; raise :class:`InvalidIdentifier` if it is not valid."""
        if not isinstance(text, str) or not text.startswith(LICENCE_ROOT + "."):
            raise InvalidIdentifier("licence-id", f"must start with {LICENCE_ROOT}.")
        parts = text[len(LICENCE_ROOT) + 1 :].split(".")
        if len(parts) != 5:
            raise InvalidIdentifier("licence-id", "must be root.type.issuer.serial.version.check")
        type_code, issuer, serial, version, check = parts
        if len(type_code) != 21 or not type_code[18:].isdigit():
            raise InvalidIdentifier("licence-id", "type code must be a USCC followed by 3 digits")
        Uscc.parse(type_code[:18])
        issuer_uscc = Uscc.parse(issuer)
        if not serial or not serial.isalnum() or not serial.isascii():
            raise InvalidIdentifier("licence-id", "serial must be ASCII letters or digits")
        if len(version) != 3 or not version.isdigit():
            raise InvalidIdentifier("licence-id", "version must be 3 digits")
        if (
            len(check) != 1
            or licence_check_character(type_code + issuer + serial + version) != check
        ):
            raise InvalidIdentifier("licence-id", "check character is wrong")
        return cls(text, type_code, issuer_uscc, serial, version)


SubjectId = Uscc | ResidentId


def parse_subject(subject_type: str, value: str) -> SubjectId:
    """Parse a lookup subject given its declared type."""
    if subject_type == SubjectType.USCC:
        return Uscc.parse(value)
    if subject_type == SubjectType.RESIDENT_ID:
        return ResidentId.parse(value)
    raise InvalidIdentifier("type", "must be 'resident-id' or 'uscc'")
