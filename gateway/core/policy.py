"""Sharing policy: the catalogue, the grants and the decision they make together.

A :class:`PolicySet` is built once from the reviewed files in ``policies/`` (see
:func:`load_policy_set`), validated as a whole, and then only read. Decisions are pure
functions of the set, the request and an explicit ``now``: default deny, allowed only by a
grant that names this consumer, resource, every requested field and the service item.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

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
    "PolicySet",
    "ReasonCode",
    "Resource",
    "Role",
    "ServiceItem",
    "SharingClass",
    "load_policy_set",
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
        """Raise :class:`PolicySetInvalid` listing every inconsistency of the set."""
        problems = [
            *self._department_problems(),
            *self._catalogue_problems(),
            *self._grant_problems(),
        ]
        if problems:
            raise PolicySetInvalid(problems)

    def _department_problems(self) -> list[str]:
        problems: list[str] = []
        for d in self.departments.values():
            try:
                Uscc.parse(d.uscc)
            except InvalidIdentifier as exc:
                problems.append(f"departments.toml: department {d.id!r}: uscc {exc.reason}")
        return problems

    def _catalogue_problems(self) -> list[str]:
        problems: list[str] = []
        deps = self.departments
        for r in self.resources.values():
            where = f"catalogue.toml: resource {r.id!r}"
            if r.provider not in deps:
                problems.append(f"{where}: provider {r.provider!r} is not a department")
            elif Role.PROVIDER not in deps[r.provider].roles:
                problems.append(f"{where}: department {r.provider!r} lacks the provider role")
            if r.subject not in ("resident-id", "uscc"):
                problems.append(f"{where}: subject must be 'resident-id' or 'uscc'")
            if r.sharing is not SharingClass.UNCONDITIONAL and not r.legal_basis:
                problems.append(f"{where}: {r.sharing} resources need a legal_basis")
            names = [f.name for f in r.fields]
            if len(names) != len(set(names)):
                problems.append(f"{where}: field names repeat")
            if "adapter" not in r.source:
                problems.append(f"{where}: source needs an 'adapter'")
        for i in self.items.values():
            where = f"catalogue.toml: item {i.code!r}"
            if i.department not in deps:
                problems.append(f"{where}: department {i.department!r} is not a department")
            for m in i.materials:
                if m.resource is not None and m.resource not in self.resources:
                    problems.append(f"{where}: material {m.name!r} names unknown resource")
        return problems

    def _grant_problems(self) -> list[str]:
        problems: list[str] = []
        deps = self.departments
        for g in self.grants.values():
            where = f"grants.toml: grant {g.id!r}"
            if g.consumer not in deps:
                problems.append(f"{where}: consumer {g.consumer!r} is not a department")
            res = self.resources.get(g.resource)
            if res is None:
                problems.append(f"{where}: resource {g.resource!r} is not in the catalogue")
            else:
                if res.sharing is SharingClass.NOT_SHARED:
                    problems.append(f"{where}: resource {g.resource!r} is not-shared")
                unknown = [f for f in g.fields if f not in res.field_names]
                if unknown:
                    problems.append(f"{where}: unknown fields {', '.join(unknown)}")
            bad_items = [c for c in g.items if c not in self.items]
            if bad_items:
                problems.append(f"{where}: unknown service items {', '.join(bad_items)}")
            if not g.fields or not g.items:
                problems.append(f"{where}: fields and items must not be empty")
            if g.valid_from and g.valid_until and g.valid_until < g.valid_from:
                problems.append(f"{where}: valid_until is before valid_from")
            if g.office_hours and g.office_hours.end <= g.office_hours.start:
                problems.append(f"{where}: office_hours end is not after start")
            for field_name, spec in g.masks.items():
                try:
                    mask = parse_mask(spec)
                except ValueError as exc:
                    problems.append(f"{where}: masks.{field_name}: {exc}")
                    continue
                if field_name not in g.fields:
                    problems.append(f"{where}: masks.{field_name}: field is not granted")
                elif (
                    res is not None
                    and mask.text_only
                    and any(
                        f.name == field_name and f.type is not FieldType.STRING for f in res.fields
                    )
                ):
                    problems.append(f"{where}: masks.{field_name}: {spec} needs a string field")
        return problems


def _decode(name: str, text: str, kind: type[Any]) -> Any:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicySetInvalid([f"{name}: {exc}"]) from None
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        raise PolicySetInvalid([f"{name}: {exc}"]) from None


def read_policy_texts(directory: Path) -> dict[str, str]:
    """The policy files of ``directory`` as texts, by file name."""
    texts: dict[str, str] = {}
    for name in POLICY_FILES:
        try:
            texts[name] = (directory / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PolicySetInvalid([f"{directory / name}: file is missing"]) from None
    return texts


def policy_set_from_texts(texts: Mapping[str, str]) -> PolicySet:
    """Parse and validate a policy set from the texts of its files (see :data:`POLICY_FILES`).

    Raises :class:`PolicySetInvalid` naming the file and the field of every problem.
    """
    missing = [n for n in POLICY_FILES if n not in texts]
    if missing:
        raise PolicySetInvalid([f"{n}: file is missing" for n in missing])
    deps: _DepartmentsFile = _decode(
        "departments.toml", texts["departments.toml"], _DepartmentsFile
    )
    cat: _CatalogueFile = _decode("catalogue.toml", texts["catalogue.toml"], _CatalogueFile)
    grants: _GrantsFile = _decode("grants.toml", texts["grants.toml"], _GrantsFile)
    problems: list[str] = []
    for label, ids in (
        ("department", [d.id for d in deps.department]),
        ("resource", [r.id for r in cat.resource]),
        ("item", [i.code for i in cat.item]),
        ("grant", [g.id for g in grants.grant]),
    ):
        dupes = sorted({x for x in ids if ids.count(x) > 1})
        if dupes:
            problems.append(f"{label} ids repeat: {', '.join(dupes)}")
    if problems:
        raise PolicySetInvalid(problems)
    policy = PolicySet(
        departments=deps.department, resources=cat.resource, items=cat.item, grants=grants.grant
    )
    policy.validate()
    return policy


def load_policy_set(directory: Path) -> PolicySet:
    """Read, parse and validate the policy files in ``directory``."""
    return policy_set_from_texts(read_policy_texts(directory))
