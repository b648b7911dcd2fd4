"""The incidents planted in the demo world fire on their day, with the hint that names the cause,
and not the day before. One test per database: it loads the default demo world (5,000 members,
seed 1, a fixed today) once and checks every planted incident against it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import delete

from core.alerts import evaluate, list_alerts
from core.models import Alert, AlertTransition, Notification
from demo import default_now, incidents, load_demo

TODAY = date(2026, 11, 27)
NOW = default_now(TODAY)


def alerts_at(engine, moment: datetime) -> dict[tuple[str, str], dict]:
    with engine.begin() as conn:  # each check starts from no alerts
        for model in (AlertTransition, Notification, Alert):
            conn.execute(delete(model))
    evaluate(engine, moment, deliver=False)
    return {(a["rule"], a["scope"]): a for a in list_alerts(engine)}


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@pytest.mark.slow
def test_planted_incidents_fire_on_their_day_with_the_right_hint(engine):
    load_demo(engine, members=5000, seed=1, now=NOW)
    planted = {i.kind: i for i in incidents(NOW)}

    # The decline spike: evaluated at the end of its day (the 24-hour window is exactly that day).
    day = planted["decline_spike"].day
    fired = alerts_at(engine, midnight(day) + timedelta(days=1))
    code = fired[("failure_concentration", "decline_code=insufficient_funds")]
    assert code["hint"].startswith("Failures concentrated on decline code “Insufficient funds”")
    brand = fired[("failure_concentration", "card_brand=mastercard")]
    assert brand["hint"].startswith("Failures concentrated on card brand “Mastercard”")
    rate = fired[("failure_rate_day", "all")]
    assert "most failures: decline code “Insufficient funds”" in rate["hint"]
    assert rate["window_start"] == midnight(day)
    before = alerts_at(engine, midnight(day))  # the day before: nothing about payments
    assert [k for k in before if k[0].startswith("failure")] == []

    # The refund burst.
    day = planted["refund_burst"].day
    fired = alerts_at(engine, midnight(day) + timedelta(days=1))
    assert "most given reason: Duplicate charge" in fired[("refund_spike", "all")]["hint"]
    assert ("refund_spike", "all") not in alerts_at(engine, midnight(day))


@pytest.mark.slow
def test_a_fresh_demo_opens_nothing_new_at_any_hour_of_its_last_day(engine):
    # The demo's data ends at today 00:00 UTC; a person opens it any time today. Whatever the
    # hour, the rules compare like with like, so nothing opens that midnight did not open.
    load_demo(engine, members=5000, seed=1, now=NOW)
    at_start = set(alerts_at(engine, NOW))
    for hour in (1, 6, 12, 15, 18, 23):
        later = alerts_at(engine, NOW + timedelta(hours=hour, minutes=30 if hour == 23 else 0))
        assert set(later) <= at_start, (hour, {k: later[k]["hint"] for k in set(later) - at_start})
