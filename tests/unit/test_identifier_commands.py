"""`gateway id` completes identifiers with their check character (the core's algorithms) and
checks whole ones; `licence issue` lists every problem of a content file at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.core.identifiers import LicenceId, ResidentId, Uscc
from gateway.licensing.commands import content_problems
from tests.support import ROOT, gateway_command

SAMPLE = ROOT / "docs" / "examples" / "licence.json"


@pytest.mark.parametrize(
    ("kind", "body", "parse"),
    [
        ("uscc", "91430602MA4L3XXX0", Uscc.parse),
        ("resident-id", "43060219900101123", ResidentId.parse),
        (
            "licence",
            "1.2.156.3005.2.11100000000013338W001.11430600006122001T.4306715000001.001",
            LicenceId.parse,
        ),
    ],
)
def test_id_completes_a_body_with_its_check_character(kind: str, body: str, parse: object) -> None:
    result = gateway_command("id", kind, body, env={})
    assert result.returncode == 0, result.stderr
    completed = result.stdout.strip()
    assert completed.startswith(body)
    assert len(completed) == len(body) + (2 if kind == "licence" else 1)
    assert callable(parse)
    parse(completed)  # the core accepts what the command made
    assert "is right" in gateway_command("id", kind, completed, env={}).stdout


def test_id_names_the_right_check_character_of_a_wrong_one() -> None:
    result = gateway_command("id", "uscc", "91430671YLF7QJ2L87", env={})
    assert result.returncode == 1
    assert "the right one gives 91430671YLF7QJ2L86" in result.stdout


def test_id_refuses_what_is_no_identifier_with_the_reason() -> None:
    result = gateway_command("id", "resident-id", "43060219901301123", env={})
    assert result.returncode == 1
    assert "birth date is not a real date" in result.stderr


def test_the_sample_licence_content_has_no_problem() -> None:
    assert content_problems(json.loads(SAMPLE.read_text(encoding="utf-8"))) == []


def test_every_problem_of_a_content_file_is_listed_at_once(tmp_path: Path) -> None:
    raw = json.loads(SAMPLE.read_text(encoding="utf-8"))
    del raw["holder_name"], raw["issue_date"]
    raw["valid_from"] = "2026-13-01"
    raw["status"] = {"list_id": "0001", "index": 1}
    raw["colour"] = "red"
    problems = dict(content_problems(raw))
    assert problems["holder_name"] == "is missing"
    assert problems["issue_date"] == "is missing"
    assert "date" in problems["valid_from"]
    assert problems["status"].startswith("must not be set")
    assert problems["colour"] == "is not a licence field"

    # Types right, identifiers wrong: both check characters and the issuer named together.
    raw = json.loads(SAMPLE.read_text(encoding="utf-8"))
    raw["licence_id"] = raw["licence_id"][:-1] + ("3" if raw["licence_id"][-1] != "3" else "4")
    raw["holder_id"] = raw["holder_id"][:-1] + ("0" if raw["holder_id"][-1] != "0" else "1")
    raw["valid_until"] = "2000-01-01"
    path = tmp_path / "licence.json"
    path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    result = gateway_command(
        "licence",
        "issue",
        "--as",
        "market",
        "--seal-key",
        str(path),
        "--content",
        str(path),
        env={},
    )
    assert result.returncode == 2
    assert "has 3 problems" in result.stderr
    for field in (
        "licence_id: check character is wrong",
        "holder_id: check character is wrong",
        "valid_until: is before valid_from",
    ):
        assert field in result.stderr
