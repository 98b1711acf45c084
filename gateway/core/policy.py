"""Sharing policy: the catalogue, the grants and the decision they make together.

A :class:`PolicySet` is built once from the reviewed files in ``policies/`` (see
:func:`load_policy_set`), validated as a whole, and then only read. Decisions are pure
functions of the set, the request and an explicit ``now``: default deny, allowed only by a
grant that names this consumer, resource, every requested field and the service item.
"""

from __future__ import annotations

import datetime as dt
import difflib
import enum
import hashlib
import re
import tomllib
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import msgspec

from gateway.core.identifiers import Uscc
from gateway.core.masks import Mask, parse_mask
from gateway.errors import InvalidIdentifier, InvalidInput, PolicyDenied, PolicySetInvalid

__all__ = [
    "DISTRICT_TZ",
    "Decision",
    "Department",
    "Field",
    "FieldType",
    "Grant",
    "ParsedPolicyTexts",
    "PolicyFilesInvalid",
    "PolicyProblem",
    "PolicySet",
    "ReasonCode",
    "Resource",
    "Role",
    "ServiceItem",
    "SharingClass",
    "load_policy_set",
    "parse_policy_texts",
    "policy_set_from_texts",
    "read_policy_texts",
]

#: Dates in grants (valid from / until) are the district's calendar dates.
DISTRICT_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")

POLICY_FILES = ("departments.toml", "catalogue.toml", "grants.toml")


class Role(enum.StrEnum):
    """What a department does in the exchange."""

    CONSUMER = "consumer"
    PROVIDER = "provider"
    ISSUER = "issuer"
    PORTAL = "portal"


class SharingClass(enum.StrEnum):
    """The catalogue's sharing class of a resource (共享类型)."""

    UNCONDITIONAL = "unconditional"  # 无条件共享
    CONDITIONAL = "conditional"  # 有条件共享: needs an approved grant
    NOT_SHARED = "not-shared"  # 不予共享: can never be granted


class ReasonCode(enum.StrEnum):
    """Why a request was refused by policy. Stable: they appear in audit entries."""

    NO_GRANT = "no-grant"
    FIELD_NOT_GRANTED = "field-not-granted"
    PURPOSE_NOT_GRANTED = "purpose-not-granted"
    GRANT_EXPIRED = "grant-expired"
    APPROVAL_MISSING = "approval-missing"
    NOT_SHARED = "not-shared"
    OUTSIDE_HOURS = "outside-hours"
    QUOTA_EXHAUSTED = "quota-exhausted"
    CASE_CLOSED = "case-closed"


class FieldType(enum.StrEnum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"


# --- file schema (what reviewers edit) ----------------------------------------------------


class Department(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A department registered with the gateway."""

    id: str
    name: str
    uscc: str
    roles: tuple[Role, ...]


class Field(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One field of a shared resource; ``column`` is where the source keeps it."""

    name: str
    type: FieldType
    column: str | None = None
    sensitivity: str = "internal"
    description: str = ""


class Resource(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A catalogued shared resource (共享资源) of one provider department."""

    id: str
    name: str
    provider: str
    sharing: SharingClass
    subject: str  # "resident-id" or "uscc": which identifier keys a record
    fields: tuple[Field, ...]
    source: dict[str, Any]  # adapter kind and its options; read by the adapter only
    legal_basis: str = ""
    cache_ttl_seconds: int = 0

    @property
    def field_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)


class Material(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A material a service item requires: a catalogued resource, or one the applicant brings."""

    name: str
    resource: str | None = None


class ServiceItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A government service item (政务服务事项) with its unified code."""

    code: str
    name: str
    department: str
    materials: tuple[Material, ...] = ()


class Approval(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Who approved a conditional grant, when, under which document."""

    by: str
    on: dt.date
    document: str


class Weekday(enum.StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


_WEEKDAYS = list(Weekday)


class OfficeHours(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """When a grant may be used, in the district's local time: ``start <= t < end``."""

    start: dt.time
    end: dt.time
    days: tuple[Weekday, ...] = (Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI)

    def contains(self, local: dt.datetime) -> bool:
        """Whether ``local`` (district time) falls inside these hours."""
        return (
            _WEEKDAYS[local.weekday()] in self.days
            and self.start <= local.time().replace(tzinfo=None) < self.end
        )


class Grant(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Permission for one consumer to read some fields of one resource for some items.

    Optional conditions: ``valid_from``/``valid_until`` (district dates, inclusive);
    ``approval`` (required for conditional resources); ``max_subjects_per_day`` (distinct
    subjects the consumer may read under this grant per district day); ``office_hours``;
    ``masks`` (field name → mask spec, see :mod:`gateway.core.masks`).
    """

    id: str
    consumer: str
    resource: str
    fields: tuple[str, ...]
    items: tuple[str, ...]
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None
    approval: Approval | None = None
    max_subjects_per_day: Annotated[int, msgspec.Meta(ge=1)] | None = None
    office_hours: OfficeHours | None = None
    masks: dict[str, str] = msgspec.field(default_factory=dict)
    note: str = ""


class _DepartmentsFile(msgspec.Struct, forbid_unknown_fields=True):
    department: list[Department]


class _CatalogueFile(msgspec.Struct, forbid_unknown_fields=True):
    resource: list[Resource]
    item: list[ServiceItem]


class _GrantsFile(msgspec.Struct, forbid_unknown_fields=True):
    grant: list[Grant] = msgspec.field(default_factory=list)


# --- decisions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    """An allowing decision: which grant allowed it under which policy version, and the
    conditions still to apply (masks on release, the per-day subject quota)."""

    grant_id: str
    policy_version: str
    fields: tuple[str, ...]
    masks: Mapping[str, Mask]
    max_subjects_per_day: int | None

    def release(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The granted fields of ``values``, masked where the grant says so."""
        masks = self.masks
        return {
            name: masks[name].apply(values.get(name)) if name in masks else values.get(name)
            for name in self.fields
        }


@dataclass(frozen=True, slots=True)
class _Refusal:
    stage: int  # how far the grant got before failing; the furthest explains best
    code: ReasonCode
    detail: str


class PolicySet:
    """A validated, immutable set of departments, catalogue and grants.

    Build it with :func:`load_policy_set` or :meth:`from_documents`; do not mutate it.
    """

    def __init__(
        self,
        *,
        departments: Iterable[Department],
        resources: Iterable[Resource],
        items: Iterable[ServiceItem],
        grants: Iterable[Grant],
    ) -> None:
        self.departments: Mapping[str, Department] = {d.id: d for d in departments}
        self.resources: Mapping[str, Resource] = {r.id: r for r in resources}
        self.items: Mapping[str, ServiceItem] = {i.code: i for i in items}
        self.grants: Mapping[str, Grant] = {g.id: g for g in grants}
        self._by_pair: dict[tuple[str, str], list[Grant]] = {}
        for g in self.grants.values():
            self._by_pair.setdefault((g.consumer, g.resource), []).append(g)
        self._masks: dict[str, dict[str, Mask]] = {}
        for g in self.grants.values():
            try:
                self._masks[g.id] = {f: parse_mask(spec) for f, spec in g.masks.items()}
            except ValueError:
                self._masks[g.id] = {}  # reported by validate()
        self.version = self._compute_version()

    def _compute_version(self) -> str:
        # The version is a hash of the parsed set in a deterministic encoding, so that
        # reformatting a file does not change it but any change of meaning does.
        doc = {
            "departments": sorted(self.departments.values(), key=lambda d: d.id),
            "resources": sorted(self.resources.values(), key=lambda r: r.id),
            "items": sorted(self.items.values(), key=lambda i: i.code),
            "grants": sorted(self.grants.values(), key=lambda g: g.id),
        }
        digest = hashlib.sha256(msgspec.json.encode(doc, order="sorted")).hexdigest()
        return f"sha256:{digest[:32]}"

    def resource(self, resource_id: str) -> Resource:
        """The catalogued resource, or :class:`InvalidInput` naming ``query.resource``."""
        try:
            return self.resources[resource_id]
        except KeyError:
            raise InvalidInput("query.resource", "is not in the catalogue") from None

    def service_item(self, code: str) -> ServiceItem:
        """The catalogued service item, or :class:`InvalidInput` naming ``purpose.item``."""
        try:
            return self.items[code]
        except KeyError:
            raise InvalidInput("purpose.item", "is not a catalogued service item code") from None

    def decide(
        self,
        *,
        consumer: str,
        resource: Resource,
        fields: Iterable[str] | None,
        item: ServiceItem,
        now: dt.datetime,
    ) -> Decision:
        """Return the allowing :class:`Decision` or raise :class:`PolicyDenied`.

        Default deny; the first grant in file order that allows the request decides.
        ``fields`` must be known fields of ``resource``; ``None`` asks whether *any* grant
        lets the consumer read the resource for this item (the manifest's question), and
        the decision then carries that grant's fields.
        """
        requested = None if fields is None else tuple(dict.fromkeys(fields))
        if resource.sharing is SharingClass.NOT_SHARED:
            # Unreachable with a validated set (such grants are refused at load), kept so
            # that the rule holds even if a grant slipped in some other way.
            raise PolicyDenied(ReasonCode.NOT_SHARED, "the resource is not shared")
        candidates = self._by_pair.get((consumer, resource.id))
        if not candidates:
            raise PolicyDenied(ReasonCode.NO_GRANT, "no grant for this consumer and resource")
        local = now.astimezone(DISTRICT_TZ)
        best: _Refusal | None = None
        for grant in candidates:
            refusal = self._check(grant, resource, requested, item.code, local)
            if refusal is None:
                return Decision(
                    grant.id,
                    self.version,
                    grant.fields if requested is None else requested,
                    self._masks[grant.id],
                    grant.max_subjects_per_day,
                )
            if best is None or refusal.stage > best.stage:
                best = refusal
        assert best is not None
        raise PolicyDenied(best.code, best.detail)

    def explain(
        self,
        *,
        consumer: str,
        resource: Resource,
        fields: Iterable[str] | None,
        item: ServiceItem,
        now: dt.datetime,
    ) -> list[tuple[Grant, _Refusal | None]]:
        """Every grant for this consumer and resource with what it says about the request
        (``None``: it allows it), in the order :meth:`decide` tries them."""
        requested = None if fields is None else tuple(dict.fromkeys(fields))
        local = now.astimezone(DISTRICT_TZ)
        return [
            (g, self._check(g, resource, requested, item.code, local))
            for g in self._by_pair.get((consumer, resource.id), [])
        ]

    @staticmethod
    def _check(
        grant: Grant,
        resource: Resource,
        fields: tuple[str, ...] | None,
        item: str,
        local: dt.datetime,
    ) -> _Refusal | None:
        if item not in grant.items:
            return _Refusal(
                1, ReasonCode.PURPOSE_NOT_GRANTED, "the grant does not name this service item"
            )
        missing = [f for f in fields or () if f not in grant.fields]
        if missing:
            return _Refusal(
                2, ReasonCode.FIELD_NOT_GRANTED, f"fields not granted: {', '.join(missing)}"
            )
        today = local.date()
        if (grant.valid_from and today < grant.valid_from) or (
            grant.valid_until and today > grant.valid_until
        ):
            return _Refusal(3, ReasonCode.GRANT_EXPIRED, "the grant is not in force today")
        if resource.sharing is SharingClass.CONDITIONAL and grant.approval is None:
            return _Refusal(
                4, ReasonCode.APPROVAL_MISSING, "conditional resource needs an approved grant"
            )
        if grant.office_hours is not None and not grant.office_hours.contains(local):
            return _Refusal(5, ReasonCode.OUTSIDE_HOURS, "outside the grant's office hours")
        return None

    def validate(self) -> None:
        """Raise :class:`PolicySetInvalid` listing every inconsistency of the set.

        The messages name file, entry and field; only sets read from their texts (see
        :func:`policy_set_from_texts`) can also say on which line.
        """
        issues = self._issues()
        if issues:
            raise PolicyFilesInvalid(
                [PolicyProblem(i.file, None, i.field, i.reason) for i in issues]
            )

    def _issues(self) -> list[_Issue]:
        return [
            *self._department_issues(),
            *self._catalogue_issues(),
            *self._grant_issues(),
        ]

    def _department_issues(self) -> list[_Issue]:
        issues: list[_Issue] = []
        for d in self.departments.values():
            try:
                Uscc.parse(d.uscc)
            except InvalidIdentifier as exc:
                issues.append(_Issue("department", d.id, ("uscc",), exc.reason))
        return issues

    def _catalogue_issues(self) -> list[_Issue]:
        issues: list[_Issue] = []
        deps = self.departments
        for r in self.resources.values():
            issue = _reporter(issues, "resource", r.id)
            if r.provider not in deps:
                issue(("provider",), f"{r.provider!r} is not a department")
            elif Role.PROVIDER not in deps[r.provider].roles:
                issue(("provider",), f"department {r.provider!r} lacks the provider role")
            if r.subject not in ("resident-id", "uscc"):
                issue(("subject",), f"must be 'resident-id' or 'uscc', not {r.subject!r}")
            if r.sharing is not SharingClass.UNCONDITIONAL and not r.legal_basis:
                issue(("legal_basis",), f"{r.sharing} resources need a legal basis")
            names = [f.name for f in r.fields]
            for name in sorted({n for n in names if names.count(n) > 1}):
                issue(("fields",), f"field name {name!r} repeats", named=name, occurrence=2)
            if "adapter" not in r.source:
                issue(("source",), "needs an 'adapter'")
        for i in self.items.values():
            if i.department not in deps:
                issues.append(
                    _Issue("item", i.code, ("department",), f"{i.department!r} is not a department")
                )
            for n, m in enumerate(i.materials):
                if m.resource is not None and m.resource not in self.resources:
                    issues.append(
                        _Issue(
                            "item",
                            i.code,
                            ("materials", n, "resource"),
                            f"material {m.name!r} names {m.resource!r}, which is not in the "
                            "catalogue",
                            value=m.resource,
                        )
                    )
        return issues

    def _grant_issues(self) -> list[_Issue]:
        issues: list[_Issue] = []
        deps = self.departments
        for g in self.grants.values():
            issue = _reporter(issues, "grant", g.id)
            if g.consumer not in deps:
                issue(("consumer",), f"{g.consumer!r} is not a department")
            res = self.resources.get(g.resource)
            if res is None:
                issue(("resource",), f"{g.resource!r} is not in the catalogue")
            else:
                if res.sharing is SharingClass.NOT_SHARED:
                    issue(("resource",), f"{g.resource!r} is not-shared and can never be granted")
                unknown = [f for f in g.fields if f not in res.field_names]
                if unknown:
                    issue(("fields",), f"unknown fields {', '.join(unknown)}", value=unknown[0])
            bad_items = [c for c in g.items if c not in self.items]
            if bad_items:
                issue(
                    ("items",), f"unknown service items {', '.join(bad_items)}", value=bad_items[0]
                )
            if not g.fields:
                issue(("fields",), "must not be empty")
            if not g.items:
                issue(("items",), "must not be empty")
            if g.valid_from and g.valid_until and g.valid_until < g.valid_from:
                issue(("valid_until",), f"is before valid_from ({g.valid_from})")
            if g.office_hours and g.office_hours.end <= g.office_hours.start:
                issue(("office_hours", "end"), "is not after start")
            if g.office_hours and not g.office_hours.days:
                issue(("office_hours", "days"), "must name at least one day")
            for field_name, spec in g.masks.items():
                path: tuple[str | int, ...] = ("masks", field_name)
                try:
                    mask = parse_mask(spec)
                except ValueError as exc:
                    issue(path, str(exc))
                    continue
                if field_name not in g.fields:
                    issue(path, "the field is not granted")
                elif res is not None and mask.text_only:
                    kind = next((f.type for f in res.fields if f.name == field_name), None)
                    if kind is not None and kind is not FieldType.STRING:
                        issue(path, f"mask {spec!r} needs a string field, not a {kind} one")
        return issues


# --- reading the files, and pointing at the line of each problem --------------------------


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One problem of the policy files: where (file, line, field path) and what is wrong.

    ``line`` is ``None`` only where there is no text to point into (a missing file, or a
    set validated without its texts); ``field`` is empty for the file as a whole.
    """

    file: str
    line: int | None
    field: str
    reason: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.reason}" if self.field else f"{where}: {self.reason}"


class PolicyFilesInvalid(PolicySetInvalid):
    """:class:`PolicySetInvalid` that also keeps each problem located (``findings``).

    ``problems`` holds the same problems as text, ``<file>:<line>: <field>: <reason>``.
    """

    def __init__(self, findings: Iterable[PolicyProblem]) -> None:
        self.findings = list(findings)
        super().__init__([str(f) for f in self.findings])


#: Which file holds each kind of entry, and the key that identifies an entry.
_FILE_OF = {
    "department": "departments.toml",
    "resource": "catalogue.toml",
    "item": "catalogue.toml",
    "grant": "grants.toml",
}
_ID_KEY = {"department": "id", "resource": "id", "item": "code", "grant": "id"}


def _reporter(issues: list[_Issue], kind: str, key: str) -> Callable[..., None]:
    """A function that adds an issue of the ``kind`` entry ``key`` to ``issues``."""

    def report(path: tuple[str | int, ...], reason: str, **hint: Any) -> None:
        issues.append(_Issue(kind, key, path, reason, **hint))

    return report


def _path_text(path: Iterable[str | int]) -> str:
    return "".join(f"[{c}]" if isinstance(c, int) else f".{c}" for c in path)


@dataclass(frozen=True, slots=True)
class _Issue:
    """A semantic problem of one entry, before it is located in the text."""

    kind: str  # "department", "resource", "item" or "grant"
    key: str  # the entry's id (code, for items)
    path: tuple[str | int, ...]  # the field inside the entry
    reason: str
    value: str | None = None  # a string value in the field to point at, if any
    named: str | None = None  # or an inline table ``{ name = "..." }`` in it
    occurrence: int = 1  # which match of ``value``/``named`` is meant

    @property
    def file(self) -> str:
        return _FILE_OF[self.kind]

    @property
    def field(self) -> str:
        return f"{self.kind} {self.key!r}{_path_text(self.path)}"


_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"[^"\\]*"|'[^']*')"""
_DOTTED = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_ARRAY_HEADER = re.compile(rf"^\s*\[\[\s*({_DOTTED})\s*\]\]\s*(?:#.*)?$")
_TABLE_HEADER = re.compile(rf"^\s*\[\s*({_DOTTED})\s*\]\s*(?:#.*)?$")
_KEY_LINE = re.compile(rf"^\s*({_DOTTED})\s*=")
_BARE_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\b")
_STRINGS = re.compile(r"""'''.*?'''|\"\"\".*?\"\"\"|"(?:[^"\\]|\\.)*"|'[^']*'""")


def _dotted(text: str) -> str:
    return ".".join(p.strip("\"'") for p in re.findall(_KEY_PART, text))


@dataclass(slots=True)
class _Entry:
    kind: str
    start: int  # line of its ``[[kind]]`` header
    end: int = 0  # its last line
    keys: dict[str, int] = field(default_factory=dict)  # dotted key → line


class _TomlLines:
    """Where entries and keys are in one TOML text.

    tomllib reports no positions, so the lines are scanned: the n-th ``[[kind]]`` header
    starts entry n of that kind, and ``key =`` lines (outside multi-line values) belong to
    the entry above them. Good enough for pointing a reviewer at a line; never used to read
    values.
    """

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.top: dict[str, int] = {}  # top-level keys and table headers → line
        self.entries: dict[str, list[_Entry]] = {}
        self.nested: set[int] = set()  # lines inside multi-line values
        entry: _Entry | None = None
        prefix = ""
        depth = 0  # open brackets/braces of a multi-line value
        in_string: str | None = None  # the delimiter of an open multi-line string
        for no, line in enumerate(self.lines, 1):
            if in_string is not None or depth > 0:
                self.nested.add(no)
            if in_string is not None:
                if in_string in line:
                    in_string = None
                continue
            if depth == 0 and (m := _ARRAY_HEADER.match(line) or _TABLE_HEADER.match(line)):
                name = _dotted(m[1])
                head, _, rest = name.partition(".")
                if m.re is _ARRAY_HEADER and not rest:
                    if entry is not None:
                        entry.end = no - 1
                    entry = _Entry(name, no)
                    self.entries.setdefault(name, []).append(entry)
                    self.top.setdefault(name, no)
                    prefix = ""
                elif entry is not None and rest and head == entry.kind:
                    # [grant.approval] or [[grant.x]]: a sub-table of the entry above.
                    entry.keys.setdefault(rest, no)
                    prefix = rest + "."
                else:
                    if entry is not None:
                        entry.end = no - 1
                    entry = None
                    self.top.setdefault(name, no)
                    prefix = name + "."
                continue
            if depth == 0 and (m := _KEY_LINE.match(line)):
                key = prefix + _dotted(m[1])
                (entry.keys if entry is not None else self.top).setdefault(key, no)
            bare = _STRINGS.sub('""', line).split("#", 1)[0]
            for delimiter in ('"""', "'''"):
                if bare.count(delimiter) % 2:
                    in_string = delimiter
                    bare = bare.split(delimiter, 1)[0]
            depth = max(0, depth + bare.count("[") + bare.count("{"))
            depth = max(0, depth - bare.count("]") - bare.count("}"))
        if entry is not None:
            entry.end = len(self.lines)

    def find(self, start: int, end: int, pattern: re.Pattern[str], occurrence: int) -> int | None:
        """The line (in ``start..end``) of the ``occurrence``-th match, skipping comments."""
        for no in range(start, end + 1):
            line = self.lines[no - 1]
            if line.lstrip().startswith("#"):
                continue
            occurrence -= len(pattern.findall(line))
            if occurrence <= 0:
                return no
        return None

    def where(self, line: int) -> str:
        """The field path (``grant[3].fields``) of the entry and key at ``line``, if any."""
        for kind, entries in self.entries.items():
            for n, e in enumerate(entries):
                if e.start <= line <= e.end:
                    # A broken line is no key line; if it starts like one, that key is meant.
                    # The key the line starts with, unless the line sits inside a multi-line
                    # value (then the error is the value's, e.g. an unclosed array).
                    text = self.lines[line - 1]
                    own = None if line in self.nested else _BARE_KEY.match(text)
                    above = [(no, k) for k, no in e.keys.items() if no <= line]
                    key = own[1] if own else max(above)[1] if above else ""
                    return f"{kind}[{n}]" + (f".{key}" if key else "")
        return ""


def _dig(value: Any, path: Iterable[str | int]) -> Any:
    for c in path:
        if isinstance(c, int) and isinstance(value, list) and c < len(value):
            value = value[c]
        elif isinstance(c, str) and isinstance(value, dict):
            value = value.get(c)
        else:
            return None
    return value


class _Locator:
    """Finds the line of a problem in the policy texts (and their decoded TOML)."""

    def __init__(self, texts: Mapping[str, str], raw: Mapping[str, dict[str, Any]]) -> None:
        self._lines = {name: _TomlLines(text) for name, text in texts.items()}
        self._raw = raw
        self._index: dict[tuple[str, str], int] = {}
        for kind, file in _FILE_OF.items():
            entries = raw.get(file, {}).get(kind)
            for n, e in enumerate(entries if isinstance(entries, list) else []):
                key = e.get(_ID_KEY[kind]) if isinstance(e, dict) else None
                if isinstance(key, str):
                    self._index.setdefault((kind, key), n)

    def raw(self, file: str) -> dict[str, Any]:
        """The decoded TOML of ``file`` (empty if it could not be read)."""
        return self._raw.get(file, {})

    def lines(self, file: str) -> _TomlLines | None:
        """The scanned text of ``file``, if it was given."""
        return self._lines.get(file)

    def entry_line(
        self,
        kind: str,
        index: int,
        path: tuple[str | int, ...] = (),
        *,
        value: str | None = None,
        named: str | None = None,
        occurrence: int = 1,
    ) -> int | None:
        """The line of ``path`` in entry ``index`` of ``kind``: the line of its key, or of
        ``value``/``named`` (or the element ``path`` names) inside a multi-line value; the
        entry's id line when the key is absent."""
        lines = self._lines.get(_FILE_OF[kind])
        if lines is None:
            return None
        entries = lines.entries.get(kind, [])
        if index >= len(entries):
            # Not written as [[kind]] headers (e.g. an inline array): the key is all we have.
            return lines.top.get(kind, 1)
        entry = entries[index]
        names: list[str] = []
        for c in path:
            if not isinstance(c, str) or c == "...":
                break
            names.append(c)
        key = next(
            (
                ".".join(names[:n])
                for n in range(len(names), 0, -1)
                if ".".join(names[:n]) in entry.keys
            ),
            None,
        )
        if key is None:
            return entry.keys.get(_ID_KEY[kind], entry.start)
        start = entry.keys[key]
        end = min((no - 1 for no in entry.keys.values() if no > start), default=entry.end)
        rest = path[len(key.split(".")) :]
        if value is None and named is None and rest and isinstance(rest[0], int):
            raw_entries = self._raw.get(_FILE_OF[kind], {}).get(kind)
            element = _dig(raw_entries, (index, *key.split("."), rest[0]))
            if isinstance(element, dict) and isinstance(element.get("name"), str):
                named = element["name"]
            elif isinstance(element, str):
                value = element
        patterns = []
        if value is not None:
            patterns.append(re.compile(rf"""(["']){re.escape(value)}\1"""))
        if named is not None:
            patterns.append(re.compile(rf"""\bname\s*=\s*(["']){re.escape(named)}\1"""))
        for pattern in patterns:
            found = lines.find(start, end, pattern, occurrence)
            if found is not None:
                return found
        return start

    def problem(self, issue: _Issue) -> PolicyProblem:
        """``issue`` located in the texts (by the entry's id, then the field)."""
        index = self._index.get((issue.kind, issue.key))
        line = (
            None
            if index is None
            else self.entry_line(
                issue.kind,
                index,
                issue.path,
                value=issue.value,
                named=issue.named,
                occurrence=issue.occurrence,
            )
        )
        return PolicyProblem(issue.file, line, issue.field, issue.reason)


_TOML_AT = re.compile(r"(?P<reason>.*) \(at line (?P<line>\d+), column (?P<column>\d+)\)", re.S)
_MSGSPEC_AT = re.compile(r"(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.S)
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")
_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `(?P<name>.+)`", re.S)
_MISSING_FIELD = re.compile(r"Object missing required field `(?P<name>.+)`", re.S)


def _syntax_problem(name: str, text: str, exc: tomllib.TOMLDecodeError) -> PolicyProblem:
    lines = _TomlLines(text)
    message = str(exc)
    if m := _TOML_AT.fullmatch(message):
        line = int(m["line"])
        reason = f"TOML syntax error: {m['reason']} (column {m['column']})"
    else:
        # tomllib says "(at end of document)" when the file ends inside a value.
        line = max(len(lines.lines), 1)
        reason = "TOML syntax error: " + message.replace(
            "(at end of document)", "(at the end of the file)"
        )
    return PolicyProblem(name, line, lines.where(line), reason)


def _unwrap(kind: Any) -> Any:
    while True:
        origin = get_origin(kind)
        if origin is Annotated:
            kind = get_args(kind)[0]
        elif origin in (Union, types.UnionType):
            others = [a for a in get_args(kind) if a is not type(None)]
            if len(others) != 1:
                return kind
            kind = others[0]
        else:
            return kind


def _fields_at(root: type[Any], path: Iterable[str | int]) -> list[str]:
    """The field names the schema allows at ``path`` (empty if it is not a struct)."""
    kind: Any = root
    for c in path:
        kind = _unwrap(kind)
        if isinstance(c, int) or c == "...":
            args = get_args(kind)
            if get_origin(kind) not in (list, tuple, dict) or not args:
                return []
            kind = args[-1] if get_origin(kind) is dict else args[0]
        elif isinstance(kind, type) and issubclass(kind, msgspec.Struct):
            kind = next((f.type for f in msgspec.structs.fields(kind) if f.name == c), None)
        else:
            return []
    kind = _unwrap(kind)
    if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
        return [f.name for f in msgspec.structs.fields(kind)]
    return []


def _schema_problem(
    name: str, root: type[Any], locator: _Locator, exc: msgspec.ValidationError
) -> PolicyProblem:
    m = _MSGSPEC_AT.fullmatch(str(exc))
    assert m is not None  # the pattern matches any text
    path: tuple[str | int, ...] = tuple(
        int(p[1]) if p[1] else (p[0] or "...") for p in _PATH_PART.findall(m["path"] or "")
    )
    reason = m["reason"].replace("`", "")
    got = _dig(locator.raw(name), path)
    if reason.startswith("Expected") and ", got" not in reason and got is not None:
        # Constraint failures ("Expected int >= 1") do not say what was there.
        shown = str(got).lower() if isinstance(got, bool) else repr(got)
        if isinstance(got, dt.date | dt.time):
            shown = got.isoformat()
        reason += f", got {shown}"
    if u := _UNKNOWN_FIELD.fullmatch(m["reason"]):
        allowed = _fields_at(root, path)
        path = (*path, u["name"])
        close = difflib.get_close_matches(u["name"], allowed, n=1)
        reason = "unknown field" + (
            f"; did you mean {close[0]!r}?"
            if close
            else f" (expected one of: {', '.join(allowed)})"
            if allowed
            else ""
        )
    elif r := _MISSING_FIELD.fullmatch(m["reason"]):
        path = (*path, r["name"])
        reason = "required field is missing"
    if len(path) >= 2 and isinstance(path[0], str) and isinstance(path[1], int):
        line = locator.entry_line(path[0], path[1], path[2:])
    else:
        lines = locator.lines(name)
        top = path[0] if path and isinstance(path[0], str) else None
        line = (lines.top.get(top, 1) if top else 1) if lines is not None else None
    field = _path_text(path).removeprefix(".")
    return PolicyProblem(name, line, field, reason)


_ROOTS: dict[str, type[Any]] = {
    "departments.toml": _DepartmentsFile,
    "catalogue.toml": _CatalogueFile,
    "grants.toml": _GrantsFile,
}


class ParsedPolicyTexts:
    """What :func:`parse_policy_texts` found in the texts of the policy files.

    ``policy`` is the set built from the files, or ``None`` when a file is missing or could
    not be decoded; it is validated only if ``problems`` is empty. :meth:`line_of` points
    into the texts for findings of one's own (see :mod:`gateway.core.policy_check`).
    """

    def __init__(
        self,
        policy: PolicySet | None,
        problems: Iterable[PolicyProblem],
        locator: _Locator,
    ) -> None:
        order = {name: n for n, name in enumerate(POLICY_FILES)}
        self.policy = policy
        self.problems = sorted(problems, key=lambda p: (order.get(p.file, 99), p.line or 0))
        self._locator = locator

    def line_of(
        self, kind: str, key: str, *path: str | int, value: str | None = None
    ) -> int | None:
        """The line of ``path`` (e.g. ``"valid_until"``) in the ``kind`` entry (department,
        resource, item or grant) identified by ``key``; its id line if the key is absent."""
        return self._locator.problem(_Issue(kind, key, path, "", value=value)).line


def parse_policy_texts(texts: Mapping[str, str]) -> ParsedPolicyTexts:
    """Parse and validate a policy set from its files' texts, collecting every problem.

    Never raises for bad content: each problem comes back located (file, line, field).
    """
    problems = [
        PolicyProblem(n, None, "", "file is missing") for n in POLICY_FILES if n not in texts
    ]
    raw: dict[str, dict[str, Any]] = {}
    for name in POLICY_FILES:
        if name in texts:
            try:
                raw[name] = tomllib.loads(texts[name])
            except tomllib.TOMLDecodeError as exc:
                problems.append(_syntax_problem(name, texts[name], exc))
    locator = _Locator(texts, raw)
    decoded: dict[str, Any] = {}
    for name, doc in raw.items():
        try:
            decoded[name] = msgspec.convert(doc, _ROOTS[name])
        except msgspec.ValidationError as exc:
            problems.append(_schema_problem(name, _ROOTS[name], locator, exc))
    if problems:
        return ParsedPolicyTexts(None, problems, locator)
    deps: _DepartmentsFile = decoded["departments.toml"]
    cat: _CatalogueFile = decoded["catalogue.toml"]
    grants: _GrantsFile = decoded["grants.toml"]
    for kind, keys in (
        ("department", [d.id for d in deps.department]),
        ("resource", [r.id for r in cat.resource]),
        ("item", [i.code for i in cat.item]),
        ("grant", [g.id for g in grants.grant]),
    ):
        first: dict[str, int] = {}
        for n, key in enumerate(keys):
            if key not in first:
                first[key] = n
                continue
            earlier = locator.entry_line(kind, first[key], (_ID_KEY[kind],))
            problems.append(
                PolicyProblem(
                    _FILE_OF[kind],
                    locator.entry_line(kind, n, (_ID_KEY[kind],)),
                    f"{kind}[{n}].{_ID_KEY[kind]}",
                    f"{key!r} is already the {_ID_KEY[kind]} of the {kind} at line {earlier}",
                )
            )
    policy = PolicySet(
        departments=deps.department, resources=cat.resource, items=cat.item, grants=grants.grant
    )
    problems.extend(locator.problem(i) for i in policy._issues())
    return ParsedPolicyTexts(policy, problems, locator)


def read_policy_texts(directory: Path) -> dict[str, str]:
    """The policy files of ``directory`` as texts, by file name."""
    texts: dict[str, str] = {}
    for name in POLICY_FILES:
        try:
            texts[name] = (directory / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PolicySetInvalid([f"{directory / name}: file is missing"]) from None
        except UnicodeDecodeError as exc:
            raise PolicySetInvalid(
                [f"{directory / name}: byte {exc.start} is not UTF-8 (files are UTF-8 text)"]
            ) from None
    return texts


def policy_set_from_texts(texts: Mapping[str, str]) -> PolicySet:
    """Parse and validate a policy set from the texts of its files (see :data:`POLICY_FILES`).

    Raises :class:`PolicyFilesInvalid` (a :class:`PolicySetInvalid`) listing every problem
    found, each as ``<file>:<line>: <field>: <reason>``.
    """
    parsed = parse_policy_texts(texts)
    if parsed.problems or parsed.policy is None:
        raise PolicyFilesInvalid(parsed.problems)
    return parsed.policy


def load_policy_set(directory: Path) -> PolicySet:
    """Read, parse and validate the policy files in ``directory``."""
    return policy_set_from_texts(read_policy_texts(directory))
