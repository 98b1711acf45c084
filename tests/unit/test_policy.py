"""Policy decisions on the demo district and on small hand-made sets."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gateway.core.policy import PolicySet, ReasonCode, load_policy_set
from gateway.errors import InvalidInput, PolicyDenied, PolicySetInvalid
from tests.support import copy_policies

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def policy() -> PolicySet:
    return load_policy_set(ROOT / "policies")


def decide(
    policy: PolicySet,
    consumer: str,
    resource: str,
    fields: list[str],
    item: str,
    now: dt.datetime = NOW,
) -> str:
    try:
        d = policy.decide(
            consumer=consumer,
            resource=policy.resource(resource),
            fields=fields,
            item=policy.service_item(item),
            now=now,
        )
    except PolicyDenied as exc:
        return str(exc.reason_code)
    return d.grant_id


def test_demo_district_is_big_enough(policy: PolicySet) -> None:
    assert len(policy.departments) >= 6
    assert len(policy.resources) >= 6
    assert len(policy.items) >= 10
    classes = {r.sharing for r in policy.resources.values()}
    assert classes == {"unconditional", "conditional", "not-shared"}


def test_grant_allows_exactly_its_fields_and_items(policy: PolicySet) -> None:
    assert (
        decide(
            policy, "service-centre", "enterprise-registration", ["name", "status"], "000201002000"
        )
        == "g-centre-enterprise"
    )
    assert (
        decide(
            policy,
            "service-centre",
            "enterprise-registration",
            ["name", "registered_capital"],
            "000201002000",
        )
        == ReasonCode.FIELD_NOT_GRANTED
    )
    assert (
        decide(policy, "service-centre", "enterprise-registration", ["name"], "000109001000")
        == ReasonCode.PURPOSE_NOT_GRANTED
    )


def test_default_deny_without_grant(policy: PolicySet) -> None:
    assert (
        decide(policy, "police", "enterprise-registration", ["name"], "000201002000")
        == ReasonCode.NO_GRANT
    )


def test_not_shared_is_never_allowed(policy: PolicySet) -> None:
    assert (
        decide(policy, "realestate", "criminal-record", ["has_record"], "000113001000")
        == ReasonCode.NOT_SHARED
    )


def test_expired_grant_refused(policy: PolicySet) -> None:
    assert (
        decide(policy, "tax", "property-ownership", ["property_count"], "000109002000")
        == ReasonCode.GRANT_EXPIRED
    )
    # ...and the same grant allowed while it was in force.
    then = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    assert (
        decide(policy, "tax", "property-ownership", ["property_count"], "000109002000", now=then)
        == "g-tax-property-2024"
    )


def test_unknown_resource_and_item_are_input_errors(policy: PolicySet) -> None:
    with pytest.raises(InvalidInput) as err:
        policy.resource("no-such-thing")
    assert err.value.field == "query.resource"
    with pytest.raises(InvalidInput) as err:
        policy.service_item("999999999999")
    assert err.value.field == "purpose.item"


def _copy(tmp_path: Path) -> Path:
    return copy_policies(tmp_path / "policies")


def test_granting_a_not_shared_resource_is_refused_at_load(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    with (d / "grants.toml").open("a", encoding="utf-8") as fh:
        fh.write(
            '\n[[grant]]\nid = "g-bad"\nconsumer = "market"\nresource = "criminal-record"\n'
            'fields = ["has_record"]\nitems = ["000201001000"]\n'
            'approval = { by = "x", on = 2026-01-01, document = "y" }\n'
        )
    with pytest.raises(PolicySetInvalid) as err:
        load_policy_set(d)
    assert any("g-bad" in p and "not-shared" in p for p in err.value.problems)


def test_approval_missing_on_conditional_resource(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    with (d / "grants.toml").open("a", encoding="utf-8") as fh:
        fh.write(
            '\n[[grant]]\nid = "g-noapproval"\nconsumer = "police"\n'
            'resource = "social-insurance"\nfields = ["name"]\nitems = ["000107001000"]\n'
        )
    policy = load_policy_set(d)
    assert (
        decide(policy, "police", "social-insurance", ["name"], "000107001000")
        == ReasonCode.APPROVAL_MISSING
    )


def test_load_errors_name_file_and_field(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    text = (d / "grants.toml").read_text(encoding="utf-8")
    (d / "grants.toml").write_text(
        text.replace('fields = ["name"]', 'fields = "name"', 1), encoding="utf-8"
    )
    with pytest.raises(PolicySetInvalid) as err:
        load_policy_set(d)
    assert "grants.toml" in err.value.problems[0]
    assert "fields" in err.value.problems[0]


def test_department_uscc_check_character_is_verified(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    text = (d / "departments.toml").read_text(encoding="utf-8")
    (d / "departments.toml").write_text(
        text.replace("11430600006122001T", "11430600006122001U"), encoding="utf-8"
    )
    with pytest.raises(PolicySetInvalid) as err:
        load_policy_set(d)
    assert err.value.problems == [
        "departments.toml:8: department 'market'.uscc: check character is wrong"
    ]


def test_version_changes_with_meaning_only(tmp_path: Path, policy: PolicySet) -> None:
    d = _copy(tmp_path)
    text = (d / "grants.toml").read_text(encoding="utf-8")
    (d / "grants.toml").write_text("# a comment\n" + text, encoding="utf-8")
    assert load_policy_set(d).version == policy.version
    (d / "grants.toml").write_text(
        text.replace('"name", "status"]', '"name"]', 1), encoding="utf-8"
    )
    assert load_policy_set(d).version != policy.version
