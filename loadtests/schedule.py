"""The paced phase's schedule (no locust import: safe to use anywhere, tested by itself)."""

from __future__ import annotations

__all__ = ["FixedRateSchedule"]


class FixedRateSchedule:
    """One fixed-rate schedule shared by every paced user: request *k* is due at
    ``t0 + k / rate`` (``t0`` the first turn's taking), whichever user is free to send it.

    Each user pacing itself (locust's ``constant_throughput``: wait out the rest of one's own
    interval) is not a fixed rate: the users' phases drift together behind any slow answer and
    stay together, so that at 250/s sixteen users sent their requests in bursts of up to
    sixteen at once, every 64 ms — and the latency measured was the burst's queue (p50 ~27 ms
    with the gateway at 45 % of a core). Here the turns are the schedule's: a user takes the
    next one, sleeps until it is due, sends. A turn taken when it is already due (every user
    was still waiting for an answer when it came) is sent at once, late, and its latency is
    counted from when it was due, so a gateway that falls behind is not flattered.
    """

    def __init__(self, *, rate: float) -> None:
        if not rate > 0:
            raise ValueError(f"the rate must be positive, not {rate!r}")
        self.interval = 1.0 / rate
        self._next_due: float | None = None

    def take(self, *, now: float) -> float:
        """The next turn's due time, on the clock ``now`` is read from."""
        due = now if self._next_due is None else self._next_due
        self._next_due = due + self.interval
        return due
