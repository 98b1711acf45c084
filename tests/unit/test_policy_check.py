"""`check_policy`, `explain_decision` and the `gateway policy` commands, on edited copies of
the demo district's policy files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.core.policy import ReasonCode, load_policy_set, read_policy_texts
from gateway.core.policy_check import CheckReport, Finding, Severity, check_policy, explain_decision
from gateway.errors import InvalidInput
from gateway.policy.commands import policy as policy_command
from tests.support import edit_file as edit

ROOT = Path(__file__).resolve().parents[2]
TODAY = dt.date(2026, 11, 27)
NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)  # a Friday, 18:00 in the district

GRANT = (
    '\n[[grant]]\nid = "{id}"\nconsumer = "{consumer}"\nresource = "{resource}"\n'
    "fields = [{fields}]\nitems = [{items}]\n{extra}\n"
)
APPROVAL = 'approval = { by = "区数据资源管理局", on = 2026-01-01, document = "x" }'


def add_grant(
    directory: Path,
    id: str,
    consumer: str,
    resource: str,
    fields: list[str],
    items: list[str],
    extra: str = APPROVAL,
) -> None:
    with (directory / "grants.toml").open("a", encoding="utf-8") as fh:
        fh.write(
            GRANT.format(
                id=id,
                consumer=consumer,
                resource=resource,
                fields=", ".join(f'"{f}"' for f in fields),
                items=", ".join(f'"{i}"' for i in items),
                extra=extra,
            )
        )


def line_of(directory: Path, file: str, needle: str) -> int:
    text = (directory / file).read_text(encoding="utf-8")
    assert needle in text, needle
    return text[: text.index(needle)].count("\n") + 1


def check(directory: Path, today: dt.date = TODAY) -> CheckReport:
    return check_policy(read_policy_texts(directory), today=today)


def new_findings(report: CheckReport) -> list[Finding]:
    """The findings beyond those of the unedited demo set."""
    baseline = {(f.field, f.message) for f in check(ROOT / "policies").findings}
    return [f for f in report.findings if (f.field, f.message) not in baseline]


# --- the demo set -----------------------------------------------------------------------------


def test_demo_set_has_no_errors_and_warns_about_the_expired_grant() -> None:
    report = check(ROOT / "policies")
    assert report.ok
    assert report.errors == []
    assert report.policy_version == load_policy_set(ROOT / "policies").version
    expired = [f for f in report.warnings if f.field == "grant 'g-tax-property-2024'.valid_until"]
    assert expired == [
        Finding(
            Severity.WARNING,
            "grants.toml",
            line_of(ROOT / "policies", "grants.toml", "valid_until = 2024-12-31"),
            "grant 'g-tax-property-2024'.valid_until",
            "the grant expired on 2024-12-31: lookups under it are refused (grant-expired)",
        )
    ]
    assert report.summary().startswith("0 errors, ")


def test_demo_set_before_the_expiry_has_no_expiry_warning() -> None:
    report = check(ROOT / "policies", today=dt.date(2024, 6, 1))
    assert report.ok
    assert not any("expired" in f.message for f in report.findings)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "field", "message", "needle"),
    [
        (
            'consumer = "hrss"\nresource = "enterprise-registration"',
            'consumer = "labour"\nresource = "enterprise-registration"',
            "grant 'g-hrss-enterprise'.consumer",
            "'labour' is not a department",
            'consumer = "labour"',
        ),
        (
            'resource = "enterprise-registration"\nfields = ["name", "status"]',
            'resource = "enterprise-register"\nfields = ["name", "status"]',
            "grant 'g-hrss-enterprise'.resource",
            "'enterprise-register' is not in the catalogue",
            '"enterprise-register"',
        ),
        (
            'fields = ["name", "status"]',
            'fields = ["name", "shoe_size"]',
            "grant 'g-hrss-enterprise'.fields",
            "unknown fields shoe_size",
            '"shoe_size"',
        ),
        (
            'items = ["000111001000"]',
            'items = ["000111001999"]',
            "grant 'g-hrss-enterprise'.items",
            "unknown service items 000111001999",
            '"000111001999"',
        ),
        (
            'items = ["000111001000"]',
            'items = ["000111001000"]\nmasks = { status = "stars" }',
            "grant 'g-hrss-enterprise'.masks.status",
            "unknown mask 'stars' (name, id-number, keep:F:L or full)",
            "masks = {",
        ),
        (
            'items = ["000111001000"]',
            'items = ["000111001000"]\nmasks = { name = "keep:1:1", status = "full" }',
            None,
            None,
            "",
        ),
    ],
    ids=["consumer", "resource", "field", "item", "mask", "good-masks"],
)
def test_load_errors_are_errors_at_their_line(
    policies: Path, old: str, new: str, field: str | None, message: str | None, needle: str
) -> None:
    edit(policies, "grants.toml", old, new)
    report = check(policies)
    if field is None or message is None:
        assert report.ok
        return
    # (Warnings may follow, e.g. a material no grant supplies any more.)
    assert report.errors == [
        Finding(
            Severity.ERROR,
            "grants.toml",
            line_of(policies, "grants.toml", needle),
            field,
            message,
        )
    ]
    assert report.policy_version is None


def test_grant_of_a_not_shared_resource_is_an_error(policies: Path) -> None:
    add_grant(policies, "g-bad", "market", "criminal-record", ["has_record"], ["000201001000"])
    report = check(policies)
    assert [(f.severity, f.line, f.field, f.message) for f in new_findings(report)] == [
        (
            Severity.ERROR,
            line_of(policies, "grants.toml", 'resource = "criminal-record"'),
            "grant 'g-bad'.resource",
            "'criminal-record' is not-shared and can never be granted",
        )
    ]


def test_mask_on_a_non_text_field_is_an_error(policies: Path) -> None:
    edit(
        policies,
        "grants.toml",
        'masks = { name = "name", address = "keep:12:0" }',
        'masks = { name = "name", address = "keep:12:0", birth_date = "keep:4:0" }',
    )
    [finding] = new_findings(check(policies))
    assert finding.severity is Severity.ERROR
    assert finding.field == "grant 'g-civil-identity'.masks.birth_date"
    assert finding.message == "mask 'keep:4:0' needs a string field, not a date one"
    assert finding.line == line_of(policies, "grants.toml", 'birth_date = "keep:4:0"')


def test_syntax_error_is_the_only_finding_of_an_unreadable_file(policies: Path) -> None:
    edit(policies, "grants.toml", 'fields = ["name"]', 'fields = ["name"')
    report = check(policies)
    assert [(f.severity, f.file) for f in report.findings] == [(Severity.ERROR, "grants.toml")]
    assert "TOML syntax error: Unclosed array" in report.findings[0].message
    assert report.policy_version is None


def test_conditional_grant_without_approval_is_an_error(policies: Path) -> None:
    # It loads (and refuses every lookup with approval-missing), but it is a mistake.
    add_grant(
        policies,
        "g-noapproval",
        "police",
        "social-insurance",
        ["name"],
        ["000107001000"],
        extra="",
    )
    load_policy_set(policies)
    findings = new_findings(check(policies))
    assert [(f.severity, f.line, f.field) for f in findings] == [
        (
            Severity.ERROR,
            line_of(policies, "grants.toml", 'id = "g-noapproval"'),
            "grant 'g-noapproval'.approval",
        )
    ]
    assert "needs an approval" in findings[0].message


# --- warnings ---------------------------------------------------------------------------------


def test_not_yet_valid_grant_is_a_warning(policies: Path) -> None:
    add_grant(
        policies,
        "g-hrss-marriage",
        "hrss",
        "marriage-record",
        ["marital_status"],
        ["000111002000"],
        extra=APPROVAL + "\nvalid_from = 2027-01-01",
    )
    assert [(f.severity, f.line, f.field, f.message) for f in new_findings(check(policies))] == [
        (
            Severity.WARNING,
            line_of(policies, "grants.toml", "valid_from = 2027-01-01"),
            "grant 'g-hrss-marriage'.valid_from",
            "the grant is in force only from 2027-01-01: until then lookups under it are "
            "refused (grant-expired)",
        )
    ]


def test_duplicate_grant_is_a_warning(policies: Path) -> None:
    add_grant(
        policies, "g-hrss-enterprise-2", "hrss", "enterprise-registration", ["status", "name"], []
    )
    edit(policies, "grants.toml", "items = []", 'items = ["000111001000"]')
    earlier = line_of(policies, "grants.toml", 'id = "g-hrss-enterprise"')
    assert [(f.severity, f.line, f.message) for f in new_findings(check(policies))] == [
        (
            Severity.WARNING,
            line_of(policies, "grants.toml", 'id = "g-hrss-enterprise-2"'),
            "names the same consumer, resource, fields and items as grant "
            f"'g-hrss-enterprise' (line {earlier})",
        )
    ]


def test_shadowed_grant_is_a_warning(policies: Path) -> None:
    # g-tax-enterprise (all fields, item 000109001000) comes first and allows all of this.
    add_grant(policies, "g-tax-enterprise-name", "tax", "enterprise-registration", ["name"], [])
    edit(policies, "grants.toml", "items = []", 'items = ["000109001000"]')
    earlier = line_of(policies, "grants.toml", 'id = "g-tax-enterprise"')
    [finding] = new_findings(check(policies))
    assert finding.severity is Severity.WARNING
    assert finding.field == "grant 'g-tax-enterprise-name'.id"
    assert finding.message == (
        f"never decides anything: grant 'g-tax-enterprise' (line {earlier}) comes first for "
        "this consumer and resource and allows every request this grant allows"
    )


def test_shadowing_grant_with_a_quota_says_the_quota_applies(policies: Path) -> None:
    add_grant(policies, "g-civil-identity-name", "civil-affairs", "resident-identity", ["name"], [])
    edit(policies, "grants.toml", "items = []", 'items = ["000105001000"]')
    [finding] = new_findings(check(policies))
    assert finding.message.endswith(
        "; its limit of 50 subjects a day applies instead; its masks apply instead"
    )


@pytest.mark.parametrize(
    ("fields", "items", "extra"),
    [
        (["name", "registered_capital"], ["000109001000"], ""),  # more fields
        (["name"], ["000109001000", "000109002000"], ""),  # more items
    ],
)
def test_wider_later_grant_is_not_shadowed(
    policies: Path, fields: list[str], items: list[str], extra: str
) -> None:
    edit(
        policies,
        "grants.toml",
        'fields = ["name", "legal_representative", "registered_capital", "established_on", '
        '"address", "business_scope", "status"]',
        'fields = ["name", "status"]',
    )
    add_grant(policies, "g-tax-enterprise-2", "tax", "enterprise-registration", fields, items)
    assert new_findings(check(policies)) == []


def test_office_hours_make_an_earlier_grant_narrower(policies: Path) -> None:
    # g-centre-insurance holds only in office hours: a later all-day grant still decides.
    add_grant(policies, "g-centre-insurance-2", "service-centre", "social-insurance", ["name"], [])
    edit(policies, "grants.toml", "items = []", 'items = ["000111002000"]')
    assert new_findings(check(policies)) == []
    policy = load_policy_set(policies)
    evening = dt.datetime(2026, 11, 26, 20, 0, tzinfo=dt.UTC)
    decision = policy.decide(
        consumer="service-centre",
        resource=policy.resource("social-insurance"),
        fields=["name"],
        item=policy.service_item("000111002000"),
        now=evening,
    )
    assert decision.grant_id == "g-centre-insurance-2"


def test_material_no_grant_supplies_is_a_warning(policies: Path) -> None:
    # Without g-market-tax nobody may read tax-compliance: the clearance certificate of
    # 企业注销登记 cannot come over the network, and tax provides nothing readable.
    edit(
        policies,
        "grants.toml",
        'id = "g-market-tax"',
        'id = "g-market-tax"\nvalid_until = 2025-01-01',
    )
    found = [
        (f.severity, f.file, f.line, f.field, f.message) for f in new_findings(check(policies))
    ]
    assert found == [
        (
            Severity.WARNING,
            "departments.toml",
            _roles_line(policies, "tax"),
            "department 'tax'.roles",
            "has the provider role but no grant in force lets anyone read its resources "
            "(tax-compliance)",
        ),
        (
            Severity.WARNING,
            "catalogue.toml",
            line_of(policies, "catalogue.toml", '{ name = "清税证明"'),
            "item '000201003000'.materials[1]",
            "material '清税证明': the grants for 'tax-compliance' that name this item allow "
            "nothing today: g-market-tax (expired on 2025-01-01); applicants must still bring it",
        ),
        (
            Severity.WARNING,
            "grants.toml",
            line_of(policies, "grants.toml", "valid_until = 2025-01-01"),
            "grant 'g-market-tax'.valid_until",
            "the grant expired on 2025-01-01: lookups under it are refused (grant-expired)",
        ),
    ]


def _roles_line(directory: Path, department: str) -> int:
    text = (directory / "departments.toml").read_text(encoding="utf-8")
    at = text.index("roles =", text.index(f'id = "{department}"'))
    return text[:at].count("\n") + 1


def test_material_of_an_item_no_grant_names_is_a_warning() -> None:
    # The demo's 户口迁入登记 (police) lists identity and property, and police holds no grant.
    report = check(ROOT / "policies")
    assert [f.message for f in report.warnings if f.field.startswith("item '000107001000'")] == [
        "material '身份证明': no grant for resource 'resident-identity' names this item; "
        "applicants must still bring it",
        "material '合法稳定住所证明': no grant for resource 'property-ownership' names this "
        "item; applicants must still bring it",
    ]


def test_provider_without_resources_is_a_warning(policies: Path) -> None:
    edit(
        policies,
        "departments.toml",
        'roles = ["consumer", "portal"]',
        'roles = ["consumer", "portal", "provider"]',
    )
    [finding] = new_findings(check(policies))
    assert (finding.severity, finding.line, finding.field, finding.message) == (
        Severity.WARNING,
        _roles_line(policies, "service-centre"),
        "department 'service-centre'.roles",
        "has the provider role but provides no catalogued resource",
    )


# --- explain_decision -------------------------------------------------------------------------


def test_explain_allowed_decision() -> None:
    policy = load_policy_set(ROOT / "policies")
    answer = explain_decision(
        policy,
        consumer="civil-affairs",
        resource="resident-identity",
        item="000105001000",
        fields=["name", "address"],
        now=NOW,
    )
    json.dumps(answer)  # plain JSON-able data
    assert answer["decision"] == {
        "allowed": True,
        "grant": "g-civil-identity",
        "reason_code": None,
        "detail": None,
        "fields": ["name", "address"],
        "masks": {"name": "name", "address": "keep:12:0"},
        "max_subjects_per_day": 50,
    }
    assert answer["resource"]["sharing"] == "conditional"
    assert answer["resource"]["legal_basis"].startswith("《居民身份证法》")
    assert answer["at"] == "2026-11-27T18:00:00+08:00"
    assert answer["policy_version"] == policy.version
    assert [c["grant"] for c in answer["candidates"]] == ["g-civil-identity"]
    assert answer["candidates"][0]["allows"] is True
    assert answer["candidates"][0]["approval"]["document"] == "新港数审〔2026〕8号"


def test_explain_lists_every_candidate_in_order(policies: Path) -> None:
    add_grant(
        policies,
        "g-tax-enterprise-extra",
        "tax",
        "enterprise-registration",
        ["name"],
        ["000109002000"],
    )
    policy = load_policy_set(policies)
    answer = explain_decision(
        policy,
        consumer="tax",
        resource="enterprise-registration",
        item="000109002000",
        fields=["name"],
        now=NOW,
    )
    assert [(c["grant"], c["allows"], c["reason_code"]) for c in answer["candidates"]] == [
        ("g-tax-enterprise", False, "purpose-not-granted"),
        ("g-tax-enterprise-extra", True, None),
    ]
    assert answer["decision"]["grant"] == "g-tax-enterprise-extra"


def test_explain_refused_decision_gives_the_best_reason() -> None:
    policy = load_policy_set(ROOT / "policies")
    answer = explain_decision(
        policy,
        consumer="service-centre",
        resource="enterprise-registration",
        item="000201002000",
        fields=["name", "registered_capital"],
        now=NOW,
    )
    assert answer["decision"]["allowed"] is False
    assert answer["decision"]["reason_code"] == ReasonCode.FIELD_NOT_GRANTED
    assert answer["decision"]["detail"] == "fields not granted: registered_capital"


def test_explain_naive_time_is_district_time() -> None:
    policy = load_policy_set(ROOT / "policies")
    answer = explain_decision(
        policy,
        consumer="service-centre",
        resource="social-insurance",
        item="000111002000",
        now=dt.datetime(2026, 11, 27, 9, 0),
    )
    assert answer["at"] == "2026-11-27T09:00:00+08:00"
    assert answer["decision"]["grant"] == "g-centre-insurance"
    assert answer["request"]["fields"] is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"consumer": "nobody"}, "consumer"),
        ({"resource": "nothing"}, "resource"),
        ({"item": "000000000000"}, "item"),
        ({"fields": ["name", "shoe_size"]}, "fields"),
    ],
)
def test_explain_unknown_names_are_input_errors(kwargs: dict[str, object], field: str) -> None:
    policy = load_policy_set(ROOT / "policies")
    request: dict[str, object] = {
        "consumer": "tax",
        "resource": "enterprise-registration",
        "item": "000109001000",
        "fields": ["name"],
        **kwargs,
    }
    with pytest.raises(InvalidInput) as err:
        explain_decision(policy, now=NOW, **request)  # type: ignore[arg-type]
    assert err.value.field == field


# --- the commands -----------------------------------------------------------------------------


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(policy_command, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_check_command_on_the_demo_set() -> None:
    code, out, _ = run("check", "--dir", str(ROOT / "policies"), "--today", "2026-11-27")
    assert code == 0
    lines = out.splitlines()
    expired = line_of(ROOT / "policies", "grants.toml", "valid_until = 2024-12-31")
    assert (
        f"warning grants.toml:{expired} grant 'g-tax-property-2024'.valid_until: "
        "the grant expired on 2024-12-31: lookups under it are refused (grant-expired)"
    ) in lines
    assert lines[-1].startswith(f"{ROOT / 'policies'}: 0 errors, ")
    assert all(line.startswith("warning ") for line in lines[:-1])


def test_check_command_fails_on_errors(policies: Path) -> None:
    edit(policies, "grants.toml", 'fields = ["name"]', 'fields = ["name", "shoe_size"]')
    code, out, _ = run("check", "--dir", str(policies))
    assert code == 1
    line = line_of(policies, "grants.toml", '"shoe_size"')
    assert (
        f"error grants.toml:{line} grant 'g-tax-identity'.fields: unknown fields shoe_size"
        in out.splitlines()
    )
    assert "1 error, " in out.splitlines()[-1]


def test_check_command_reports_a_missing_file(policies: Path) -> None:
    (policies / "grants.toml").unlink()
    code, out, _ = run("check", "--dir", str(policies))
    assert code == 1
    assert "error grants.toml file is missing" in out.splitlines()


def test_explain_command_allowed() -> None:
    code, out, _ = run(
        "explain",
        "--dir",
        str(ROOT / "policies"),
        "--consumer",
        "civil-affairs",
        "--resource",
        "resident-identity",
        "--item",
        "000105001000",
        "--fields",
        "name,address",
        "--at",
        "2026-11-27T10:00:00+08:00",
    )
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == (
        "ALLOWED by grant g-civil-identity: fields name, address; "
        "masked name=name, address=keep:12:0; at most 50 subjects a day"
    )
    assert any(
        line.startswith("sharing    conditional; legal basis: 《居民身份证法》") for line in lines
    )
    assert "  1. g-civil-identity: allows ← decides" in lines


def test_explain_command_refused_shows_each_grant() -> None:
    code, out, _ = run(
        "explain",
        "--dir",
        str(ROOT / "policies"),
        "--consumer",
        "tax",
        "--resource",
        "property-ownership",
        "--item",
        "000109002000",
        "--fields",
        "property_count",
        "--at",
        "2026-03-02T09:00",
    )
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "REFUSED grant-expired: the grant is not in force today"
    assert (
        "  1. g-tax-property-2024: refuses grant-expired: the grant is not in force today" in lines
    )
    assert any("valid 2024-01-01 to 2024-12-31" in line for line in lines)


def test_explain_command_not_shared_and_no_grant() -> None:
    code, out, _ = run(
        "explain",
        "--dir",
        str(ROOT / "policies"),
        "--consumer",
        "realestate",
        "--resource",
        "criminal-record",
        "--item",
        "000113001000",
    )
    assert code == 0
    assert out.splitlines()[0] == "REFUSED not-shared: the resource is not shared"
    assert "criminal-record is not-shared (不予共享): no grant can allow it" in out
    code, out, _ = run(
        "explain",
        "--dir",
        str(ROOT / "policies"),
        "--consumer",
        "police",
        "--resource",
        "enterprise-registration",
        "--item",
        "000201002000",
    )
    assert out.splitlines()[0] == "REFUSED no-grant: no grant for this consumer and resource"
    assert "no grant names police and enterprise-registration: default deny" in out


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--consumer", "nobody", "--consumer: 'nobody' is not a registered department"),
        ("--resource", "nothing", "--resource: 'nothing' is not in the catalogue"),
        ("--item", "1", "--item: '1' is not a catalogued service item code"),
        ("--fields", "name,shoe_size", "--fields: not fields of 'resident-identity': shoe_size"),
    ],
)
def test_explain_command_unknown_names_exit_2(option: str, value: str, message: str) -> None:
    args = {
        "--consumer": "tax",
        "--resource": "resident-identity",
        "--item": "000109001000",
        option: value,
    }
    code, _, err = run(
        "explain", "--dir", str(ROOT / "policies"), *[x for kv in args.items() for x in kv]
    )
    assert code == 2
    assert err.splitlines()[0] == message


def test_explain_command_on_broken_files_exits_2(policies: Path) -> None:
    edit(policies, "grants.toml", 'fields = ["name"]', 'fields = "name"')
    code, _, err = run(
        "explain",
        "--dir",
        str(policies),
        "--consumer",
        "tax",
        "--resource",
        "resident-identity",
        "--item",
        "000109001000",
    )
    assert code == 2
    assert "grant[4].fields: Expected array, got str" in err
