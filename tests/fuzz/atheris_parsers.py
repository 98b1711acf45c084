"""Coverage-guided fuzzing of the parsers a sender reaches (atheris, libFuzzer), outside the
suite: ``python tests/fuzz/atheris_parsers.py -max_total_time=600`` after ``pip install
atheris`` (see the README's security section).

The first byte of each input picks a target; the rest is the input. Where a parser only runs
behind a valid signature, the harness signs what the fuzzer made with a registered key, so
the fuzzer explores the strict decoding and not the signature check:

0. the token verifier on raw bytes;
1. the token verifier on a correctly signed token over fuzzed payload bytes;
2. the token verifier on a correctly signed token under fuzzed header bytes;
3. every request-claims parser on fuzzed JSON;
4. offline licence verification of a correctly sealed, fuzzed content;
5. the upload row reader (CSV and JSON Lines) on fuzzed file bytes.

Anything but the documented refusal — :class:`~gateway.errors.TokenRejected`,
:class:`~gateway.errors.InvalidInput`, a verdict — is a finding: the exception propagates and
libFuzzer saves the input.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import io
import sys
from typing import Any

import atheris

from gateway.core.protocol import TokenType

with atheris.instrument_imports():
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    from gateway.core import lookup, wire
    from gateway.core.keyring import DepartmentKey, KeyRing, KeyStatus, public_jwk
    from gateway.core.licences import Verdict, verify_sealed
    from gateway.core.policy import Field, FieldType, Resource, SharingClass
    from gateway.core.protocol import TokenType
    from gateway.core.seals import Seal, SealRegistry
    from gateway.core.status_lists import StatusList
    from gateway.core.tokens import RequestTokenVerifier
    from gateway.errors import InvalidInput, TokenRejected
    from gateway.licensing import claims as licensing
    from gateway.oversight.history import _parse as parse_history_claims
    from gateway.uploads import claims as uploads
    from gateway.uploads.claims import UploadFormat
    from gateway.uploads.options import UploadOptions
    from gateway.uploads.validation import read_rows

NOW = 1_800_000_000
KEY = ec.generate_private_key(ec.SECP256R1())
DEPT = DepartmentKey.from_jwk(
    public_jwk(KEY, alg="ES256"), department="market", status=KeyStatus.ACTIVE
)
VERIFIER = RequestTokenVerifier(keyring=KeyRing([DEPT]), audience="yiwang-gateway")
HEADER = f'{{"alg":"ES256","typ":"{TokenType.LOOKUP}","kid":"{DEPT.kid}"}}'.encode()
SEAL = Seal(
    seal_id="seal-1",
    name="专用章",
    type="administrative-approval",
    owner="approval-bureau",
    owner_uscc="11430000006122244L",
    jwk=public_jwk(KEY, alg="ES256"),
    alg="ES256",
    valid_from=dt.date(2024, 1, 1),
    valid_until=dt.date(2030, 12, 31),
)
REGISTRY = SealRegistry([SEAL])
LICENCE_HEADER = (
    f'{{"alg":"ES256","kid":"{SealRegistry.kid_of(SEAL)}","typ":"{TokenType.LICENCE}"}}'.encode()
)
LISTS = {
    "https://gateway.example/status-lists/1": StatusList("https://gateway.example/status-lists/1")
}
OPTIONS = UploadOptions.from_resource(
    Resource(
        id="roster",
        name="roster",
        provider="hrss",
        sharing=SharingClass.UNCONDITIONAL,
        subject="resident-id",
        fields=(
            Field("name", FieldType.STRING),
            Field("months", FieldType.INTEGER, column="months_paid"),
            Field("amount", FieldType.NUMBER),
            Field("active", FieldType.BOOLEAN),
            Field("since", FieldType.DATE),
        ),
        source={"adapter": "upload", "key": "id_number"},
    )
)
PARSERS: list[Any] = [
    lambda c: lookup.parse_lookup_claims("market", c),
    lambda c: lookup.parse_batch_claims("market", c, limit=10),
    lambda c: lookup.parse_manifest_claims("market", c),
    lambda c: lookup.parse_case_closure_claims("market", c),
    lambda c: lookup.parse_invalidation_claims("market", c),
    lambda c: licensing.parse_reserve_claims("market", c),
    lambda c: licensing.parse_issue_claims("market", c),
    lambda c: licensing.parse_status_claims("market", c),
    lambda c: licensing.parse_verification_claims("market", c),
    lambda c: licensing.parse_seal_registration_claims("market", c),
    lambda c: uploads.parse_upload_claims("market", c),
    lambda c: uploads.parse_report_claims("market", c),
    lambda c: parse_history_claims("market", c),
]


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _signed(header: bytes, payload: bytes) -> bytes:
    signing_input = _b64(header) + b"." + _b64(payload)
    return signing_input + b"." + _b64(ECAlgorithm(ECAlgorithm.SHA256).sign(signing_input, KEY))


def _attempt(token: bytes) -> Any:
    try:
        return VERIFIER.verify(token, typ=TokenType.LOOKUP, now=NOW, max_bytes=1 << 16)
    except TokenRejected as exc:
        return exc


def _verify(token: bytes) -> None:
    verified = _attempt(token)
    if isinstance(verified, TokenRejected):
        assert not wire.UNSAFE_TEXT.search(verified.reason), verified.reason
        return
    assert isinstance(verified.expires_at, int)
    assert verified.expires_at + 30 >= NOW


def test_one(data: bytes) -> None:
    if not data:
        return
    target, body = data[0] % 6, data[1:]
    if target == 0:
        _verify(body)
    elif target == 1:
        _verify(_signed(HEADER, body))
    elif target == 2:
        _verify(
            _signed(
                body,
                b'{"iss":"market","aud":"yiwang-gateway","iat":1800000000,'
                b'"exp":1800000060,"jti":"j"}',
            )
        )
    elif target == 3:
        try:
            claims = wire.decode_json(body)
        except wire.WireError:
            return
        if isinstance(claims, dict):
            for parse in PARSERS:
                with contextlib.suppress(InvalidInput):
                    parse(claims)
    elif target == 4:
        signing_input = _b64(LICENCE_HEADER) + b"." + _b64(body)
        jws = signing_input + b"." + _b64(ECAlgorithm(ECAlgorithm.SHA256).sign(signing_input, KEY))
        result = verify_sealed(
            jws.decode(),
            registry=REGISTRY,
            now=dt.datetime(2026, 6, 1, tzinfo=dt.UTC),
            status_lists=LISTS,
        )
        assert isinstance(result.verdict, Verdict)
    else:
        fmt = UploadFormat.CSV if body[:1] == b"c" else UploadFormat.JSONL
        with contextlib.suppress(InvalidInput):
            for _ in read_rows(io.BytesIO(body), fmt, OPTIONS):
                pass


def main() -> None:
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
