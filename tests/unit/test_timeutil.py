from datetime import date

import pytest

from core.timeutil import add_months, ensure_aware, from_epoch, periods, to_epoch, zone
from tests.support.factories import at


def test_epoch_round_trip():
    assert from_epoch(1767225600) == at("2026-01-01 00:00")
    assert to_epoch(at("2026-01-01 00:00")) == 1767225600


def test_naive_refused():
    from datetime import datetime

    with pytest.raises(ValueError):
        ensure_aware(datetime(2026, 1, 1))


def test_month_across_dst_in_berlin():
    # March 2026: clocks go forward on the 29th; the month is 31 days minus one hour long.
    (march,) = periods(date(2026, 3, 1), date(2026, 4, 1), "month", zone("Europe/Berlin"))
    assert march.start == at("2026-02-28 23:00")
    assert march.end == at("2026-03-31 22:00")
    assert (march.end - march.start).total_seconds() == 31 * 86400 - 3600


def test_weeks_start_on_the_configured_day():
    weeks = periods(date(2026, 11, 1), date(2026, 11, 15), "week", zone("UTC"), week_start=6)  # Sunday
    assert [w.label for w in weeks] == [date(2026, 11, 1), date(2026, 11, 8)]


def test_add_months_clamps_like_stripe():
    assert add_months(at("2026-01-31 10:00"), 1) == at("2026-02-28 10:00")
    assert add_months(at("2024-01-31 10:00"), 1) == at("2024-02-29 10:00")
    assert add_months(at("2026-11-30 10:00"), 3) == at("2027-02-28 10:00")


def test_unknown_zone_is_a_sentence():
    with pytest.raises(ValueError, match="is not a time zone"):
        zone("Mars/Olympus")
