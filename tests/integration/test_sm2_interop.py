"""SM2 interop with implementations not written here, and hostile input in a process of its own.

- the ``openssl`` command line (``openssl dgst -sm3 … -sigopt distid:1234567812345678``):
  signatures made here verify there and the other way round, and a different user id fails
  both ways (the id is really hashed into Z);
- gmalglib (an independent SM2 in C, a dev dependency): with the standard's nonce injected it
  makes the standard's signature, which verifies here; signatures cross both ways;
- hostile input (empty and 64 MiB messages, malformed signatures, points off the curve) in a
  subprocess: the process ends normally with the expected answers, it is never aborted.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from gmalglib.sm2 import SM2 as GmalglibSM2

from gateway.core import sm2
from gateway.core.algorithms import sign_compact
from gateway.core.jose import parse_compact
from tests.unit.test_sm2 import (
    VECTOR_D,
    VECTOR_K,
    VECTOR_MESSAGE,
    VECTOR_R,
    VECTOR_S,
    VECTOR_X,
    VECTOR_Y,
)

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="no openssl command line")

# SubjectPublicKeyInfo of an SM2 key: id-ecPublicKey with the named curve SM2
# (1.2.156.10197.1.301), then the uncompressed point in a BIT STRING.
_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")
OTHER_ID = "1234567812345679"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_pem(key: sm2.SM2PublicKey) -> bytes:
    der = _SPKI_PREFIX + b"\x04" + key.x + key.y
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n".encode()


def openssl(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None
    return subprocess.run(
        [OPENSSL, *map(str, arguments)], capture_output=True, text=True, timeout=30, check=False
    )


def openssl_verifies(
    tmp_path: Path, key: sm2.SM2PublicKey, signature: bytes, message: bytes, *, distid: str
) -> bool:
    (tmp_path / "pub.pem").write_bytes(public_pem(key))
    (tmp_path / "message").write_bytes(message)
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    (tmp_path / "sig.der").write_bytes(encode_dss_signature(r, s))
    done = openssl(
        "dgst", "-sm3", "-verify", tmp_path / "pub.pem", "-sigopt", f"distid:{distid}",
        "-signature", tmp_path / "sig.der", tmp_path / "message",
    )  # fmt: skip
    assert done.stdout.strip() in {"Verified OK", "Verification failure"}, done.stderr
    return done.stdout.strip() == "Verified OK"


def _hex_block(text: str, label: str) -> bytes:
    found = re.search(rf"^{label}:\n((?:\s+[0-9a-f:]+\n)+)", text, re.MULTILINE)
    assert found, text
    return bytes.fromhex(re.sub(r"[\s:]", "", found.group(1)))


@pytest.fixture(scope="module")
def openssl_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, sm2.SM2PrivateKey]:
    """A key made by ``openssl genpkey -algorithm SM2``, and the same key imported here."""
    if OPENSSL is None:
        pytest.skip("no openssl command line")
    path = tmp_path_factory.mktemp("sm2") / "key.pem"
    assert openssl("genpkey", "-algorithm", "SM2", "-out", path).returncode == 0
    text = openssl("pkey", "-in", path, "-text", "-noout").stdout
    d = _hex_block(text, "priv").rjust(32, b"\x00")
    point = _hex_block(text, "pub")
    assert len(point) == 65
    assert point[0] == 4
    jwk = {"kty": "EC", "crv": "SM2", "x": b64(point[1:33]), "y": b64(point[33:]), "d": b64(d)}
    return path, sm2.SM2PrivateKey.from_jwk(jwk)


def openssl_signs(tmp_path: Path, key_file: Path, message: bytes, *, distid: str) -> bytes:
    (tmp_path / "message").write_bytes(message)
    done = openssl(
        "dgst", "-sm3", "-sign", key_file, "-sigopt", f"distid:{distid}",
        "-out", tmp_path / "sig.der", tmp_path / "message",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    r, s = decode_dss_signature((tmp_path / "sig.der").read_bytes())
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


# --- the openssl command line ---------------------------------------------------------------


@needs_openssl
def test_the_machines_openssl_is_version_3() -> None:
    assert openssl("version").stdout.startswith("OpenSSL 3.")


@needs_openssl
def test_a_jws_signed_here_verifies_with_openssl_only_under_the_user_id(tmp_path: Path) -> None:
    key = sm2.generate_private_key()
    token = sign_compact(
        b'{"iss":"dept"}', key=key, alg="SM2", headers={"kid": key.kid, "typ": "yiwang-lookup+jwt"}
    )
    jws = parse_compact(token, allowed_members={"alg", "kid", "typ"})
    assert openssl_verifies(
        tmp_path, key.public_key, jws.signature, jws.signing_input, distid="1234567812345678"
    )
    assert not openssl_verifies(
        tmp_path, key.public_key, jws.signature, jws.signing_input, distid=OTHER_ID
    )
    assert not openssl_verifies(
        tmp_path,
        key.public_key,
        jws.signature,
        jws.signing_input + b"x",
        distid=sm2.USER_ID.decode(),
    )


@needs_openssl
def test_the_user_id_is_the_one_set_not_a_library_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OpenSSL's default id is the same 1234567812345678: with another id in the constant, the
    # signature must follow it, which shows the id really is set on every call.
    key = sm2.generate_private_key()
    monkeypatch.setattr(sm2, "USER_ID", b"ALICE123@YAHOO.COM")
    signature = key.sign(b"m")
    assert key.public_key.verify(signature, b"m")
    assert openssl_verifies(tmp_path, key.public_key, signature, b"m", distid="ALICE123@YAHOO.COM")
    assert not openssl_verifies(
        tmp_path, key.public_key, signature, b"m", distid="1234567812345678"
    )
    monkeypatch.undo()
    assert not key.public_key.verify(signature, b"m")


@needs_openssl
def test_the_standards_signature_verifies_with_openssl(tmp_path: Path) -> None:
    key = sm2.SM2PublicKey(x=VECTOR_X, y=VECTOR_Y)
    assert openssl_verifies(
        tmp_path, key, VECTOR_R + VECTOR_S, VECTOR_MESSAGE, distid="1234567812345678"
    )


@pytest.mark.parametrize("message", [b"", b"message digest", bytes(range(256)) * 40])
def test_openssls_signature_verifies_here_only_under_the_user_id(
    tmp_path: Path, openssl_key: tuple[Path, sm2.SM2PrivateKey], message: bytes
) -> None:
    key_file, key = openssl_key
    signature = openssl_signs(tmp_path, key_file, message, distid="1234567812345678")
    assert key.public_key.verify(signature, message)
    other = openssl_signs(tmp_path, key_file, message, distid=OTHER_ID)
    assert not key.public_key.verify(other, message)


def test_openssls_key_imported_here_signs_what_openssl_verifies(
    tmp_path: Path, openssl_key: tuple[Path, sm2.SM2PrivateKey]
) -> None:
    _, key = openssl_key
    signature = key.sign(b"from here")
    assert openssl_verifies(
        tmp_path, key.public_key, signature, b"from here", distid="1234567812345678"
    )


# --- gmalglib --------------------------------------------------------------------------------


def test_gmalglib_with_the_standards_nonce_makes_the_standards_signature() -> None:
    # gmalglib reads its random bytes as a little-endian number: the nonce goes in reversed.
    signer = GmalglibSM2(VECTOR_D, uid=sm2.USER_ID, rnd_fn=lambda length: VECTOR_K[::-1])
    signature = signer.sign(VECTOR_MESSAGE)
    assert signature == VECTOR_R + VECTOR_S
    assert sm2.SM2PublicKey(x=VECTOR_X, y=VECTOR_Y).verify(signature, VECTOR_MESSAGE)


def test_signatures_cross_between_here_and_gmalglib_under_the_user_id_only() -> None:
    key = sm2.generate_private_key()
    point = b"\x04" + key.public_key.x + key.public_key.y
    theirs = GmalglibSM2(pk=point, uid=sm2.USER_ID)
    assert theirs.verify(b"payload", key.sign(b"payload"))
    assert not GmalglibSM2(pk=point, uid=OTHER_ID.encode()).verify(b"payload", key.sign(b"payload"))

    secret, their_point = GmalglibSM2().generate_keypair()
    their_key = sm2.SM2PublicKey(x=their_point[1:33], y=their_point[33:])
    assert their_key.verify(GmalglibSM2(secret, uid=sm2.USER_ID).sign(b"payload"), b"payload")
    assert not their_key.verify(
        GmalglibSM2(secret, uid=b"ALICE123@YAHOO.COM").sign(b"payload"), b"payload"
    )


def test_the_module_and_gmalglib_agree_on_the_curve() -> None:
    gm = importlib.import_module("gmalglib.sm2")
    assert int.from_bytes(gm.SM2_PARAMS_P, "big") == sm2._P
    assert int.from_bytes(gm.SM2_PARAMS_A, "big") == sm2._A
    assert int.from_bytes(gm.SM2_PARAMS_B, "big") == sm2._B
    assert int.from_bytes(gm.SM2_PARAMS_N, "big") == sm2._N


# --- hostile input in a process of its own --------------------------------------------------

_HOSTILE = """
import json, sys
from gateway.core import sm2
key = sm2.generate_private_key()
public = key.public_key
huge = bytes(64 << 20)
answers = {
    "empty": public.verify(key.sign(b""), b""),
    "huge": public.verify(key.sign(huge), huge),
    "huge-other": public.verify(key.sign(huge), huge[:-1] + b"\\x01"),
    "short": public.verify(b"\\x01" * 3, b"m"),
    "zeros": public.verify(bytes(64), b"m"),
    "ones": public.verify(b"\\xff" * 64, b"m"),
    "not-bytes": public.verify("x" * 64, b"m"),
}
refused = []
off_curve = b"\\x04" + public.x + public.x
for point in (b"\\x04" + bytes(64), b"\\x04" + b"\\xff" * 64, b"\\x00", b"", off_curve):
    try:
        sm2._pkey_from(point=point, private=None)
    except sm2.SM2KeyError as exc:
        refused.append(exc.reason)
for d in (bytes(32), b"\\xff" * 32):
    try:
        sm2._pkey_from(point=b"\\x04" + public.x + public.y, private=d)
    except sm2.SM2KeyError as exc:
        refused.append(exc.reason)
answers["refused"] = refused
print(json.dumps(answers))
"""


def test_hostile_input_never_aborts_the_process() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _HOSTILE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    assert answers.pop("refused") == ["not-a-key"] * 5 + ["pair-mismatch"] * 2
    assert answers == {
        "empty": True,
        "huge": True,
        "huge-other": False,
        "short": False,
        "zeros": False,
        "ones": False,
        "not-bytes": False,
    }


# --- docs/sm2.md's command lines, as a department pastes them ----------------------------------

_DOC = Path(__file__).resolve().parents[2] / "docs" / "sm2.md"
_TOOLS = ("bash", "openssl", "xxd", "basenc", "base64", "awk", "sed")
needs_tools = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in _TOOLS), reason="needs " + ", ".join(_TOOLS)
)


def doc_block(name: str) -> str:
    found = re.search(rf"<!-- {name} -->\n```sh\n(.*?)```", _DOC.read_text("utf-8"), re.DOTALL)
    assert found, f"docs/sm2.md has no block {name}"
    return found.group(1)


def run_block(name: str, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", doc_block(name)],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@needs_tools
def test_the_documented_signing_recipe_makes_a_token_that_verifies_here(tmp_path: Path) -> None:
    done = run_block("sm2-sign", tmp_path)
    assert done.returncode == 0, done.stderr
    key = sm2.SM2PublicKey.from_jwk(json.loads((tmp_path / "dept-sm2.pub.jwk").read_text()))
    jws = parse_compact((tmp_path / "token").read_text(), allowed_members={"alg", "kid", "typ"})
    assert jws.header.alg == "SM2"
    assert jws.header.kid == key.kid
    assert sm2.verify(jws, key=key)
    assert not sm2.verify(jws, key=sm2.generate_private_key().public_key)


@needs_tools
def test_the_documented_verifying_recipe_checks_a_token_signed_here(tmp_path: Path) -> None:
    key = sm2.generate_private_key()
    signer = tmp_path / "signer.pub.jwk"
    signer.write_text(json.dumps(key.public_key.jwk(), separators=(",", ":")))
    token = sign_compact(
        b'{"iss":"gateway"}',
        key=key,
        alg="SM2",
        headers={"kid": key.kid, "typ": "yiwang-answer+jwt"},
    )
    (tmp_path / "token").write_text(token + "\n")
    done = run_block("sm2-verify", tmp_path)
    assert (done.returncode, done.stdout.strip()) == (0, "Verified OK"), done.stderr

    header, _, signature = token.split(".")
    other_payload = b64(b'{"iss":"other"}')
    (tmp_path / "token").write_text(f"{header}.{other_payload}.{signature}\n")
    done = run_block("sm2-verify", tmp_path)
    assert done.stdout.strip() == "Verification failure"
    assert done.returncode != 0
