"""Keys and seals raise an officers' alert ahead of their expiry (pure rules)."""

from __future__ import annotations

import datetime as dt

from gateway.oversight.alerts import AlertKind, Expiring, expiry_alerts

NOW = dt.datetime(2026, 6, 10, 2, 30, tzinfo=dt.UTC)
AHEAD = dt.timedelta(days=30)


def test_only_what_expires_within_the_horizon_alerts_soonest_first() -> None:
    items = [
        Expiring("seal", "seal-1", "market", NOW + dt.timedelta(days=29)),
        Expiring("department-key", "kid-far", "tax", NOW + dt.timedelta(days=31)),
        Expiring("gateway-key", "kid-gw", None, NOW + dt.timedelta(days=2)),
        Expiring("department-key", "kid-old", "tax", NOW - dt.timedelta(days=1)),
    ]
    alerts = expiry_alerts(items, now=NOW, ahead=AHEAD)
    assert [a.numbers["id"] for a in alerts] == ["kid-old", "kid-gw", "seal-1"]
    assert [a.kind for a in alerts] == [
        AlertKind.KEY_EXPIRING,
        AlertKind.KEY_EXPIRING,
        AlertKind.SEAL_EXPIRING,
    ]
    assert "still in use" in alerts[0].why
    assert alerts[1].department is None
    assert "gateway keys rotate" in alerts[1].why
    assert alerts[2].numbers["days_left"] == 29.0


def test_the_horizon_is_inclusive_and_nothing_alerts_when_all_is_far() -> None:
    edge = Expiring("seal", "s", "market", NOW + AHEAD)
    assert len(expiry_alerts([edge], now=NOW, ahead=AHEAD)) == 1
    far = Expiring("seal", "s", "market", NOW + AHEAD + dt.timedelta(seconds=1))
    assert expiry_alerts([far], now=NOW, ahead=AHEAD) == []
