"""The per-process task that notices policy changes and swaps the set in force."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from gateway.core.policy import POLICY_FILES, PolicySet, policy_set_from_texts, read_policy_texts
from gateway.errors import Error, PolicySetInvalid
from gateway.policy.store import PolicyStore

__all__ = ["PolicyWatcher"]

log = logging.getLogger(__name__)

#: How often files and store are looked at. Changes take effect within two of these.
POLL_SECONDS = 0.5
#: How long changed files must stay unchanged before they are read: an editor or a script
#: that rewrites a file in place truncates it first, and a set read in between (a grants file
#: cut in half is still valid TOML) would be put in force for a poll.
SETTLE_SECONDS = 0.1


def _signature(directory: Path) -> tuple[tuple[int, int], ...]:
    out = []
    for name in POLICY_FILES:
        try:
            st = (directory / name).stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((0, -1))
    return tuple(out)


class PolicyWatcher:
    """Publishes valid changes of the local files; applies what the store holds.

    ``on_change(old, new)`` runs after each swap (it audits ``policy:set:reloaded``);
    ``on_refused(problems)`` runs when a changed file set does not validate.
    """

    def __init__(
        self,
        *,
        directory: Path,
        store: PolicyStore,
        apply: Callable[[PolicySet], None],
        current: Callable[[], PolicySet],
        on_change: Callable[[PolicySet, PolicySet], Awaitable[None]],
        on_refused: Callable[[list[str]], Awaitable[None]],
        interval: float = POLL_SECONDS,
        settle: float = SETTLE_SECONDS,
    ) -> None:
        self._dir = directory
        self._store = store
        self._apply = apply
        self._current = current
        self._on_change = on_change
        self._on_refused = on_refused
        self._interval = interval
        self._settle = settle
        self._signature = _signature(directory)
        self._task: asyncio.Task[None] | None = None
        #: Problems of the last refused file set (shown by /readyz), cleared by a good one.
        self.last_refusal: list[str] = []
        self.last_checked: dt.datetime | None = None

    async def start(self) -> None:
        """Join the store: adopt its set, or publish ours if it has none; then poll."""
        if await self._store.version() is None:
            await self._publish(self._current())
        await self.tick(files=False)
        self._task = asyncio.create_task(self._loop(), name="policy-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.tick()
            except Error as exc:  # the store is down: keep the set in force, try again
                log.warning("policy watcher: %s", exc)
            except Exception:  # never end the loop: the set in force stays, the next tick retries
                log.exception("policy watcher: unexpected failure; trying again")

    async def _publish(self, policy: PolicySet) -> None:
        await self._store.publish(policy.version, read_policy_texts(self._dir))

    async def tick(self, *, files: bool = True) -> None:
        """One look at the files (publishing a valid change) and at the store (applying)."""
        self.last_checked = dt.datetime.now(dt.UTC)
        if files:
            await self._look_at_files()
        published = await self._store.version()
        if published is None or published == self._current().version:
            return
        snapshot = await self._store.fetch()
        if snapshot is None:
            return
        try:
            # Only validated sets are published; validating again costs little and means
            # a bad store entry can never replace a good set.
            candidate = policy_set_from_texts(snapshot.texts)
        except PolicySetInvalid as exc:
            log.error("published policy set %s is invalid: %s", snapshot.version, exc)
            return
        old = self._current()
        self._apply(candidate)
        log.info("policy set %s now in force (was %s)", candidate.version, old.version)
        await self._on_change(old, candidate)

    async def _look_at_files(self) -> None:
        """Take the files once they are whole: unchanged over the settle time, and unchanged
        while they were read; otherwise the next tick looks again."""
        signature = _signature(self._dir)
        if signature == self._signature:
            return
        await asyncio.sleep(self._settle)
        if _signature(self._dir) != signature:
            return  # still being written
        try:
            texts = read_policy_texts(self._dir)
        except PolicySetInvalid as exc:
            texts, unreadable = None, exc
        if _signature(self._dir) != signature:
            return  # written again while being read
        self._signature = signature
        if texts is None:
            await self._refuse(unreadable)
        else:
            await self._files_changed(texts)

    async def _refuse(self, exc: PolicySetInvalid) -> None:
        self.last_refusal = exc.problems
        log.error("changed policy files refused; the set in force stays: %s", exc)
        await self._on_refused(exc.problems)

    async def _files_changed(self, texts: dict[str, str]) -> None:
        try:
            candidate = policy_set_from_texts(texts)
        except PolicySetInvalid as exc:
            self.last_refusal = exc.problems
            log.error("changed policy files refused; the set in force stays: %s", exc)
            await self._on_refused(exc.problems)
            return
        self.last_refusal = []
        if candidate.version != self._current().version:
            await self._store.publish(candidate.version, texts)
