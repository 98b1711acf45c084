"""Signatures per second of the SM2 candidates (docs/sm2.md), and ES256 for scale.

    .venv/bin/python -m loadtests.sm2_candidates [--seconds 0.5] [--rounds 7]

Measures gateway.core.sm2 (the system's OpenSSL 3 libcrypto through ctypes) and, when they
are installed, gmalglib (in the dev extra, for the interop tests) and tongsuopy (no dependency
of the project: ``.venv/bin/uv pip install --python .venv/bin/python tongsuopy`` to compare).
One thread, a 300-byte message (about a request token's signing input), several rounds in
turn; prints the best and the median round of each.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core import sm2

_MESSAGE = bytes(range(256)) + b"x" * 44


def _rate(operation: Callable[[], object], seconds: float) -> float:
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(20):
            operation()
        count += 20
    return count / (time.perf_counter() - start)


def _candidates() -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    found: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {}
    key = sm2.generate_private_key()
    signature = key.sign(_MESSAGE)
    found["gateway.core.sm2 (libcrypto.so.3, ctypes)"] = (
        lambda: key.sign(_MESSAGE),
        lambda: key.public_key.verify(signature, _MESSAGE),
    )
    try:
        gm: Any = importlib.import_module("gmalglib.sm2")
    except ImportError:
        pass
    else:
        secret, _ = gm.SM2().generate_keypair()
        signer = gm.SM2(secret)
        gm_signature = signer.sign(_MESSAGE)
        found["gmalglib"] = (
            lambda: signer.sign(_MESSAGE),
            lambda: signer.verify(_MESSAGE, gm_signature),
        )
    try:
        ts: Any = importlib.import_module("tongsuopy.crypto.asymciphers.ec")
        ts_hashes: Any = importlib.import_module("tongsuopy.crypto.hashes")
    except ImportError:
        pass
    else:
        ts_key = ts.generate_private_key(ts.SM2())
        algorithm = ts.ECDSA(ts_hashes.SM3())
        ts_signature = ts_key.sign(_MESSAGE, algorithm)
        ts_public = ts_key.public_key()
        found["tongsuopy"] = (
            lambda: ts_key.sign(_MESSAGE, algorithm),
            lambda: ts_public.verify(ts_signature, _MESSAGE, algorithm),
        )
    p256 = ec.generate_private_key(ec.SECP256R1())
    es_signature = p256.sign(_MESSAGE, ec.ECDSA(hashes.SHA256()))
    found["ES256 (cryptography, for scale)"] = (
        lambda: p256.sign(_MESSAGE, ec.ECDSA(hashes.SHA256())),
        lambda: p256.public_key().verify(es_signature, _MESSAGE, ec.ECDSA(hashes.SHA256())),
    )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="per operation and round")
    parser.add_argument("--rounds", type=int, default=7)
    arguments = parser.parse_args()
    candidates = _candidates()
    rates: dict[tuple[str, str], list[float]] = {}
    # Candidates take turns within each round: on a shared machine, load that comes and goes
    # then falls on all of them alike; the best round is the least disturbed one.
    for _ in range(arguments.rounds):
        for name, (sign, verify) in candidates.items():
            rates.setdefault((name, "sign"), []).append(_rate(sign, arguments.seconds))
            rates.setdefault((name, "verify"), []).append(_rate(verify, arguments.seconds))
    for name in candidates:
        cells = []
        for operation in ("sign", "verify"):
            measured = rates[(name, operation)]
            cells.append(
                f"{operation}/s best {max(measured):6.0f} median {statistics.median(measured):6.0f}"
            )
        print(f"{name:45} " + "   ".join(cells))


if __name__ == "__main__":
    main()
