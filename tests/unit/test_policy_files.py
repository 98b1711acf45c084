"""Load errors of the policy files name the file, the line and the field.

Each test edits a copy of the demo district's files; expected lines are found in the
edited text, so that the tests do not break when the demo files grow.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gateway.core.policy import (
    POLICY_FILES,
    PolicyFilesInvalid,
    PolicyProblem,
    PolicySet,
    load_policy_set,
    parse_policy_texts,
    policy_set_from_texts,
    read_policy_texts,
)
from gateway.errors import PolicySetInvalid
from tests.support import edit_file as edit

ROOT = Path(__file__).resolve().parents[2]


def line_of(directory: Path, file: str, needle: str) -> int:
    """The 1-based line of the first occurrence of ``needle`` in ``file``."""
    text = (directory / file).read_text(encoding="utf-8")
    assert needle in text, needle
    return text[: text.index(needle)].count("\n") + 1


def problems(directory: Path) -> list[str]:
    with pytest.raises(PolicySetInvalid) as err:
        load_policy_set(directory)
    return err.value.problems


def test_type_error_names_line_and_path(policies: Path) -> None:
    # The first `fields = ["name"]` is that of the fifth grant, g-tax-identity.
    edit(policies, "grants.toml", 'fields = ["name"]', 'fields = "name"')
    line = line_of(policies, "grants.toml", 'fields = "name"')
    assert problems(policies) == [f"grants.toml:{line}: grant[4].fields: Expected array, got str"]


def test_constraint_error_says_what_was_there(policies: Path) -> None:
    edit(policies, "grants.toml", "max_subjects_per_day = 50", "max_subjects_per_day = 0")
    line = line_of(policies, "grants.toml", "max_subjects_per_day = 0")
    [problem] = problems(policies)
    assert problem.startswith(f"grants.toml:{line}: grant[")
    assert problem.endswith(".max_subjects_per_day: Expected int >= 1, got 0")


def test_unknown_field_in_a_grant(policies: Path) -> None:
    edit(policies, "grants.toml", 'fields = ["name"]', 'fields = ["name", "shoe_size"]')
    line = line_of(policies, "grants.toml", '"shoe_size"')
    assert problems(policies) == [
        f"grants.toml:{line}: grant 'g-tax-identity'.fields: unknown fields shoe_size"
    ]


def test_unknown_field_in_a_multi_line_array_points_at_its_own_line(policies: Path) -> None:
    edit(policies, "grants.toml", 'fields = ["name"]', 'fields = [\n  "name",\n  "shoe_size",\n]')
    line = line_of(policies, "grants.toml", '"shoe_size"')
    assert line == line_of(policies, "grants.toml", 'fields = [\n  "name",\n') + 2
    assert problems(policies) == [
        f"grants.toml:{line}: grant 'g-tax-identity'.fields: unknown fields shoe_size"
    ]


def test_misspelt_key_gets_a_suggestion(policies: Path) -> None:
    edit(policies, "grants.toml", 'fields = ["name"]', 'feilds = ["name"]')
    line = line_of(policies, "grants.toml", "feilds")
    assert problems(policies) == [
        f"grants.toml:{line}: grant[4].feilds: unknown field; did you mean 'fields'?"
    ]


def test_missing_key_points_at_the_entry(policies: Path) -> None:
    edit(policies, "grants.toml", 'consumer = "tax"\n', "")
    line = line_of(policies, "grants.toml", 'id = "g-tax-enterprise"')
    assert problems(policies) == [
        f"grants.toml:{line}: grant[1].consumer: required field is missing"
    ]


def test_bad_enum_in_an_inline_array_of_tables_points_at_the_element(policies: Path) -> None:
    edit(
        policies,
        "catalogue.toml",
        '{ name = "gender", type = "string"',
        '{ name = "gender", type = "text"',
    )
    line = line_of(policies, "catalogue.toml", '{ name = "gender"')
    assert problems(policies) == [
        f"catalogue.toml:{line}: resource[1].fields[1].type: Invalid enum value 'text'"
    ]


def test_toml_syntax_error(policies: Path) -> None:
    edit(policies, "grants.toml", 'fields = ["name"]', 'fields ["name"]')
    line = line_of(policies, "grants.toml", 'fields ["name"]')
    assert problems(policies) == [
        f"grants.toml:{line}: grant[4].fields: TOML syntax error: "
        "Expected '=' after a key in a key/value pair (column 8)"
    ]


def test_toml_syntax_error_at_the_end_of_the_file(policies: Path) -> None:
    # the unfinished grant is the one after every grant of the file (indexes count from 0)
    index = (policies / "grants.toml").read_text(encoding="utf-8").count("[[grant]]")
    with (policies / "grants.toml").open("a", encoding="utf-8") as fh:
        fh.write('\n[[grant]]\nid = "g-unfinished\n')
    line = line_of(policies, "grants.toml", 'id = "g-unfinished')
    [problem] = problems(policies)
    assert problem.startswith(f"grants.toml:{line}: grant[{index}].id: TOML syntax error: ")


def test_unknown_resource_in_an_items_materials(policies: Path) -> None:
    edit(
        policies,
        "catalogue.toml",
        '{ name = "清税证明", resource = "tax-compliance" }',
        '{ name = "清税证明", resource = "tax-clearance" }',
    )
    line = line_of(policies, "catalogue.toml", '"tax-clearance"')
    assert problems(policies) == [
        f"catalogue.toml:{line}: item '000201003000'.materials[1].resource: "
        "material '清税证明' names 'tax-clearance', which is not in the catalogue"
    ]


def test_semantic_problem_without_its_key_points_at_the_id_line(policies: Path) -> None:
    edit(policies, "catalogue.toml", 'legal_basis = "《税收征收管理法》第八条"\n', "")
    line = line_of(policies, "catalogue.toml", 'id = "tax-compliance"')
    assert problems(policies) == [
        f"catalogue.toml:{line}: resource 'tax-compliance'.legal_basis: "
        "conditional resources need a legal basis"
    ]


def test_sub_table_keys_are_located(policies: Path) -> None:
    edit(
        policies,
        "grants.toml",
        'approval = { by = "区数据资源管理局", on = 2026-01-15, document = "新港数审〔2026〕4号" }',
        '[grant.approval]\nby = "区数据资源管理局"\non = 2026-01-15\ndocument = 4',
    )
    line = line_of(policies, "grants.toml", "document = 4")
    assert problems(policies) == [
        f"grants.toml:{line}: grant[4].approval.document: Expected str, got int"
    ]


def test_masks_are_checked_per_field(policies: Path) -> None:
    edit(
        policies,
        "grants.toml",
        'masks = { name = "name" }',
        'masks = { name = "initials", months_paid = "full" }',
    )
    line = line_of(policies, "grants.toml", 'masks = { name = "initials"')
    assert problems(policies) == [
        f"grants.toml:{line}: grant 'g-centre-insurance'.masks.name: "
        "unknown mask 'initials' (name, id-number, keep:F:L or full)",
        f"grants.toml:{line}: grant 'g-centre-insurance'.masks.months_paid: "
        "the field is not granted",
    ]


def test_repeated_ids_point_at_the_repeat(policies: Path) -> None:
    edit(policies, "grants.toml", 'id = "g-tax-identity"', 'id = "g-market-identity"')
    first = line_of(policies, "grants.toml", 'id = "g-market-identity"')
    text = (policies / "grants.toml").read_text(encoding="utf-8")
    second = text[: text.rindex('id = "g-market-identity"')].count("\n") + 1
    assert second > first
    assert problems(policies) == [
        f"grants.toml:{second}: grant[4].id: 'g-market-identity' is already the id of the "
        f"grant at line {first}"
    ]


def test_every_file_is_decoded_and_all_problems_come_together(policies: Path) -> None:
    edit(policies, "departments.toml", 'roles = ["consumer", "provider"]', 'roles = "provider"')
    edit(policies, "grants.toml", 'fields = ["name"]', 'fields = "name"')
    found = problems(policies)
    assert [p.split(":")[0] for p in found] == ["departments.toml", "grants.toml"]


def test_missing_file_has_no_line() -> None:
    texts = read_policy_texts(ROOT / "policies")
    del texts["grants.toml"]
    with pytest.raises(PolicySetInvalid) as err:
        policy_set_from_texts(texts)
    assert err.value.problems == ["grants.toml: file is missing"]


def test_findings_are_kept_structured(policies: Path) -> None:
    edit(policies, "grants.toml", 'fields = ["name"]', 'fields = ["name", "shoe_size"]')
    with pytest.raises(PolicyFilesInvalid) as err:
        load_policy_set(policies)
    line = line_of(policies, "grants.toml", '"shoe_size"')
    assert err.value.findings == [
        PolicyProblem(
            "grants.toml", line, "grant 'g-tax-identity'.fields", "unknown fields shoe_size"
        )
    ]
    assert err.value.problems == [str(f) for f in err.value.findings]


def test_validate_without_texts_names_file_and_field() -> None:
    demo = load_policy_set(ROOT / "policies")
    grant = demo.grants["g-tax-identity"]
    broken = PolicySet(
        departments=demo.departments.values(),
        resources=demo.resources.values(),
        items=demo.items.values(),
        grants=[msgspec.structs.replace(grant, fields=("shoe_size",))],
    )
    with pytest.raises(PolicySetInvalid) as err:
        broken.validate()
    assert err.value.problems == [
        "grants.toml: grant 'g-tax-identity'.fields: unknown fields shoe_size"
    ]


def test_the_demo_set_parses_without_problems() -> None:
    parsed = parse_policy_texts(read_policy_texts(ROOT / "policies"))
    assert parsed.problems == []
    assert parsed.policy is not None
    assert parsed.line_of("grant", "g-tax-property-2024", "valid_until") == _line(
        "grants.toml", "valid_until = 2024-12-31"
    )


def _line(file: str, needle: str) -> int:
    return line_of(ROOT / "policies", file, needle)


@pytest.mark.parametrize("file", POLICY_FILES)
def test_any_one_line_removed_is_reported_inside_the_file(tmp_path: Path, file: str) -> None:
    # Robustness of the line scanner: whatever breaks, loading reports problems (never
    # crashes) and every line it names exists.
    texts = read_policy_texts(ROOT / "policies")
    lines = texts[file].splitlines(keepends=True)
    for n in range(len(lines)):
        edited = {**texts, file: "".join(lines[:n] + lines[n + 1 :])}
        parsed = parse_policy_texts(edited)
        for p in parsed.problems:
            assert p.line is not None, (n, p)
            assert 1 <= p.line <= max(1, len(edited[p.file].splitlines())), (n, p)
