"""Time: aware UTC everywhere, business-time-zone periods at the edges.

Periods are half-open ``[start, end)`` computed in the business time zone and returned in UTC,
so a month in Europe/Berlin that crosses a daylight-saving change is still one calendar month.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

GRANULARITIES = ("day", "week", "month")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def utc_now() -> datetime:
    return datetime.now(UTC)


@overload
def from_epoch(seconds: int | float) -> datetime: ...


@overload
def from_epoch(seconds: None) -> None: ...


def from_epoch(seconds: int | float | None) -> datetime | None:
    """Stripe timestamps are epoch seconds; convert them once, here."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(int(seconds), UTC)


def to_epoch(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    return int(ensure_aware(moment).timestamp())


def ensure_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: Memberdesk only handles timezone-aware times")
    return moment.astimezone(UTC)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"“{name}” is not a time zone; use a name such as Europe/Berlin.") from None


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """The UTC instant at which ``day`` starts in ``tz`` (handles DST gaps via fold rules)."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def period_start(moment: datetime, granularity: str, tz: ZoneInfo, week_start: int = 0) -> date:
    """The local calendar date that starts the period containing ``moment``."""
    local = ensure_aware(moment).astimezone(tz).date()
    if granularity == "day":
        return local
    if granularity == "week":
        return local - timedelta(days=(local.weekday() - week_start) % 7)
    if granularity == "month":
        return local.replace(day=1)
    raise ValueError(f"unknown granularity {granularity!r}; use day, week or month")


def next_period_start(start: date, granularity: str) -> date:
    if granularity == "day":
        return start + timedelta(days=1)
    if granularity == "week":
        return start + timedelta(days=7)
    if granularity == "month":
        return date(start.year + start.month // 12, start.month % 12 + 1, 1)
    raise ValueError(f"unknown granularity {granularity!r}; use day, week or month")


@dataclass(frozen=True, slots=True)
class Period:
    """One bucket: local label date plus its UTC bounds ``[start, end)``."""

    label: date
    start: datetime
    end: datetime


def periods(first: date, last_exclusive: date, granularity: str, tz: ZoneInfo,
            week_start: int = 0) -> list[Period]:
    """Buckets covering the local dates ``[first, last_exclusive)``, aligned to the granularity."""
    out: list[Period] = []
    cursor = period_start(local_midnight(first, tz), granularity, tz, week_start)
    while cursor < last_exclusive:
        nxt = next_period_start(cursor, granularity)
        out.append(Period(cursor, local_midnight(cursor, tz), local_midnight(nxt, tz)))
        cursor = nxt
    return out


def clipped_periods(first: date, last_exclusive: date, granularity: str, tz: ZoneInfo,
                    week_start: int = 0) -> list[Period]:
    """``periods`` cut to ``[first, last_exclusive)``: a first or last bucket that sticks out of
    the range keeps only its days inside it (its label is the first of those days), so no figure
    of a range counts a day outside it, whatever the bucket size."""
    out = periods(first, last_exclusive, granularity, tz, week_start)
    if out and out[0].label < first:
        out[0] = Period(first, local_midnight(first, tz), out[0].end)
    if out and out[-1].end > local_midnight(last_exclusive, tz):
        last = out[-1]
        out[-1] = Period(last.label, last.start, local_midnight(last_exclusive, tz))
    return out


def is_whole(bucket: Period, granularity: str, tz: ZoneInfo, week_start: int = 0) -> bool:
    """Whether ``bucket`` is a whole, aligned bucket of ``granularity`` (not cut by a range end)."""
    return (period_start(bucket.start, granularity, tz, week_start) == bucket.label
            and bucket.end == local_midnight(next_period_start(bucket.label, granularity), tz))


def add_months(moment: datetime, months: int) -> datetime:
    """Calendar month arithmetic the way Stripe bills (Jan 31 + 1 month = Feb 28/29)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    for day in (moment.day, 30, 29, 28):
        try:
            return moment.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    raise AssertionError("unreachable")
