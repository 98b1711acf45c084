"""The paced phase's schedule: one fixed rate for all users, whenever they take their turns."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadtests.schedule import FixedRateSchedule


@given(
    rate=st.floats(min_value=1.0, max_value=10_000.0),
    start=st.floats(min_value=0.0, max_value=1e6),
    # When each take happens, after the one before: early, on time or far behind.
    delays=st.lists(st.floats(min_value=0.0, max_value=0.5), min_size=1, max_size=200),
)
def test_turns_are_one_interval_apart_whenever_they_are_taken(
    rate: float, start: float, delays: list[float]
) -> None:
    schedule = FixedRateSchedule(rate=rate)
    now, dues = start, []
    for delay in delays:
        dues.append(schedule.take(now=now))
        now += delay
    assert dues[0] == start  # the first turn is due when it is taken
    for k, due in enumerate(dues):
        assert due == pytest.approx(start + k / rate, rel=1e-9, abs=1e-9)


def test_a_turn_taken_late_is_due_when_the_schedule_said() -> None:
    # Sixteen users all waiting for answers: the turns pile up, and each is due in the past
    # when it is finally taken, so its latency counts from then (not from its late send).
    schedule = FixedRateSchedule(rate=100.0)
    assert schedule.take(now=10.0) == 10.0
    assert schedule.take(now=10.5) == pytest.approx(10.01)
    assert schedule.take(now=10.5) == pytest.approx(10.02)


@pytest.mark.parametrize("rate", [0.0, -1.0, float("nan")])
def test_a_rate_that_is_not_positive_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        FixedRateSchedule(rate=rate)
