"""The running gateway's parts, built once at start and closed at stop.

:meth:`GatewayRuntime.open` parses keys and policies once, opens the database and the cache,
starts the audit writer and builds one adapter per resource; :meth:`start` (inside the event
loop) loads closed cases into the guard and starts the policy watcher. Nothing on the request
path parses a key or a policy file again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from adapters import create_adapter
from adapters.http import CircuitBreaker
from gateway.accounts import AccountService
from gateway.app.health import Readiness
from gateway.audit import AuditEntry, AuditLog, GroupCommitAuditLog, Outcome, SubjectHasher
from gateway.audit.leaves import LeafReader
from gateway.audit.promises import durable_state
from gateway.audit.transparency import Checkpoint, TransparencyLog
from gateway.audit.tree import tree_size
from gateway.cache import RequestGuard
from gateway.cache.client import RedisClient
from gateway.cache.memory import InProcessGuard
from gateway.cache.protocol import DurableState, district_day
from gateway.cache.redis import RedisGuard
from gateway.cache.redis import connect as connect_redis
from gateway.console.services import ConsoleServices
from gateway.console.settings import console_session_policy
from gateway.core.keyring import GatewayKeyStatus, GatewaySigner, KeyRing
from gateway.core.policy import DISTRICT_TZ, PolicySet, load_policy_set
from gateway.core.protocol import AuditEvent
from gateway.core.sources import AdapterContext, SourceAdapter
from gateway.core.tokens import RequestTokenVerifier
from gateway.errors import ConfigurationError
from gateway.exchange import SignedExchanges
from gateway.http.signed import BodyLimits
from gateway.licensing.service import LicensingService
from gateway.licensing.store import LicenceStore
from gateway.lookups import CaseService, LookupService, ManifestService, ResourceService
from gateway.oversight.integrity import IntegrityService
from gateway.oversight.service import OfficerService
from gateway.policy import (
    InProcessPolicyStore,
    PolicyHolder,
    PolicyStore,
    PolicyWatcher,
    RedisPolicyStore,
)
from gateway.registry import keystore
from gateway.registry.gateway_keys import load_gateway_keys
from gateway.registry.keys import KeyAdministration
from gateway.registry.operators import OperatorTokens
from gateway.registry.store import key_expiries, load_keyring
from gateway.reporting.service import ReportService
from gateway.settings import Settings
from gateway.storage.database import create_database_engine
from gateway.storage.readiness import DiskReserve, ReadinessProbe
from gateway.telemetry.metrics import GatewayMetrics
from gateway.telemetry.refresh import MetricsRefresher, Readings
from gateway.uploads.service import UploadService

__all__ = ["AdapterPool", "GatewayRuntime", "gateway_signer", "sign_checkpoint_now"]

log = logging.getLogger(__name__)


class AdapterPool:
    """One adapter per resource of the set in force; a reloaded set reuses the adapters of
    resources whose source did not change and builds the rest.

    The mappings of the last two policy versions are kept, so a request that started under
    the previous set still finds its adapters; an adapter no kept version uses is closed after
    a grace period (longer than any source deadline) that lets its last fetches finish.
    """

    KEEP_VERSIONS = 2
    CLOSE_AFTER_SECONDS = 60.0

    def __init__(self, *, context: AdapterContext) -> None:
        self._context = context
        self._built: dict[tuple[str, str], SourceAdapter] = {}
        self._by_version: OrderedDict[str, dict[str, SourceAdapter]] = OrderedDict()
        self._retiring: dict[asyncio.Task[None], SourceAdapter] = {}

    def __call__(self, policy: PolicySet) -> Mapping[str, SourceAdapter]:
        """The adapters for ``policy`` (cached per policy version)."""
        mapping = self._by_version.get(policy.version)
        if mapping is not None:
            return mapping
        mapping = {}
        for rid, resource in policy.resources.items():
            # The whole definition, fields included: adapters check values against the field
            # types they were built with, so a changed field needs a new adapter.
            key = (rid, msgspec.json.encode(resource, order="sorted").decode())
            if key not in self._built:
                self._built[key] = create_adapter(resource, context=self._context)
            mapping[rid] = self._built[key]
        self._by_version[policy.version] = mapping
        while len(self._by_version) > self.KEEP_VERSIONS:
            self._by_version.popitem(last=False)
            self._retire_unused()
        return mapping

    def _retire_unused(self) -> None:
        in_use = {id(a) for m in self._by_version.values() for a in m.values()}
        for key, adapter in list(self._built.items()):
            if id(adapter) not in in_use:
                del self._built[key]
                try:
                    task = asyncio.get_running_loop().create_task(self._close_later(adapter))
                except RuntimeError:  # no loop (start-up, tests): nothing can be in flight
                    continue
                self._retiring[task] = adapter
                task.add_done_callback(lambda t: self._retiring.pop(t, None))

    async def _close_later(self, adapter: SourceAdapter) -> None:
        await asyncio.sleep(self.CLOSE_AFTER_SECONDS)
        await adapter.close()

    async def close(self) -> None:
        for task, adapter in list(self._retiring.items()):
            task.cancel()
            await adapter.close()
        for adapter in self._built.values():
            await adapter.close()


def _licence_invalidator(
    guard: RequestGuard, policy: PolicyHolder
) -> Callable[[str], Awaitable[None]]:
    """Drop cached records of every resource that shares licences of one type."""
    invalidate = _invalidator(guard, policy)

    async def licences_changed(type_code: str) -> None:
        for rid, resource in policy.current.resources.items():
            source = resource.source
            if source.get("adapter") == "licence" and source.get("type_code") == type_code:
                await invalidate(rid)

    return licences_changed


def _invalidator(guard: RequestGuard, policy: PolicyHolder) -> Callable[[str], Awaitable[None]]:
    """Drop every cached record of a resource, for every department that may have one."""

    async def invalidate(resource_id: str) -> None:
        await guard.invalidate(resource=resource_id, departments=list(policy.current.departments))

    return invalidate


def _applier(adapters: AdapterPool, policy: PolicyHolder) -> Callable[[PolicySet], None]:
    def apply(new: PolicySet) -> None:
        adapters(new)  # adapters first, so no request sees the set without them
        policy.current = new

    return apply


def _reload_recorder(
    audit: GroupCommitAuditLog,
) -> Callable[[PolicySet, PolicySet], Awaitable[None]]:
    async def changed(old: PolicySet, new: PolicySet) -> None:
        await audit.append(
            AuditEntry(
                at=dt.datetime.now(dt.UTC),
                event=AuditEvent.POLICY_RELOADED,
                decision=Outcome.ALLOWED,
                policy_version=new.version,
                detail=f"replaced {old.version}",
            )
        )

    return changed


def _refusal_recorder(
    audit: GroupCommitAuditLog, policy: PolicyHolder
) -> Callable[[list[str]], Awaitable[None]]:
    async def refused(problems: list[str]) -> None:
        await audit.append(
            AuditEntry(
                at=dt.datetime.now(dt.UTC),
                event=AuditEvent.POLICY_REFUSED,
                decision=Outcome.REFUSED,
                policy_version=policy.current.version,
                reason_code="invalid-policy-set",
                detail="; ".join(problems)[:2000],
            )
        )

    return refused


def _metric_readings(
    engine: sa.Engine,
    transparency: TransparencyLog,
    store: LicenceStore,
    adapters: AdapterPool,
    policy: PolicyHolder,
) -> Callable[[], Readings]:
    """What the stores' gauges read (:class:`MetricsRefresher`), each from its own service."""

    def read() -> Readings:
        with engine.connect() as conn:
            size = tree_size(conn)
        latest = transparency.latest()
        seals = {
            # valid_until is a district date, inclusive: the seal expires at the next midnight.
            seal.seal_id: dt.datetime.combine(
                seal.valid_until + dt.timedelta(days=1), dt.time(), DISTRICT_TZ
            ).timestamp()
            for seal in store.seals()
        }
        expiries = {k: at.timestamp() for k, at in key_expiries(engine).items()}
        for key in load_gateway_keys(engine):
            if key.status is not GatewayKeyStatus.RETIRED and key.retire_by is not None:
                expiries["gateway", key.kid] = key.retire_by.timestamp()
        circuits = [
            (rid, breaker.state)
            for rid, adapter in adapters(policy.current).items()
            if isinstance(breaker := getattr(adapter, "breaker", None), CircuitBreaker)
        ]
        return Readings(
            tree_size=size,
            checkpoint_size=None if latest is None else latest.size,
            checkpoint_at=None if latest is None else latest.at.timestamp(),
            key_expiry=expiries,
            seal_expiry=seals,
            circuits=circuits,
        )

    return read


def gateway_signer(settings: Settings) -> GatewaySigner:
    """The gateway's signer as its settings make it: the key file as a key set of one, the
    answer algorithm (``GATEWAY_ANSWER_ALGORITHM``) signing by default. The key set in the
    database is installed by :class:`KeyAdministration` (at start, then whenever it changes)."""
    return GatewaySigner(
        private_key=keystore.ensure_gateway_key(Path(settings.keys_dir)),
        issuer=settings.gateway_id,
        answer_algorithm=settings.keys.answer_algorithm,
        answers_follow_department=settings.keys.answers_follow_department_key,
    )


def sign_checkpoint_now(
    settings: Settings, engine: sa.Engine, audit: AuditLog, now: dt.datetime
) -> Checkpoint | None:
    """What a running gateway's checkpoint loop does at its next tick, done once — for a
    command that wrote entries while no gateway may be running (``gateway demo --history``):
    the key set read from the database as a starting gateway reads it, the tree's checkpoint
    signed with the active key of the answer algorithm. The new checkpoint, or None if one
    already covers the tree. ConfigurationError if this host lacks the active key's private
    half (a running gateway would sign nothing either)."""
    signer = gateway_signer(settings)
    KeyAdministration(
        engine=engine,
        verifier=RequestTokenVerifier(keyring=KeyRing([]), audience=settings.gateway_id),
        audit=audit,
        signer=signer,
        keys_dir=Path(settings.keys_dir),
        gateway_id=settings.gateway_id,
        key_lifetime=dt.timedelta(days=settings.keys.signing_key_lifetime_days),
    ).load_gateway_keys_now()
    if not signer.can_sign:
        raise ConfigurationError(
            [
                f"the active {signer.answer_algorithm} gateway key has no private half in "
                f"{Path(settings.keys_dir) / 'gateway'} on this host: no checkpoint signed"
            ]
        )
    transparency = TransparencyLog(engine=engine, signer=signer, gateway_id=settings.gateway_id)
    return transparency.make_checkpoint(now)


@dataclass
class GatewayRuntime:
    """Everything a gateway process holds while it serves."""

    settings: Settings
    engine: sa.Engine
    audit: GroupCommitAuditLog
    guard: RequestGuard
    signer: GatewaySigner
    policy: PolicyHolder
    adapters: AdapterPool
    exchanges: SignedExchanges
    lookups: LookupService
    manifests: ManifestService
    cases: CaseService
    resources: ResourceService
    uploads: UploadService
    licensing: LicensingService
    transparency: TransparencyLog
    leaves: LeafReader
    keys: KeyAdministration
    policy_store: PolicyStore
    operator_tokens: OperatorTokens
    officers: OfficerService  # security officers' tools, citizens' access history
    integrity: IntegrityService  # the officers' view of the log's integrity
    readiness: Readiness  # /readyz: can this process serve now
    accounts: AccountService  # web console accounts and sessions
    console: ConsoleServices  # what the console's pages work with
    limits: BodyLimits  # how large a signed request may be
    watcher: PolicyWatcher
    metrics: GatewayMetrics  # this process's Prometheus metrics
    metrics_refresher: MetricsRefresher  # the gauges read from the stores
    _checkpointer: asyncio.Task[None] | None = field(default=None, repr=False)
    _key_watcher: asyncio.Task[None] | None = field(default=None, repr=False)
    _metrics_task: asyncio.Task[None] | None = field(default=None, repr=False)
    _redis: RedisClient | None = field(default=None, repr=False)

    @classmethod
    def open(cls, settings: Settings) -> GatewayRuntime:
        """Build the runtime from validated settings. The database must be initialised."""
        keys_dir = Path(settings.keys_dir)
        # Each service is given the settings of its concern only.
        database, cache, tokens = settings.database, settings.cache, settings.tokens
        audit_settings, lookups = settings.audit, settings.lookups
        policy = PolicyHolder(load_policy_set(Path(settings.policies_dir)))
        engine = create_database_engine(
            database.url,
            busy_timeout_ms=database.busy_timeout_ms,
            idle_in_transaction_ms=database.idle_in_transaction_ms,
        )
        try:
            keyring = load_keyring(engine)
        except SQLAlchemyError as exc:
            # A store that is down at start does not stop the gateway (a restarted worker
            # must come up while the database is down): with no keys every token is refused,
            # /readyz says not ready, and the key watcher loads the ring once it is back.
            log.error("the key registry is not readable at start: %s", exc)
            keyring = KeyRing([])
        key_settings = settings.keys
        signer = gateway_signer(settings)
        hmac_key = (
            bytes.fromhex(audit_settings.hmac_key)
            if audit_settings.hmac_key
            else keystore.ensure_audit_hmac_key(keys_dir)
        )
        guard: RequestGuard
        store: PolicyStore
        redis_client = None

        async def warm(department: str, now: float) -> DurableState:
            # The guard's copy of what the durable store knows of a department, loaded when
            # the guard finds it missing (a new process, a Redis restarted empty).
            grants = [
                g.id
                for g in policy.current.grants.values()
                if g.consumer == department and g.max_subjects_per_day is not None
            ]
            return await asyncio.to_thread(
                durable_state,
                engine,
                department=department,
                grant_ids=grants,
                day=district_day(now),
            )

        if cache.redis_url:
            redis_client = connect_redis(cache.redis_url)
            guard = RedisGuard(
                client=redis_client,
                rate_limit=cache.rate_limit,
                window_seconds=cache.rate_window_seconds,
                prefix=cache.key_prefix,
                warm=warm,
            )
            store = RedisPolicyStore(client=redis_client, prefix=cache.key_prefix)
        else:
            guard = InProcessGuard(
                rate_limit=cache.rate_limit,
                window_seconds=cache.rate_window_seconds,
                warm=warm,
            )
            store = InProcessPolicyStore()
        metrics = GatewayMetrics()
        audit = GroupCommitAuditLog(
            engine=engine,
            max_batch=audit_settings.batch_max,
            linger=audit_settings.linger_seconds,
            timeout=audit_settings.timeout_seconds,
            grace=audit_settings.commit_grace_seconds,
            commit_on_loop=True,  # taken up on SQLite only (a server's commits wait on its network)
            reserve=DiskReserve(
                engine=engine, min_free_mb=settings.readiness.min_free_mb, interval=0.01
            ),
            on_commit=metrics.committed,
        )
        adapters = AdapterPool(
            context=AdapterContext(
                data_dir=Path(settings.data_dir),
                database=engine,
                gateway_id=settings.gateway_id,
                sign=lambda claims, typ: signer.sign(claims, typ=typ),
                environ=dict(os.environ),
            )
        )
        adapters(policy.current)  # build them now: a bad source option fails the start
        exchanges = SignedExchanges(
            gateway_id=settings.gateway_id,
            policy=policy,
            verifier=RequestTokenVerifier(
                keyring=keyring,
                audience=settings.gateway_id,
                max_lifetime=tokens.max_lifetime,
                leeway=tokens.leeway,
                max_bytes=tokens.max_bytes,
            ),
            guard=guard,
            audit=audit,
            signer=signer,
            subject_hasher=SubjectHasher(hmac_key, keying=audit_settings.subject_keying),
            answer_lifetime=tokens.answer_lifetime,
        )
        transparency = TransparencyLog(
            engine=engine,
            signer=signer,
            gateway_id=settings.gateway_id,
            interval=settings.audit.checkpoint_seconds,
        )
        watcher = PolicyWatcher(
            directory=Path(settings.policies_dir),
            store=store,
            apply=_applier(adapters, policy),
            current=lambda: policy.current,
            on_change=_reload_recorder(audit),
            on_refused=_refusal_recorder(audit, policy),
        )
        accounts = AccountService(
            engine=engine, audit=audit, sessions=console_session_policy(settings)
        )
        licence_store = LicenceStore(engine)
        licensing = LicensingService(
            exchanges=exchanges,
            store=licence_store,
            on_change=_licence_invalidator(guard, policy),
            status_list_ttl=dt.timedelta(seconds=settings.licensing.status_list_ttl_seconds),
            registry_ttl=dt.timedelta(seconds=settings.licensing.seal_registry_ttl_seconds),
        )
        manifests = ManifestService(
            exchanges=exchanges,
            adapters=adapters,
            source_deadline=lookups.source_deadline_seconds,
        )
        keys = KeyAdministration(
            engine=engine,
            verifier=exchanges.verifier,
            audit=audit,
            signer=signer,
            keys_dir=keys_dir,
            exchanges=exchanges,
            gateway_id=settings.gateway_id,
            jwks_max_age=key_settings.jwks_max_age_seconds,
            key_lifetime=dt.timedelta(days=key_settings.signing_key_lifetime_days),
        )
        try:
            keys.load_gateway_keys_now()
        except SQLAlchemyError as exc:
            # Which key signs is not known: sign nothing and publish nothing (503) rather than
            # sign with a key that may be retired; the key watcher loads the set once it can.
            log.error("the gateway key set is not readable at start: %s", exc)
            signer.use([], {})
        officers = OfficerService(
            engine=engine,
            exchanges=exchanges,
            adapters=adapters,
            alerts=settings.alerts,
            source_deadline=lookups.source_deadline_seconds,
        )
        integrity = IntegrityService(
            engine=engine,
            transparency=transparency,
            gateway_jwks=signer.jwks,
            gateway_id=settings.gateway_id,
        )
        audit.start()
        log.info(
            "gateway ready: %d keys, policy %s, %s",
            len(keyring),
            policy.current.version,
            "in-process caches" if settings.embedded else "redis",
        )
        return cls(
            settings=settings,
            engine=engine,
            audit=audit,
            guard=guard,
            signer=signer,
            policy=policy,
            adapters=adapters,
            exchanges=exchanges,
            lookups=LookupService(
                exchanges=exchanges,
                adapters=adapters,
                batch_limit=lookups.batch_max_queries,
                batch_token_max_bytes=tokens.batch_max_bytes,
                source_deadline=lookups.source_deadline_seconds,
            ),
            manifests=manifests,
            cases=CaseService(exchanges=exchanges, engine=engine),
            resources=ResourceService(exchanges=exchanges, invalidate=_invalidator(guard, policy)),
            uploads=UploadService(
                exchanges=exchanges,
                engine=engine,
                spool_dir=Path(settings.uploads.spool_dir),
                max_concurrent=settings.uploads.max_concurrent,
                # A new version makes every cached record of the resource stale.
                on_new_version=_invalidator(guard, policy),
            ),
            keys=keys,
            transparency=transparency,
            leaves=LeafReader(exchanges=exchanges, transparency=transparency),
            licensing=licensing,
            policy_store=store,
            operator_tokens=OperatorTokens.from_directory(keys_dir / "operators"),
            officers=officers,
            integrity=integrity,
            accounts=accounts,
            readiness=Readiness(
                probe=ReadinessProbe(
                    engine=engine,
                    timeout=settings.readiness.timeout_seconds,
                    min_free_mb=settings.readiness.min_free_mb,
                ),
                guard=guard,
                verifier=exchanges.verifier,
                signer=signer,
                policy=policy,
                watcher=watcher,
            ),
            console=ConsoleServices(
                accounts=accounts,
                licensing=licensing,
                manifests=manifests,
                keys=keys,
                policy=policy,
                officers=officers,
                integrity=integrity,
                reports=ReportService(
                    engine=engine,
                    gateway_id=settings.gateway_id,
                    gateway_jwks=signer.jwks,
                    policy=lambda: policy.current,
                ),
            ),
            limits=BodyLimits(
                body_max_bytes=tokens.body_max_bytes,
                batch_token_max_bytes=tokens.batch_max_bytes,
            ),
            watcher=watcher,
            metrics=metrics,
            metrics_refresher=MetricsRefresher(
                metrics=metrics,
                read=_metric_readings(engine, transparency, licence_store, adapters, policy),
                interval=settings.server.metrics_refresh_seconds,
            ),
            _redis=redis_client,
        )

    async def start(self) -> None:
        """Work that needs the event loop: the policy watcher, checkpoints, the key watcher.

        A store that is down at start does not stop the gateway: lookups answer 503 until it
        is back (fail closed), and the watcher keeps trying.
        """
        # A checkpoint of the audit tree whenever it grew (looked for every
        # GATEWAY_AUDIT_CHECKPOINT_SECONDS): started first and whatever the watcher does, so
        # the log's last entries are always covered within a bounded time (the loop retries
        # on its own while a store is down).
        self._checkpointer = asyncio.get_running_loop().create_task(self.transparency.run())
        self._metrics_task = asyncio.get_running_loop().create_task(self.metrics_refresher.run())
        try:
            await self.watcher.start()
            # Keys revoked by any process stop verifying here within a second.
            self._key_watcher = asyncio.get_running_loop().create_task(self.keys.run())
        except Exception as exc:  # any store failure: serve 503s rather than crash
            log.error("start-up could not reach a store: %s", exc)

    async def close(self) -> None:
        """Stop the watchers, flush the audit log and release connections. Every step is
        bounded: a part that does not close in time is logged and left, so a stopping
        process never hangs on one."""
        for task in (self._checkpointer, self._key_watcher, self._metrics_task):
            if task is not None:
                task.cancel()
        await _bounded(self.watcher.stop(), "the policy watcher")
        self.audit.stop()  # bounded itself: its thread is joined for at most 2 × its timeout
        await _bounded(self.adapters.close(), "the source adapters")
        await _bounded(self.guard.close(), "the cache")
        self.engine.dispose()


async def _bounded(step: Awaitable[None], what: str, seconds: float = 5.0) -> None:
    try:
        async with asyncio.timeout(seconds):
            await step
    except TimeoutError:
        log.error("%s did not close within %.0f s; stopping without it", what, seconds)
