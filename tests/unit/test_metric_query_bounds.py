"""A metric question is bounded: a range starting before 1970, or holding more than 4,000
buckets, is refused with a sentence before any work. One link asking for every day since the year 1
held the server's memory at 5 GB for minutes (the pages ask for far less: dashboard/controls.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from core.metrics.types import MetricError, Query
from core.settings.business import BusinessSettings

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def ask(start: date, end: date, granularity: str) -> Query:
    return Query.make(BusinessSettings(), start=start, end=end, now=NOW, granularity=granularity)


def test_a_range_from_the_year_1_is_refused():
    with pytest.raises(MetricError, match="Ranges start on 1970-01-01 or later"):
        ask(date(1, 1, 1), date(2026, 12, 8), "month")


def test_too_many_buckets_are_refused_and_a_longer_granularity_is_not():
    with pytest.raises(MetricError, match=r"about 5,000 days, more than 4,000 buckets"):
        ask(date(2012, 1, 1), date(2025, 9, 9), "day")
    assert len(ask(date(2012, 1, 1), date(2025, 9, 9), "week").buckets()) == 716  # 1 Jan 2012 was a Sunday: a first part-week
    assert len(ask(date(2015, 12, 26), date(2026, 12, 8), "day").buckets()) == 4_000
