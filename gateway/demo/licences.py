"""The demo district's e-seals (电子印章) and e-licences (电子证照), made by ``gateway init``.

Everything here is synthetic and created **only when missing**: running ``init`` again changes
nothing. Licences are issued the way an issuer's system would (reserve the status entry, seal
the canonical content with the seal's private key, :func:`check_issuance` on the sealed JWS,
publish), straight into the store: ``init`` is an administrator's act on the gateway's own
database, so it writes no audit entries of its own.

Seals (private keys in ``keys/seals/<seal id>.private.jwk.json``, created on first run; valid
from 1 January three years before the first run to 31 December three years after it):

================================  ==========  =====  ==========================================
seal id                           owner       alg    seals
================================  ==========  =====  ==========================================
``market-approval-1``             market      ES256  营业执照 (…行政审批专用章)
``market-food-1``                 market      EdDSA  食品经营许可证 (…食品经营许可专用章)
``realestate-registration-1``     realestate  SM2    不动产权证书 (…不动产登记专用章)
``market-approval-2``             market      ES256  one 营业执照, then revoked for key
                                                     compromise (…行政审批专用章（2）)
================================  ==========  =====  ==========================================

Licences (44): a 营业执照 for each of the first 26 demo companies (revoked for a company whose
status is 吊销, cancelled for one that is 注销; one of them also has a version 002 after a
change of registered capital, which cancels version 001; one has a fixed business term that
ended 30 days before the first run; one is sealed with the compromised seal), a
食品经营许可证 for the 存续 catering and food companies among them (one suspended), and a
不动产权证书 for every 20th of the first 240 demo residents (12).

Identifiers depend only on the synthetic population and the issuers' USCCs in
``policies/departments.toml``, so :func:`demo_cases` names the same licences on every machine.
Dates are relative to the (district) day of the first run: issue dates lie within the seal's
validity and never in the future. Numbers inside the type-specific fields (许可证编号,
不动产权证书号, 不动产单元号 …) have the real shapes but are made up.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa

from gateway.core import sm2
from gateway.core.algorithms import SigningKey
from gateway.core.identifiers import LICENCE_ROOT, LicenceId, licence_check_character
from gateway.core.licences import (
    HolderIdType,
    LicenceContent,
    LicenceStatus,
    StatusAction,
    Verdict,
    check_issuance,
    seal_licence,
)
from gateway.core.policy import DISTRICT_TZ, Department, Role
from gateway.core.seals import RevocationReason, Seal, SealRegistry, SealStatus
from gateway.demo.population import SEED, Company, Person, companies, people
from gateway.errors import InvalidInput
from gateway.licensing.store import LicenceStore
from gateway.registry import keystore

__all__ = [
    "BUSINESS_LICENCE",
    "DEMO_SEALS",
    "FOOD_PERMIT",
    "JURISDICTION",
    "LICENSED_COMPANIES",
    "OPERATOR",
    "REAL_ESTATE_CERTIFICATE",
    "DemoCase",
    "DemoLicencesReport",
    "DemoSeal",
    "LicenceType",
    "PlannedLicence",
    "business_licence",
    "demo_cases",
    "ensure_demo_licences",
    "food_permit",
    "issuer_name",
    "licence_identifier",
    "plan_licences",
    "real_estate_certificate",
]

#: Administrative division code of the demo district (城陵矶新港区).
JURISDICTION = "430671"
_DISTRICT = "城陵矶新港"

#: Who ``init`` records as the operator of the demo issuance and status changes.
OPERATOR = "gateway-init"

# Defining authorities of the licence types (synthetic USCCs with valid check characters;
# the first is the example of docs/identifiers.md).
_SAMR_USCC = "11100000000013338W"  # stands for 国家市场监督管理总局
_MNR_USCC = "11100000MB0000307E"  # stands for 自然资源部

# Service items of policies/catalogue.toml that produce the licences.
_ITEM_ESTABLISH = "000201001000"  # 企业设立登记
_ITEM_CHANGE = "000201002000"  # 企业变更登记
_ITEM_FOOD = "000201004000"  # 食品经营许可
_ITEM_TRANSFER = "000113001000"  # 不动产转移登记


# --- seals --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoSeal:
    """A seal of the demo district; its name is the owner's full name + ``name_suffix``."""

    seal_id: str
    owner: str
    name_suffix: str
    type: str
    alg: str
    compromised: bool = False  # revoked for key compromise once its licence is issued


DEMO_SEALS: tuple[DemoSeal, ...] = (
    DemoSeal("market-approval-1", "market", "行政审批专用章", "administrative-approval", "ES256"),
    DemoSeal("market-food-1", "market", "食品经营许可专用章", "licence", "EdDSA"),
    # SM2, as GB/T 38540 seals are in the national stack (docs/sm2.md).
    DemoSeal(
        "realestate-registration-1",
        "realestate",
        "不动产登记专用章",
        "real-estate-registration",
        "SM2",
    ),
    DemoSeal(
        "market-approval-2",
        "market",
        "行政审批专用章（2）",
        "administrative-approval",
        "ES256",
        compromised=True,
    ),
)


def issuer_name(department: Department) -> str:
    """The full name an issuer signs with, e.g. 城陵矶新港区市场监督管理局."""
    return f"{_DISTRICT}{department.name}"


def _seal_window(today: dt.date) -> tuple[dt.date, dt.date]:
    return dt.date(today.year - 3, 1, 1), dt.date(today.year + 3, 12, 31)


# --- licence types and identifiers --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LicenceType:
    """A licence type of the demo: its GB/T 36904 type code, name, issuer and seal."""

    code: str
    name: str
    issuer: str  # department id
    seal_id: str
    serial_kind: str  # one digit inside the serial, so serials of types never collide


BUSINESS_LICENCE = LicenceType(_SAMR_USCC + "001", "营业执照", "market", "market-approval-1", "1")
FOOD_PERMIT = LicenceType(_SAMR_USCC + "011", "食品经营许可证", "market", "market-food-1", "2")
REAL_ESTATE_CERTIFICATE = LicenceType(
    _MNR_USCC + "001", "不动产权证书", "realestate", "realestate-registration-1", "3"
)


def licence_identifier(type_code: str, issuer_uscc: str, serial: str, version: str = "001") -> str:
    """The dotted GB/T 36904 identifier with its MOD 37,36 check character."""
    check = licence_check_character(type_code + issuer_uscc + serial + version)
    identifier = f"{LICENCE_ROOT}.{type_code}.{issuer_uscc}.{serial}.{version}.{check}"
    return LicenceId.parse(identifier).value


def _serial(kind: LicenceType, seq: int) -> str:
    return f"{JURISDICTION}{kind.serial_kind}{seq:06d}"


def _cn(day: dt.date) -> str:
    return f"{day.year}年{day.month:02d}月{day.day:02d}日"


def _add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def _capital(amount: float) -> str:
    return f"{amount:g}万元人民币"


def _company_form(name: str) -> str:
    if name.endswith("股份有限公司"):
        return "股份有限公司（非上市、自然人投资或控股）"
    if name.endswith("个人独资企业"):
        return "个人独资企业"
    return "有限责任公司（自然人投资或控股）"


# --- content builders (also used by ``gateway demo`` to issue a licence live) -------------


def _licence(
    kind: LicenceType, issuer: Department, serial: str, *, version: str = "001", **fields: Any
) -> LicenceContent:
    """The parts every demo licence shares: identifier, type, issuer and jurisdiction."""
    return LicenceContent(
        licence_id=licence_identifier(kind.code, issuer.uscc, serial, version),
        type_code=kind.code,
        type_name=kind.name,
        issuer_uscc=issuer.uscc,
        issuer_name=issuer_name(issuer),
        jurisdiction=JURISDICTION,
        **fields,
    )


def business_licence(
    company: Company,
    *,
    issuer: Department,
    serial: str,
    issue_date: dt.date,
    version: str = "001",
    registered_capital: float | None = None,
    valid_until: dt.date | None = None,
    service_item: str = _ITEM_ESTABLISH,
) -> LicenceContent:
    """营业执照 of ``company``; ``valid_until`` None is a business term without end (长期)."""
    valid_from = company.established_on
    term = "长期" if valid_until is None else f"{_cn(valid_from)}至{_cn(valid_until)}"
    return _licence(
        BUSINESS_LICENCE,
        issuer,
        serial,
        version=version,
        holder_name=company.name,
        holder_id=company.uscc,
        holder_id_type=HolderIdType.USCC,
        issue_date=issue_date,
        valid_from=valid_from,
        valid_until=valid_until,
        service_item=service_item,
        type_fields={
            "类型": _company_form(company.name),
            "法定代表人": company.legal_representative.name,
            "注册资本": _capital(
                company.registered_capital if registered_capital is None else registered_capital
            ),
            "成立日期": _cn(company.established_on),
            "营业期限": term,
            "住所": company.address,
            "经营范围": company.business_scope,
            "登记机关": issuer_name(issuer),
        },
    )


def food_permit(
    company: Company, *, issuer: Department, serial: str, issue_date: dt.date, number: int
) -> LicenceContent:
    """食品经营许可证 of a catering or food company, valid five years from ``issue_date``."""
    catering = "餐饮" in company.name
    kind = "2" if catering else "1"
    return _licence(
        FOOD_PERMIT,
        issuer,
        serial,
        holder_name=company.name,
        holder_id=company.uscc,
        holder_id_type=HolderIdType.USCC,
        issue_date=issue_date,
        valid_from=issue_date,
        valid_until=_add_years(issue_date, 5) - dt.timedelta(days=1),
        service_item=_ITEM_FOOD,
        type_fields={
            "许可证编号": f"JY{kind}{JURISDICTION}{number:07d}",
            "法定代表人（负责人）": company.legal_representative.name,
            "住所": company.address,
            "经营场所": company.address,
            "主体业态": "餐饮服务经营者" if catering else "食品销售经营者",
            "经营项目": (
                "热食类食品制售；冷食类食品制售"
                if catering
                else "预包装食品销售（含冷藏冷冻食品）；散装食品销售（不含散装熟食）"
            ),
            "日常监督管理机构": issuer_name(issuer),
            "投诉举报电话": "12315",
        },
    )


_STREETS = ("城陵矶路", "洞庭大道", "港口路", "松阳湖路", "金凤路", "滨江路", "通海路")


def real_estate_certificate(
    person: Person, *, issuer: Department, serial: str, issue_date: dt.date, number: int
) -> LicenceContent:
    """不动产权证书 of a flat owned by ``person`` alone; the flat is drawn from their ID."""
    rng = random.Random(f"{SEED}:real-estate:{person.id_number}:{number}")
    building, unit, floor = rng.randint(1, 30), rng.randint(1, 4), rng.randint(1, 28)
    room = floor * 100 + rng.randint(1, 4)
    land_from = dt.date(rng.randint(2003, 2020), rng.randint(1, 12), rng.randint(1, 28))
    land_until = _add_years(land_from, 70) - dt.timedelta(days=1)  # 70 years for housing
    parcel = (
        f"{JURISDICTION}{rng.randint(1, 9):03d}{rng.randint(1, 9):03d}GB{rng.randint(1, 99999):05d}"
    )
    return _licence(
        REAL_ESTATE_CERTIFICATE,
        issuer,
        serial,
        holder_name=person.name,
        holder_id=person.id_number,
        holder_id_type=HolderIdType.RESIDENT_ID,
        issue_date=issue_date,
        valid_from=issue_date,
        valid_until=None,
        service_item=_ITEM_TRANSFER,
        type_fields={
            "不动产权证书号": f"湘（{issue_date.year}）岳阳市不动产权第{number:07d}号",
            "共有情况": "单独所有",
            "坐落": (
                f"湖南省岳阳市城陵矶新港区{rng.choice(_STREETS)}{rng.randint(1, 999)}号"
                f"{building}栋{unit}单元{room}室"
            ),
            "不动产单元号": f"{parcel}F{building:04d}{room:04d}",
            "权利类型": "国有建设用地使用权/房屋所有权",
            "权利性质": "出让/市场化商品房",
            "用途": "城镇住宅用地/住宅",
            "面积": (
                f"共有宗地面积{rng.uniform(8000, 60000):.2f}㎡/"
                f"房屋建筑面积{rng.uniform(45, 160):.2f}㎡"
            ),
            "使用期限": f"国有建设用地使用权{_cn(land_from)}起{_cn(land_until)}止",
        },
    )


# --- what the demo district holds ---------------------------------------------------------

#: The first 26 demo companies hold a 营业执照 (later ones are free for ``gateway demo``).
LICENSED_COMPANIES = 26
_SUPERSEDED = 1  # company whose 营业执照 has a version 002 (registered capital changed)
_SEAL_INVALID = 2  # company whose 营业执照 was sealed with the compromised seal
_EXPIRED = 14  # 个人独资企业 whose fixed business term has ended
_SUSPENDED_FOOD = 13  # catering company whose food permit is suspended
_RESIDENTS = range(0, 240, 20)  # residents holding a 不动产权证书

_SUSPEND_REASON = "食品安全监督抽检不合格，责令停业整改（演示数据）"
_REVOKE_REASON = "行政处罚：吊销营业执照（演示数据）"
_CANCEL_REASON = "企业注销登记（演示数据）"


@dataclass(frozen=True, slots=True)
class _Entry:
    """One demo licence before dates are known: who holds what, sealed with which seal."""

    kind: LicenceType
    seq: int
    holder: Company | Person
    version: str = "001"
    seal_id: str = ""
    action: StatusAction | None = None
    reason: str = ""
    case: str | None = None  # its name in demo_cases()
    verdict: Verdict = Verdict.VALID

    @property
    def seal(self) -> str:
        return self.seal_id or self.kind.seal_id

    def licence_id(self, departments: Mapping[str, Department]) -> str:
        issuer = departments[self.kind.issuer]
        return licence_identifier(
            self.kind.code, issuer.uscc, _serial(self.kind, self.seq), self.version
        )


def _is_food_business(company: Company) -> bool:
    return company.status == "存续" and ("餐饮" in company.name or "食品" in company.name)


# A company struck off (吊销) or deregistered (注销) in the market source has lost its licence.
_ENDED: dict[str, dict[str, Any]] = {
    "吊销": {
        "action": StatusAction.REVOKE,
        "reason": _REVOKE_REASON,
        "verdict": Verdict.REVOKED,
        "case": "revoked",
    },
    "注销": {
        "action": StatusAction.CANCEL,
        "reason": _CANCEL_REASON,
        "verdict": Verdict.CANCELLED,
        "case": "deregistered",
    },
}
_SPECIAL: dict[int, dict[str, Any]] = {
    _SUPERSEDED: {"case": "superseded", "verdict": Verdict.CANCELLED},
    _SEAL_INVALID: {
        "seal_id": "market-approval-2",
        "case": "seal-invalid",
        "verdict": Verdict.SEAL_INVALID,
    },
    _EXPIRED: {"case": "expired", "verdict": Verdict.EXPIRED},
}
_PLAIN_CASE = {
    BUSINESS_LICENCE: "business-licence",
    FOOD_PERMIT: "food-permit",
    REAL_ESTATE_CERTIFICATE: "real-estate-certificate",
}


def _entries() -> list[_Entry]:
    firms = companies()[:LICENSED_COMPANIES]
    entries: list[_Entry] = []
    for i, company in enumerate(firms):
        entry = _Entry(BUSINESS_LICENCE, i + 1, company)
        if company.status in _ENDED:
            entry = replace(entry, **_ENDED[company.status])
        elif i in _SPECIAL:
            entry = replace(entry, **_SPECIAL[i])
        entries.append(entry)
        if i == _SUPERSEDED:
            entries.append(replace(entry, version="002", case="superseding", verdict=Verdict.VALID))
    food = [(i, c) for i, c in enumerate(firms) if _is_food_business(c)]
    for n, (i, company) in enumerate(food):
        entry = _Entry(FOOD_PERMIT, n + 1, company)
        if i == _SUSPENDED_FOOD:
            entry = replace(
                entry,
                action=StatusAction.SUSPEND,
                reason=_SUSPEND_REASON,
                case="suspended",
                verdict=Verdict.SUSPENDED,
            )
        entries.append(entry)
    residents = people()
    entries += [
        _Entry(REAL_ESTATE_CERTIFICATE, n + 1, residents[r]) for n, r in enumerate(_RESIDENTS)
    ]
    # Each case names one licence: the first of its kind (the first plain valid one per type).
    named: set[str] = set()
    result: list[_Entry] = []
    for entry in entries:
        case = entry.case
        if case is None and entry.action is None and entry.verdict is Verdict.VALID:
            case = _PLAIN_CASE[entry.kind]
        if case in named:
            case = None
        if case is not None:
            named.add(case)
        result.append(replace(entry, case=case))
    return result


@dataclass(frozen=True, slots=True)
class DemoCase:
    """A demo licence worth showing: its identifier and the verdict a verification gives."""

    licence_id: str
    verdict: Verdict
    type_name: str
    holder_name: str


def demo_cases(departments: Mapping[str, Department]) -> dict[str, DemoCase]:
    """The demo licences by case name, with the verdict each verifies to after ``init``.

    ``business-licence``, ``food-permit``, ``real-estate-certificate`` and ``superseding``
    (version 002) are valid; ``suspended`` (a food permit), ``revoked`` (吊销),
    ``deregistered`` (注销, cancelled), ``superseded`` (version 001, cancelled), ``expired``
    (business term ended) and ``seal-invalid`` (sealed with a seal later revoked for key
    compromise) are not. ``departments`` are the policy's (for the issuers' USCCs).
    """
    return {
        e.case: DemoCase(e.licence_id(departments), e.verdict, e.kind.name, e.holder.name)
        for e in _entries()
        if e.case is not None
    }


# --- the plan with dates ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedLicence:
    """A demo licence to issue: content (its status entry is reserved at issuance), the
    seal, the issuer, and the status action applied once it is published."""

    content: LicenceContent
    seal_id: str
    department: str
    action: StatusAction | None = None
    reason: str = ""


def _within(day: dt.date, seal: Seal, today: dt.date) -> dt.date:
    """``day`` moved into the seal's window and not after ``today``."""
    return max(seal.valid_from, min(day, today, seal.valid_until))


def plan_licences(
    departments: Mapping[str, Department], registry: SealRegistry, today: dt.date
) -> list[PlannedLicence]:
    """Every demo licence whose issuer and seal are known, dated for ``today`` (district).

    Issue dates lie in the (registered) seal's validity window and not after ``today``.
    """
    planned: list[PlannedLicence] = []
    for entry in _entries():
        issuer = departments.get(entry.kind.issuer)
        seal = registry.by_id(entry.seal)
        if issuer is None or seal is None:
            continue
        serial = _serial(entry.kind, entry.seq)
        content: LicenceContent
        if isinstance(entry.holder, Person):
            content = real_estate_certificate(
                entry.holder,
                issuer=issuer,
                serial=serial,
                issue_date=_within(today - dt.timedelta(days=60 + 83 * entry.seq), seal, today),
                number=1000 + entry.seq,
            )
        elif entry.kind is FOOD_PERMIT:
            content = food_permit(
                entry.holder,
                issuer=issuer,
                serial=serial,
                issue_date=_within(today - dt.timedelta(days=120 + 97 * entry.seq), seal, today),
                number=entry.seq,
            )
        else:
            content = _dated_business_licence(
                entry, entry.holder, issuer=issuer, serial=serial, seal=seal, today=today
            )
        planned.append(PlannedLicence(content, seal.seal_id, issuer.id, entry.action, entry.reason))
    return planned


def _dated_business_licence(
    entry: _Entry,
    company: Company,
    *,
    issuer: Department,
    serial: str,
    seal: Seal,
    today: dt.date,
) -> LicenceContent:
    # Companies older than the e-licence system got their 电子营业执照 in its first months.
    first = max(company.established_on, seal.valid_from + dt.timedelta(days=7 * entry.seq))
    issue = _within(first, seal, today)
    if entry.case == "superseded":  # version 001: before the capital increase
        return business_licence(
            company,
            issuer=issuer,
            serial=serial,
            issue_date=issue,
            registered_capital=max(10.0, company.registered_capital / 3),
        )
    if entry.version != "001":  # the change of registration, 45 days ago
        return business_licence(
            company,
            issuer=issuer,
            serial=serial,
            issue_date=max(issue, _within(today - dt.timedelta(days=45), seal, today)),
            version=entry.version,
            service_item=_ITEM_CHANGE,
        )
    if entry.case == "expired":
        ended = max(company.established_on, today - dt.timedelta(days=30))
        return business_licence(
            company,
            issuer=issuer,
            serial=serial,
            issue_date=max(seal.valid_from, min(issue, ended)),
            valid_until=ended,
        )
    return business_licence(company, issuer=issuer, serial=serial, issue_date=issue)


# --- making it so -------------------------------------------------------------------------


@dataclass
class DemoLicencesReport:
    """What :func:`ensure_demo_licences` did (all zero on a second run)."""

    seals_registered: int = 0
    licences_issued: int = 0
    status_changes: int = 0
    seals_revoked: int = 0
    skipped: list[str] = field(default_factory=list)  # why a planned licence was not issued


def _issuers(departments: Mapping[str, Department]) -> dict[str, Department]:
    return {
        d.id: d
        for d in departments.values()
        if Role.ISSUER in d.roles and d.id in {s.owner for s in DEMO_SEALS}
    }


def _ensure_seals(
    store: LicenceStore,
    keys_dir: Path,
    issuers: Mapping[str, Department],
    now: dt.datetime,
    report: DemoLicencesReport,
) -> SealRegistry:
    _revision, registry = store.registry()
    valid_from, valid_until = _seal_window(now.astimezone(DISTRICT_TZ).date())
    for spec in DEMO_SEALS:
        owner = issuers.get(spec.owner)
        if owner is None:
            continue
        # An SM2 seal only where the system's libcrypto has SM2; else the demo seals ES256.
        alg = spec.alg if spec.alg != "SM2" or sm2.available() else "ES256"
        jwk = keystore.ensure_seal_key(keys_dir, spec.seal_id, alg=alg)
        if registry.by_id(spec.seal_id) is not None:
            continue
        seal = Seal(
            seal_id=spec.seal_id,
            name=issuer_name(owner) + spec.name_suffix,
            type=spec.type,
            owner=owner.id,
            owner_uscc=owner.uscc,
            jwk=jwk,
            alg=alg,
            valid_from=valid_from,
            valid_until=valid_until,
        )
        try:
            store.register_seal(seal, at=now, by=OPERATOR)
            report.seals_registered += 1
        except InvalidInput:
            pass  # registered by a concurrent init, or its key is already another seal's
    return store.registry()[1]


def _usable_keys(
    registry: SealRegistry, keys_dir: Path, report: DemoLicencesReport
) -> dict[str, SigningKey]:
    """The private keys of the demo seals whose registered key is the one on disk."""
    keys: dict[str, SigningKey] = {}
    for spec in DEMO_SEALS:
        seal = registry.by_id(spec.seal_id)
        path = keys_dir / "seals" / f"{spec.seal_id}.private.jwk.json"
        if seal is None or not path.exists():
            continue
        key = keystore.load_seal_key(keys_dir, spec.seal_id)
        if key.algorithm_name != seal.alg or key.key_id != SealRegistry.kid_of(seal):
            report.skipped.append(
                f"seal {spec.seal_id}: the registered key is not the one in {path}"
            )
            continue
        keys[spec.seal_id] = key
    return keys


def ensure_demo_licences(
    engine: sa.Engine,
    *,
    keys_dir: Path,
    departments: Mapping[str, Department],
    now: dt.datetime,
) -> DemoLicencesReport:
    """Register the demo seals and issue the demo licences that are missing (see module doc).

    Idempotent: seals are registered, licences issued, status actions applied and the
    compromised seal revoked only when not done before; a licence that cannot be issued
    (its seal is no longer usable, or its key file differs from the registered key) is
    listed in ``skipped`` rather than failing ``init``.
    """
    report = DemoLicencesReport()
    issuers = _issuers(departments)
    if not issuers:
        return report
    store = LicenceStore(engine)
    registry = _ensure_seals(store, keys_dir, issuers, now, report)
    keys = _usable_keys(registry, keys_dir, report)
    today = now.astimezone(DISTRICT_TZ).date()
    existing = set(store.licence_ids())
    plan = plan_licences(issuers, registry, today)
    for planned in plan:
        licence_id = planned.content.licence_id
        if licence_id in existing:
            continue
        key = keys.get(planned.seal_id)
        seal = registry.by_id(planned.seal_id)
        if key is None or seal is None:
            report.skipped.append(f"{licence_id}: no usable key for seal {planned.seal_id}")
            continue
        try:
            _issue(
                store,
                planned,
                issuer=issuers[planned.department],
                seal=seal,
                key=key,
                registry=registry,
                now=now,
            )
            report.licences_issued += 1
        except InvalidInput as exc:
            if store.get(licence_id) is None:  # not a concurrent init that got there first
                report.skipped.append(f"{licence_id}: {exc}")
    for planned in plan:
        if planned.action is not None and _untouched(store, planned.content.licence_id):
            store.change_status(
                planned.content.licence_id,
                planned.action,
                department=planned.department,
                operator=OPERATOR,
                reason=planned.reason,
                at=now,
            )
            report.status_changes += 1
    _revoke_compromised(store, registry, plan, now, report)
    return report


def _issue(
    store: LicenceStore,
    planned: PlannedLicence,
    *,
    issuer: Department,
    seal: Seal,
    key: SigningKey,
    registry: SealRegistry,
    now: dt.datetime,
) -> None:
    """Reserve, seal, check as the issuance endpoint would, publish."""
    ref = store.reserve(
        licence_id=LicenceId.parse(planned.content.licence_id), department=issuer.id, at=now
    )
    content = msgspec.structs.replace(planned.content, status=ref)
    sealed = seal_licence(content, private_key=key.key, seal=seal)
    checked = check_issuance(
        sealed, sender_department=issuer.id, sender_uscc=issuer.uscc, registry=registry, now=now
    )
    store.publish(checked, sealed, department=issuer.id, operator=OPERATOR, at=now)


def _untouched(store: LicenceStore, licence_id: str) -> bool:
    """Whether the licence is published, valid, and nothing has happened to it since."""
    record = store.get(licence_id)
    if record is None or record.status is not LicenceStatus.VALID:
        return False
    return [e.action for e in store.history(licence_id)] == ["issue"]


def _revoke_compromised(
    store: LicenceStore,
    registry: SealRegistry,
    plan: Sequence[PlannedLicence],
    now: dt.datetime,
    report: DemoLicencesReport,
) -> None:
    existing = set(store.licence_ids())
    for spec in DEMO_SEALS:
        seal = registry.by_id(spec.seal_id)
        if not spec.compromised or seal is None or seal.history:
            continue  # revoked (or otherwise changed) before: leave it
        sealed_by_it = [p.content.licence_id for p in plan if p.seal_id == spec.seal_id]
        if seal.status is SealStatus.ACTIVE and all(i in existing for i in sealed_by_it):
            store.change_seal(
                spec.seal_id,
                SealStatus.REVOKED,
                at=now,
                by=OPERATOR,
                reason="印章私钥泄露，吊销该印章（演示数据）",
                revocation_reason=RevocationReason.KEY_COMPROMISE,
            )
            report.seals_revoked += 1
