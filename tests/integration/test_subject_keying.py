"""HMAC-SM3 subject keying (国密, docs/sm2.md): a setting for new entries, recorded in each
entry's tag (``sm3:`` and 60 hex digits), so that after the switch an officer's search and a
citizen's access history find the entries keyed before it as well as those keyed after.

The expected tags are computed here with the standard library's HMAC over OpenSSL's SHA-256
and SM3 — not with the gateway's own hashing."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.entry import SubjectHasher, keying_of
from gateway.demo.population import companies
from tests.inprocess import InProcessGateway, in_process_gateway
from tests.integration.test_audit_officers import accesses, auditor

COMPANY = companies()[21]
SUBJECT = f"uscc:{COMPANY.uscc}"

pytestmark = pytest.mark.skipif(
    "sm3" not in hashlib.algorithms_available, reason="this OpenSSL has no SM3"
)


def _expected(key: bytes, digest: str) -> str:
    return hmac.new(key, SUBJECT.encode(), digest).hexdigest()


def _lookup(gw: InProcessGateway) -> int:
    with gw.client("service-centre") as centre:
        return centre.lookup(
            resource="enterprise-registration",
            subject=("uscc", COMPANY.uscc),
            fields=["name"],
            item="000201002000",
            case=f"KEY-{uuid.uuid4().hex[:10]}",
            reason="企业变更登记",
            operator="clerk-017",
        ).audit_index


def _search(gw: InProcessGateway) -> list[dict[str, Any]]:
    response = gw.http.get(
        "/v1/audit/entries", params={"subject": SUBJECT, "limit": 500}, headers=auditor(gw)
    )
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


def test_switching_to_hmac_sm3_keeps_every_older_entry_findable(
    tmp_path: Path, keys_dir: Path
) -> None:
    data = tmp_path / "district"
    key = bytes.fromhex((keys_dir / "audit-hmac.key").read_text().strip())
    with in_process_gateway(data, keys_dir) as before:
        old = _lookup(before)
        assert before.audit_entry(old)["subject_hmac"] == _expected(key, "sha256")
    with in_process_gateway(data, keys_dir, audit_subject_keying="hmac-sm3") as after:
        new = _lookup(after)
        tag = after.audit_entry(new)["subject_hmac"]
        assert tag == "sm3:" + _expected(key, "sm3")[:60]  # 240 bits: the column's 64 chars
        assert keying_of(tag) == "hmac-sm3"
        assert after.audit_entry(old)["subject_hmac"] == _expected(key, "sha256")  # untouched
        found = {e["index"] for e in _search(after)}
        assert {old, new} <= found
        # The citizen's access history (read by the service centre) lists both reads.
        listed = {a["index"] for a in accesses(after, ("uscc", COMPANY.uscc))["accesses"]}
        assert {old, new} <= listed


def test_the_hasher_gives_the_subjects_tags_under_both_keyings() -> None:
    key = bytes(range(32))
    sha, sm3 = SubjectHasher(key), SubjectHasher(key, keying="hmac-sm3")
    message = b"uscc:" + COMPANY.uscc.encode()
    expected_sha = hmac.new(key, message, "sha256").hexdigest()
    expected_sm3 = "sm3:" + hmac.new(key, message, "sm3").hexdigest()[:60]
    assert sha("uscc", COMPANY.uscc) == expected_sha
    assert sm3("uscc", COMPANY.uscc) == expected_sm3
    assert sha.tags("uscc", COMPANY.uscc) == (expected_sha, expected_sm3)
    assert sm3.tags("uscc", COMPANY.uscc) == (expected_sm3, expected_sha)
    with pytest.raises(ValueError, match="keying"):
        SubjectHasher(key, keying="hmac-md5")
