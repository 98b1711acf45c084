"""What a lookup (and a verification) cannot avoid: its primitives, measured one by one.

``python -m loadtests.floor --keys-dir K --data-dir D`` runs in its own process, on the same
machine and with the same keys, policies and stores as the gateway ``make bench`` started, and
prints one JSON object: CPU microseconds per call of each primitive, as the median of several
rounds (CPU time, not wall time, so other work on the machine does not count):

- ``verify``: the raw signature check of a request token with its department key's algorithm
  (ES256: the DER conversion and the ECDSA verification; EdDSA: the Ed25519 one), averaged
  over the benchmark's lookup mix (``loadtests.tokens.SCENARIOS``);
- ``sign``: the raw ES256 signature of an answer-sized payload with the gateway's key (and
  the DER-to-raw conversion of the signature);
- ``sm2_verify`` and ``sm2_sign``: the same two for the SM2 phase — an SM2 department's
  request checked with its key, an answer-sized input signed with SM2 (libcrypto);
- ``guard``: one call of the in-process guard (replay, rate limit, case, one cache probe), as
  the request path awaits it;
- ``source``: one read through the catalogued source adapter of each resource of the mix
  (the subjects cycling over the demo population);
- ``licence_read`` and ``seal_verify``: a verification's record read (the licence store's
  one-statement read of the record and the registry's revision) and the raw check of its
  sealed licence's signature, averaged over the licences the benchmark verifies (their
  seals' algorithms in the same mix);
- ``audit``: the amortised durable audit write — entries appended by ``--concurrency``
  requests at once through :class:`~gateway.audit.GroupCommitAuditLog` (group commit, WAL,
  ``synchronous=FULL``) into a copy of the gateway's database, CPU of the whole process
  (request side and writer thread) per entry;
- ``fsync_ms``: not CPU but the disk's own latency under the gateway's data directory —
  ``fsync`` after a 4 KiB append, p50, p99 and max over :data:`FSYNC_COUNT` — since every
  durable answer waits for one: the paced phase's p99 cannot be below this disk's tail.

The floor of a lookup is then bare endpoint + verify + guard + source + audit + sign, and a
verification's the same with the licence read and the seal check instead of the source read;
``make bench`` adds the bare endpoint's CPU per request from its own phase 1 and prints the
ratio of each floor to the measured CPU per request (``floor ratio``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import itertools
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from loadtests.timing import median_cpu_us

__all__ = ["lookup_floor", "measure", "verification_floor"]

ROUNDS = 5


def _b64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _median_us(work: Callable[[], object], count: int) -> float:
    return median_cpu_us(work, count, rounds=ROUNDS)


async def _amedian_us(work: Callable[[], Awaitable[object]], count: int) -> float:
    rounds = []
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(count):
            await work()
        rounds.append((time.process_time() - started) / count * 1e6)
    return statistics.median(rounds)


def _raw_verifier(key: Any, alg: str, signing_input: bytes, signature: bytes) -> Callable[[], None]:
    """The one call a verifier cannot skip for ``alg`` (and the signature's conversion)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from gateway.core.sm2 import SM2PrivateKey

    if isinstance(key, SM2PrivateKey):
        public: Any = key.public_key  # an attribute: the pair is parsed once
    else:
        public = key.public_key() if hasattr(key, "public_key") else key
    if alg == "ES256":
        algorithm = ec.ECDSA(hashes.SHA256())

        def verify() -> None:
            r = int.from_bytes(signature[:32], "big")
            s = int.from_bytes(signature[32:], "big")
            public.verify(encode_dss_signature(r, s), signing_input, algorithm)

        return verify
    if alg == "EdDSA":
        return lambda: public.verify(signature, signing_input)
    if alg == "SM2":  # the gateway's own check: range of r and s, then libcrypto
        from gateway.core.sm2 import SM2PublicKey

        assert isinstance(public, SM2PublicKey)

        def verify_sm2() -> None:
            if not public.verify(signature, signing_input):
                raise ValueError("the SM2 signature does not verify")

        return verify_sm2
    raise ValueError(f"no raw verifier for {alg}")


def _verify_us(keys_dir: Path, audience: str) -> tuple[float, dict[str, str]]:
    """Raw request-signature verification, averaged over the lookup mix; the algorithms."""
    from gateway.core.keyring import load_private_jwk
    from loadtests.tokens import SCENARIOS, sign_pool

    tokens = dict(sign_pool(keys_dir=keys_dir, size=len(SCENARIOS), audience=audience))
    figures, algs = [], {}
    for s in SCENARIOS:
        jwk = load_private_jwk(keys_dir / "departments" / f"{s.department}.private.jwk.json")
        alg = jwk.algorithm_name
        algs[s.department] = alg
        head, payload, sig = tokens[s.department].split(".")
        verify = _raw_verifier(jwk.key, alg, f"{head}.{payload}".encode(), _b64(sig))
        verify()  # a wrong primitive would fail here, not measure nothing
        figures.append(_median_us(verify, 2000))
    return statistics.fmean(figures), algs


def _sign_us(keys_dir: Path) -> float:
    """Raw ES256 signature of an answer-sized signing input with the gateway's key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    from gateway.registry.keystore import ensure_gateway_key

    key = ensure_gateway_key(keys_dir)
    signing_input = b"e" * 1100  # a lookup answer's header.payload is about this long
    algorithm = ec.ECDSA(hashes.SHA256())

    def sign() -> bytes:
        r, s = decode_dss_signature(key.sign(signing_input, algorithm))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return _median_us(sign, 2000)


def _sm2_us(keys_dir: Path, audience: str) -> tuple[float, float]:
    """Raw SM2 verification of an SM2 department's request and raw SM2 signature of an
    answer-sized signing input (the SM2 phase's primitives)."""
    from gateway.core.keyring import load_private_jwk
    from gateway.core.sm2 import SM2PrivateKey
    from loadtests.tokens import SM2_SCENARIOS, sign_pool

    (scenario,) = SM2_SCENARIOS
    key = load_private_jwk(keys_dir / "departments" / f"{scenario.department}.private.jwk.json")
    assert isinstance(key.key, SM2PrivateKey)
    ((_, token),) = sign_pool(keys_dir=keys_dir, size=1, audience=audience, scenarios=SM2_SCENARIOS)
    head, payload, sig = token.split(".")
    verify = _raw_verifier(key.key, "SM2", f"{head}.{payload}".encode(), _b64(sig))
    verify()
    private = key.key
    signing_input = b"e" * 1100
    return _median_us(verify, 300), _median_us(lambda: private.sign(signing_input), 300)


def _guard_us() -> float:
    from gateway.cache.memory import InProcessGuard
    from gateway.cache.protocol import CacheProbe

    guard = InProcessGuard(rate_limit=10**9, window_seconds=60)
    probe = [CacheProbe(resource="enterprise-registration", subject="s" * 64)]

    async def admit() -> object:
        return await guard.admit(
            department="service-centre",
            jti=uuid.uuid4().hex,
            replay_ttl=320.0,
            now=time.time(),
            case="BJ-2026-00001",
            probes=probe,
            nonce=uuid.uuid4().hex,
        )

    async def run() -> float:
        await admit()
        return await _amedian_us(admit, 5000)

    return asyncio.run(run())


def _source_us(data_dir: Path, policies_dir: Path) -> float:
    """One read through each resource's adapter of the mix, averaged."""
    from adapters import create_adapter
    from gateway.core.policy import load_policy_set
    from gateway.core.sources import AdapterContext
    from gateway.demo.population import companies, people
    from loadtests.tokens import SCENARIOS

    policy = load_policy_set(policies_dir)
    context = AdapterContext(
        data_dir=data_dir,
        database=None,
        gateway_id="yiwang-gateway",
        sign=lambda claims, typ: "",
        environ=dict(os.environ),
    )
    subjects = {
        "uscc": [c.uscc for c in companies()],
        "resident-id": [p.id_number for p in people()],
    }

    async def run() -> float:
        figures = []
        for resource in sorted({s.resource for s in SCENARIOS}):
            kind = next(s.subject_type for s in SCENARIOS if s.resource == resource)
            adapter = create_adapter(policy.resources[resource], context=context)
            cycle = itertools.cycle(subjects[kind])
            try:
                if await adapter.fetch(next(cycle)) is None:
                    raise RuntimeError(f"{resource}: the demo subject is not in the source")

                async def fetch(adapter: Any = adapter, cycle: Any = cycle) -> object:
                    return await adapter.fetch(next(cycle))

                figures.append(await _amedian_us(fetch, 1000))
            finally:
                await adapter.close()
        return statistics.fmean(figures)

    return asyncio.run(run())


def _licence_us(database: Path) -> tuple[float, float]:
    """A verification's record read (by identifier) and its seal's raw signature check."""
    import sqlalchemy as sa

    from gateway.core.algorithms import public_key_from_jwk
    from gateway.licensing.store import LicenceStore
    from gateway.storage.database import create_database_engine

    engine = create_database_engine(f"sqlite:///{database}")
    try:
        store = LicenceStore(engine)
        with engine.connect() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    sa.text(
                        "SELECT licence_id FROM licences WHERE status = 'valid' "
                        "AND superseded_by IS NULL ORDER BY licence_id"
                    )
                )
            ]
            seal_keys = {
                kid: (alg, jwk)
                for kid, alg, jwk in conn.execute(sa.text("SELECT kid, alg, jwk FROM seals"))
            }
        if not ids:
            return float("nan"), float("nan")
        cycle = itertools.cycle(ids)
        # The read a verification makes: the registry's revision and the record, one statement.
        read = _median_us(lambda: store.get_with_revision(next(cycle)), 1000)
        # The raw seal check of every licence the benchmark verifies (round-robin over these
        # same licences), averaged: a third of the demo's are sealed with SM2.
        by_kid: dict[str, float] = {}
        checks = []
        for licence_id in ids:
            record = store.get(licence_id)
            assert record is not None
            head, payload, sig = record.sealed.split(".")
            kid = json.loads(_b64(head))["kid"]
            if kid not in by_kid:
                alg, jwk = seal_keys[kid]
                key = public_key_from_jwk(json.loads(jwk), alg=alg)
                verify = _raw_verifier(key, alg, f"{head}.{payload}".encode(), _b64(sig))
                verify()
                by_kid[kid] = _median_us(verify, 500)
            checks.append(by_kid[kid])
        return read, statistics.fmean(checks)
    finally:
        engine.dispose()


def _audit_us(database: Path, concurrency: int, batch: int, count: int) -> float:
    """Process CPU per durable entry, appended ``concurrency`` at once with group commit."""
    from gateway.audit import AuditEntry, GroupCommitAuditLog, Outcome
    from gateway.storage import migrations
    from gateway.storage.database import create_database_engine

    engine = create_database_engine(f"sqlite:///{database}")
    migrations.upgrade(engine)
    log = GroupCommitAuditLog(engine=engine, max_batch=batch, timeout=30)
    log.start()

    def entry(i: int) -> AuditEntry:
        return AuditEntry(
            at=dt.datetime.now(dt.UTC),
            event="lookup:record:released",
            decision=Outcome.ALLOWED,
            department="service-centre",
            operator="clerk-bench",
            service_item="000201002000",
            case_number="BJ-2026-00001",
            reason="企业变更登记：核验营业执照信息，申请人免于提交",
            resource="enterprise-registration",
            subject_hmac=f"{i:064x}",
            fields=("name", "status"),
            grant_id="g-centre-enterprise",
            policy_version="v",
            request_hash=uuid.uuid4().hex * 2,
            response_hash=uuid.uuid4().hex * 2,
            latency_ms=1.5,
        )

    async def run(n: int) -> None:
        numbers = iter(range(n))

        async def worker() -> None:
            for i in numbers:
                await log.append(entry(i))

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    try:
        asyncio.run(run(min(count, 500)))  # warm-up
        rounds = []
        for _ in range(3):
            started = time.process_time()
            asyncio.run(run(count))
            rounds.append((time.process_time() - started) / count * 1e6)
        return statistics.median(rounds)
    finally:
        log.stop()
        engine.dispose()


#: Appends timed by :func:`_fsync_ms` (about a second on a disk with a 1 ms fsync).
FSYNC_COUNT = 1000


def _fsync_ms(directory: Path, count: int = FSYNC_COUNT) -> dict[str, float]:
    """Wall milliseconds of ``fsync`` after a 4 KiB append to a file in ``directory``."""
    fd, name = tempfile.mkstemp(prefix="yiwang-fsync-", dir=directory)
    spent: list[float] = []
    try:
        block = os.urandom(4096)
        for _ in range(count):
            os.write(fd, block)
            started = time.perf_counter()
            os.fsync(fd)
            spent.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        os.unlink(name)
    spent.sort()
    return {
        "p50": spent[len(spent) // 2],
        "p99": spent[min(len(spent) - 1, len(spent) * 99 // 100)],
        "max": spent[-1],
    }


def _copy_database(source: Path, target: Path) -> None:
    """A consistent copy of the gateway's SQLite database (the online backup API)."""
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def measure(
    *,
    keys_dir: Path,
    data_dir: Path,
    policies_dir: Path,
    audience: str = "yiwang-gateway",
    concurrency: int = 16,
    batch: int = 512,
    audit_count: int = 3000,
) -> dict[str, Any]:
    """Every primitive's CPU µs per call (see the module's docstring)."""
    verify, algs = _verify_us(keys_dir, audience)
    database = data_dir / "gateway.sqlite3"
    out: dict[str, Any] = {
        "verify": verify,
        "algorithms": algs,
        "sign": _sign_us(keys_dir),
        **dict(zip(("sm2_verify", "sm2_sign"), _sm2_us(keys_dir, audience), strict=True)),
        "guard": _guard_us(),
        "source": _source_us(data_dir, policies_dir),
    }
    out["licence_read"], out["seal_verify"] = _licence_us(database)
    scratch = Path(tempfile.mkdtemp(prefix="yiwang-floor-"))
    try:
        copy = scratch / "gateway.sqlite3"
        _copy_database(database, copy)
        out["audit"] = _audit_us(copy, concurrency, batch, audit_count)
        out["fsync_ms"] = _fsync_ms(data_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def lookup_floor(primitives: dict[str, Any], bare_us: float) -> float:
    """The CPU a lookup cannot avoid, in µs."""
    parts = ("verify", "guard", "source", "audit", "sign")
    return bare_us + sum(float(primitives[k]) for k in parts)


def verification_floor(primitives: dict[str, Any], bare_us: float) -> float:
    """The CPU a verification by identifier cannot avoid, in µs."""
    parts = ("verify", "guard", "licence_read", "seal_verify", "audit", "sign")
    return bare_us + sum(float(primitives[k]) for k in parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys-dir", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--policies-dir", type=Path, default=Path("policies"))
    parser.add_argument("--audience", default="yiwang-gateway")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, default=512)
    args = parser.parse_args(argv)
    figures = measure(
        keys_dir=args.keys_dir,
        data_dir=args.data_dir,
        policies_dir=args.policies_dir,
        audience=args.audience,
        concurrency=args.concurrency,
        batch=args.batch,
    )
    json.dump(figures, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
