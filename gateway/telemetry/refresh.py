"""The gauges read from the stores: tree size, latest checkpoint, key and seal expiry,
circuit breakers — refreshed every few seconds by each process, off the request path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.telemetry.metrics import GatewayMetrics

__all__ = ["CIRCUIT_STATES", "MetricsRefresher", "Readings"]

log = logging.getLogger(__name__)

#: A circuit breaker's state as the gauge's value.
CIRCUIT_STATES = {"closed": 0.0, "half-open": 1.0, "open": 2.0}


@dataclass(frozen=True, slots=True, kw_only=True)
class Readings:
    """What the stores say now (epoch seconds for times)."""

    tree_size: int
    checkpoint_size: int | None = None
    checkpoint_at: float | None = None
    #: (owner, kid) → when the key stops being valid.
    key_expiry: Mapping[tuple[str, str], float] = field(default_factory=dict)
    #: seal id → when its validity ends.
    seal_expiry: Mapping[str, float] = field(default_factory=dict)
    #: resource → circuit state (``closed``, ``half-open``, ``open``) of this process.
    circuits: Sequence[tuple[str, str]] = ()


class MetricsRefresher:
    """Sets the stores' gauges from ``read`` (synchronous, run in a thread) every
    ``interval`` seconds until cancelled; a store that cannot be read leaves the last values
    (their age shows in the checkpoint's timestamp)."""

    def __init__(
        self, *, metrics: GatewayMetrics, read: Callable[[], Readings], interval: float
    ) -> None:
        self._metrics = metrics
        self._read = read
        self._interval = interval

    def apply(self, readings: Readings) -> None:
        m = self._metrics
        m.tree_size.set(readings.tree_size)
        if readings.checkpoint_size is not None and readings.checkpoint_at is not None:
            m.checkpoint_size.set(readings.checkpoint_size)
            m.checkpoint_time.set(readings.checkpoint_at)
        m.set_expiries(m.key_expiry, [(k, v) for k, v in readings.key_expiry.items()])
        m.set_expiries(m.seal_expiry, [((k,), v) for k, v in readings.seal_expiry.items()])
        for resource, state in readings.circuits:
            m.circuit.labels(resource).set(CIRCUIT_STATES[state])

    def refresh_now(self) -> None:
        """Read and apply once, on this thread (a command, a test)."""
        self.apply(self._read())

    async def refresh(self) -> None:
        """Read and apply once, the reading off the event loop."""
        self.apply(await asyncio.to_thread(self._read))

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # a store down: keep the last values, try again
                log.warning("metrics could not read the stores now: %s", exc)
            await asyncio.sleep(self._interval)
