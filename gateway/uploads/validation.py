"""Reading an uploaded file row by row and checking each row against the catalogue.

Pure: no database, no network; memory stays bounded by one line (at most
:data:`MAX_LINE_BYTES`) whatever the size of the file.

Formats (UTF-8; a leading byte-order mark is ignored):

* **CSV** (RFC 4180, comma-separated, ``"`` quoting): the first record is the header. It must
  name the key column; every other column must be a catalogued field's column, and every
  required field's column must be there — otherwise the whole file is refused before any row
  is read (a misspelt column would otherwise silently drop data). Columns may come in any
  order and optional fields may be left out. An empty cell is a missing value.
* **JSON Lines**: one JSON object per line, keyed by the same names; blank lines are skipped.
  A member that is not a column is a problem of that row (there is no header to refuse).

A row is accepted when every check passes, and rejected with one problem per bad field
otherwise (see :class:`Problem`). Checks: the key is present and its check character is right
(:class:`~gateway.core.identifiers.Uscc` / :class:`~gateway.core.identifiers.ResidentId`; the
key is trimmed and upper-cased first, so ``x`` may end an ID number); each value has its
field's type; required fields are present. Duplicate keys are found by the loader, which
sees all rows (see :mod:`gateway.uploads.store`).

Values as they are stored and answered: ``string`` text (tab and line breaks allowed, no other
control character, lone surrogate, non-character or bidirectional override), ``integer`` an int (CSV
``-?[0-9]{1,18}``), ``number`` a float (CSV decimal or exponent notation, finite),
``boolean`` (CSV ``true``/``false``/``1``/``0``, any case), ``date`` ``YYYY-MM-DD``.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

import msgspec

from gateway.core.identifiers import ResidentId, Uscc
from gateway.core.policy import FieldType
from gateway.core.wire import storable, text_problem
from gateway.errors import InvalidIdentifier, InvalidInput
from gateway.uploads.claims import UploadFormat
from gateway.uploads.options import UploadOptions

__all__ = [
    "MAX_LINE_BYTES",
    "MAX_VALUE_CHARS",
    "Accepted",
    "Problem",
    "ProblemCode",
    "Rejected",
    "read_rows",
]

#: The longest line (one CSV line or one JSON Lines record) the reader holds in memory.
MAX_LINE_BYTES = 1024 * 1024
#: The longest text value a field may have.
MAX_VALUE_CHARS = 4096
_FIELD_NAME_CHARS = 64  # report column width; longer names (JSON members) are cut


class ProblemCode:
    """Stable codes of the rejection report (the ``reason`` column says more, in words)."""

    MISSING = "missing"  # the key or a required field has no value
    IDENTIFIER = "identifier"  # the key is not a valid USCC / resident ID (check character …)
    TYPE = "type"  # a value does not have its field's type
    TOO_LONG = "too-long"  # a text value is longer than MAX_VALUE_CHARS
    UNKNOWN_FIELD = "unknown-field"  # a JSON member that is not a column of the resource
    MALFORMED = "malformed"  # the row itself cannot be read (bad JSON, wrong number of cells)
    DUPLICATE = "duplicate"  # the key occurs on more than one otherwise valid row


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a row was rejected: where (line, field), whose (key, if readable), why."""

    line: int
    key: str | None
    field: str  # the file's column / member name; "" for the row as a whole
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Accepted:
    """A row that passed every check: its line, its key and its typed values as JSON text."""

    line: int
    key: str
    data: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row that failed at least one check."""

    line: int
    problems: tuple[Problem, ...]


class _Bad(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


_INTEGER = re.compile(r"^[+-]?[0-9]{1,18}$")
_NUMBER = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})
_INT_LIMIT = 2**63


def _date(text: str) -> str:
    if not _DATE.match(text):
        raise _Bad(ProblemCode.TYPE, "must be a date YYYY-MM-DD")
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        raise _Bad(ProblemCode.TYPE, "is not a real date") from None
    return text


def _string(value: str) -> str:
    if len(value) > MAX_VALUE_CHARS:
        raise _Bad(ProblemCode.TOO_LONG, f"is longer than {MAX_VALUE_CHARS} characters")
    if problem := text_problem(value, multiline=True):
        # NUL, other control characters, non-characters, bidirectional overrides: no store
        # or page should get them from a provider's file (a quoted cell may span lines).
        raise _Bad(ProblemCode.TYPE, problem)
    return value


def _integer_text(text: str) -> int:
    if not _INTEGER.match(text):
        raise _Bad(ProblemCode.TYPE, "must be an integer")
    return int(text)


def _number_text(text: str) -> float:
    if not _NUMBER.match(text):
        raise _Bad(ProblemCode.TYPE, "must be a number")
    number = float(text)
    if not math.isfinite(number):
        raise _Bad(ProblemCode.TYPE, "must be a finite number")
    return number


def _boolean_text(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _Bad(ProblemCode.TYPE, "must be true, false, 1 or 0")


#: A CSV cell (not empty) as a value of the field's type.
_FROM_TEXT: dict[FieldType, Callable[[str], Any]] = {
    FieldType.STRING: _string,
    FieldType.INTEGER: _integer_text,
    FieldType.NUMBER: _number_text,
    FieldType.BOOLEAN: _boolean_text,
    FieldType.DATE: _date,
}


def _string_json(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad(ProblemCode.TYPE, "must be a string")
    return _string(value)


def _integer_json(value: Any) -> int:
    # bool is an int in Python; a JSON true is not a count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(ProblemCode.TYPE, "must be an integer")
    if not -_INT_LIMIT < value < _INT_LIMIT:
        raise _Bad(ProblemCode.TYPE, "is out of range")
    return value


def _number_json(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(ProblemCode.TYPE, "must be a number")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond a float's range
        raise _Bad(ProblemCode.TYPE, "must be a finite number") from None
    if not math.isfinite(number):
        raise _Bad(ProblemCode.TYPE, "must be a finite number")
    return number


def _boolean_json(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad(ProblemCode.TYPE, "must be true or false")
    return value


def _date_json(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad(ProblemCode.TYPE, "must be a date YYYY-MM-DD")
    return _date(value)


#: A JSON value (not null) as a value of the field's type.
_FROM_JSON: dict[FieldType, Callable[[Any], Any]] = {
    FieldType.STRING: _string_json,
    FieldType.INTEGER: _integer_json,
    FieldType.NUMBER: _number_json,
    FieldType.BOOLEAN: _boolean_json,
    FieldType.DATE: _date_json,
}


class _RowChecker:
    """Checks one row's cells (already mapped column → raw value) against the options.

    The per-field work is planned once per file (name, column, converter, required), so a
    row costs one dictionary lookup and one converter call per field: uploads run to
    millions of rows.
    """

    def __init__(
        self,
        options: UploadOptions,
        converters: Mapping[FieldType, Callable[[Any], Any]],
        empty: Callable[[Any], bool],
    ) -> None:
        self._key = options.key
        self._parse_key: Callable[[str], object] = (
            Uscc.parse if options.subject == "uscc" else ResidentId.parse
        )
        self._plan = tuple(
            (spec.name, spec.column, converters[spec.type], spec.name in options.required)
            for spec in options.fields
        )
        self._empty = empty

    def check(self, line: int, cells: Mapping[str, Any]) -> Accepted | Rejected:
        problems: dict[str, Problem] = {}
        key = self._check_key(line, cells.get(self._key), problems)
        empty = self._empty
        values: dict[str, Any] = {}
        for name, column, convert, required in self._plan:
            raw = cells.get(column)
            if raw is None or empty(raw):
                if required:
                    problems[column] = Problem(
                        line, key, column, ProblemCode.MISSING, "this field is required"
                    )
                values[name] = None
                continue
            try:
                values[name] = convert(raw)
            except _Bad as bad:
                problems[column] = Problem(line, key, column, bad.code, bad.reason)
                values[name] = None
        if problems:
            return Rejected(line, tuple(problems.values()))
        assert key is not None
        return Accepted(line, key, _encode(values).decode())

    def _check_key(self, line: int, raw: Any, problems: dict[str, Problem]) -> str | None:
        if raw is None or self._empty(raw):
            problems[self._key] = Problem(
                line, None, self._key, ProblemCode.MISSING, "the key is required"
            )
            return None
        if not isinstance(raw, str):
            problems[self._key] = Problem(
                line, None, self._key, ProblemCode.TYPE, "the key must be a string"
            )
            return None
        key = raw.strip().upper()
        try:
            self._parse_key(key)
        except InvalidIdentifier as exc:
            # The key is kept in the report (cut to its column's width): the provider needs
            # to find the row, and the report goes to the provider only.
            problems[self._key] = Problem(
                line, storable(key, 64), self._key, ProblemCode.IDENTIFIER, exc.reason
            )
            return None
        return key


_encode = msgspec.json.Encoder().encode


class _Lines:
    """The file's lines, decoded, each at most MAX_LINE_BYTES; counts physical lines."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.number = 0

    def __iter__(self) -> Iterator[str]:
        while True:
            raw = self._stream.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            self.number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise InvalidInput(
                    "body", f"line {self.number} is longer than {MAX_LINE_BYTES} bytes"
                )
            if self.number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # spreadsheet programs write a byte-order mark
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput("body", f"line {self.number} is not UTF-8") from None


def _csv_header(cells: list[str], options: UploadOptions) -> list[str]:
    header = [storable(c.strip(), 128) for c in cells]
    known = {options.key, *(f.column for f in options.fields)}
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise InvalidInput("body", f"the header repeats columns: {', '.join(repeated)}")
    if options.key not in header:
        raise InvalidInput("body", f"the header must name the key column {options.key!r}")
    unknown = [c for c in header if c not in known]
    if unknown:
        raise InvalidInput(
            "body",
            f"unknown columns {', '.join(map(repr, unknown))}; the columns of this resource "
            f"are {', '.join(sorted(known))}",
        )
    missing = sorted(f.column for f in options.fields if f.name in options.required)
    missing = [c for c in missing if c not in header]
    if missing:
        raise InvalidInput("body", f"required columns are missing: {', '.join(missing)}")
    return header


def _read_csv(stream: IO[bytes], options: UploadOptions) -> Iterator[Accepted | Rejected]:
    lines = _Lines(stream)
    reader = csv.reader(lines, strict=True)
    checker = _RowChecker(options, _FROM_TEXT, _empty_cell)
    header: list[str] | None = None
    end = 0  # the last physical line of the previous record
    try:
        for cells in reader:
            start, end = end + 1, lines.number
            if not cells:
                continue  # a blank line
            if header is None:
                header = _csv_header(cells, options)
                continue
            if len(cells) != len(header):
                yield Rejected(
                    start,
                    (
                        Problem(
                            start,
                            None,
                            "",
                            ProblemCode.MALFORMED,
                            f"has {len(cells)} cells; the header has {len(header)}",
                        ),
                    ),
                )
                continue
            yield checker.check(start, dict(zip(header, cells, strict=True)))
    except csv.Error as exc:
        raise InvalidInput("body", f"CSV error on line {lines.number}: {exc}") from None
    if header is None:
        raise InvalidInput("body", "the file is empty: a CSV file starts with its header")


#: A CSV cell is always text: it is missing when it is empty (``not`` in C, once per cell).
_empty_cell: Callable[[Any], bool] = operator.not_


def _null(value: Any) -> bool:
    return value is None


def _read_jsonl(stream: IO[bytes], options: UploadOptions) -> Iterator[Accepted | Rejected]:
    lines = _Lines(stream)
    checker = _RowChecker(options, _FROM_JSON, _null)
    known = {options.key, *(f.column for f in options.fields)}
    decoder = msgspec.json.Decoder()
    for text in lines:
        number = lines.number
        if not text.strip():
            continue
        try:
            record = decoder.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeError, RecursionError):
            # Not JSON, a number beyond a float's range, nesting beyond the decoder's limit.
            record = None
        if not isinstance(record, dict):
            yield Rejected(
                number,
                (Problem(number, None, "", ProblemCode.MALFORMED, "is not a JSON object"),),
            )
            continue
        outcome = checker.check(number, record)
        key = (
            outcome.key
            if isinstance(outcome, Accepted)
            else next((p.key for p in outcome.problems if p.key), None)
        )
        unknown = [
            Problem(
                number,
                key,
                name[:_FIELD_NAME_CHARS],
                ProblemCode.UNKNOWN_FIELD,
                "is not a column of this resource",
            )
            for name in dict.fromkeys(
                storable(n, _FIELD_NAME_CHARS) for n in record if n not in known
            )
        ]
        if unknown:
            earlier = outcome.problems if isinstance(outcome, Rejected) else ()
            taken = {p.field for p in earlier}
            extra = tuple(p for p in unknown if p.field not in taken)
            yield Rejected(number, earlier + extra)
        else:
            yield outcome


def read_rows(
    stream: IO[bytes], fmt: UploadFormat, options: UploadOptions
) -> Iterator[Accepted | Rejected]:
    """Each data row of the file in ``stream``, accepted or rejected, in file order.

    Raises :class:`~gateway.errors.InvalidInput` (field ``body``) when the file as a whole
    cannot be used: a bad CSV header, a line over :data:`MAX_LINE_BYTES`, text that is not
    UTF-8, broken CSV quoting. Rows already yielded must then be discarded by the caller.
    """
    if fmt is UploadFormat.CSV:
        return _read_csv(stream, options)
    return _read_jsonl(stream, options)
