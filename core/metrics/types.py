"""The vocabulary of the metrics API: ``Query`` (what is asked), ``MetricResult`` (the answer),
``Metric`` (one registered number) and ``MetricError`` (a sentence for people)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Engine

from core.money import SUPPORTED_CURRENCIES, normalise_currency
from core.settings.business import BusinessSettings
from core.timeutil import GRANULARITIES, Period, clipped_periods, ensure_aware, zone

if TYPE_CHECKING:
    import pandas as pd

Unit = Literal["money", "count", "percent"]


class MetricError(ValueError):
    """A question we cannot answer as asked; str(error) is one sentence for people."""


@dataclass(frozen=True, slots=True)
class Filters:
    """Restrict to one tier code, billing interval, original currency and/or member country."""

    tier: str | None = None
    interval: str | None = None
    currency: str | None = None
    country: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("tier", self.tier), ("interval", self.interval),
                                  ("currency", self.currency), ("country", self.country)) if v}


EARLIEST_START = date(1970, 1, 1)  # before any card payment system this product reads
MAX_BUCKETS = 4000  # eleven years by day; pages ask for far fewer (dashboard/controls.py)
DAYS_PER_BUCKET = {"day": 1.0, "week": 7.0, "month": 28.0}


@dataclass(frozen=True, slots=True)
class Query:
    """One question. ``start``/``end`` are local dates in ``tz``, half-open ``[start, end)``.

    ``currency`` is the reporting currency (money converted through ``fx_rates``); ``None`` keeps
    every original currency apart (then money results carry a ``currency`` column and
    ``MetricResult.value`` is None while ``by_currency`` holds the figures).
    """

    start: date
    end: date
    granularity: str = "month"
    tz: str = "UTC"
    now: datetime | None = None
    filters: Filters = field(default_factory=Filters)
    currency: str | None = "USD"
    settings: BusinessSettings = field(default_factory=BusinessSettings)

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise MetricError(f"“{self.granularity}” is not a granularity; use day, week or month.")
        if not self.end > self.start:
            raise MetricError("The end date must come after the start date.")
        if self.start < EARLIEST_START:
            raise MetricError(f"Ranges start on {EARLIEST_START:%Y-%m-%d} or later.")
        buckets = (self.end - self.start).days / DAYS_PER_BUCKET[self.granularity]
        if buckets > MAX_BUCKETS:
            # One question may not ask for unbounded work: a link asking for every day since the
            # year 1 held a server's memory at 5 GB for minutes.
            raise MetricError(f"That range holds about {buckets:,.0f} {self.granularity}s, more than "
                              f"{MAX_BUCKETS:,} buckets; choose a shorter range or a longer granularity.")
        try:
            zone(self.tz)
        except ValueError as exc:
            raise MetricError(str(exc)) from None
        if self.now is None:
            raise MetricError("A query needs `now` (pass the current time explicitly).")
        object.__setattr__(self, "now", ensure_aware(self.now))
        if self.currency is not None:
            code = normalise_currency(self.currency)
            if code not in SUPPORTED_CURRENCIES:
                raise MetricError(f"{code} is not a reporting currency; use one of {', '.join(SUPPORTED_CURRENCIES)}.")
            object.__setattr__(self, "currency", code)

    @classmethod
    def make(cls, source: Engine | BusinessSettings, *, start: date, end: date, now: datetime,
             granularity: str = "month", tz: str | None = None, currency: str | None | Literal["reporting"] = "reporting",
             filters: Filters | None = None, **filter_values: str | None) -> Query:
        """Build a query with the business settings in force (tz and currency default to them)."""
        from core.settings.business import load

        bs = source if isinstance(source, BusinessSettings) else load(source)
        return cls(start=start, end=end, granularity=granularity, tz=tz or bs.business_timezone, now=now,
                   filters=filters or Filters(**filter_values),
                   currency=bs.reporting_currency if currency == "reporting" else currency, settings=bs)

    def buckets(self) -> list[Period]:
        """The granularity buckets of ``[start, end)``, the first and last cut to the range."""
        return clipped_periods(self.start, self.end, self.granularity, zone(self.tz), self.settings.week_start_index)

    def settings_used(self) -> dict[str, Any]:
        return {"business_timezone": self.tz, "reporting_currency": self.currency or "per original currency",
                "past_due_grace_days": self.settings.past_due_grace_days,
                "week_start": self.settings.week_start, "granularity": self.granularity,
                "filters": self.filters.as_dict(), "now": self.now.isoformat() if self.now else None,
                # Which rates converted the money: their last change (None: the built-in defaults).
                "fx_rates_as_of": (self.settings.fx_rates_changed_at.isoformat()
                                   if self.settings.fx_rates_changed_at else None)}


Columns = dict[str, list[Any]]
"""A small table as column name -> values: what a metric builds, so answering from the command
line never imports pandas (its import alone is a fifth to half of the CLI's time budget)."""


class MetricResult:
    """The answer for one metric.

    ``value``: the whole period (money: int minor units of ``currency``; count: int; percent: a
    fraction 0..1 as float, or None when undefined, e.g. a zero denominator).
    ``series``: one row per bucket: ``period`` (local label date), ``period_start``/``period_end``
    (UTC), ``value``, plus ``currency`` when per original currency.
    ``breakdown``: optional table (e.g. by decline code) with a ``value`` column.
    ``by_currency``: money figures per original currency (always filled for money metrics).

    ``series`` and ``breakdown`` are DataFrames to read; a computation may hand in ``Columns``
    instead, which become a DataFrame at the first read. ``columns(name)`` reads either as
    ``Columns`` without making one.
    """

    __slots__ = ("slug", "unit", "value", "currency", "_series", "_breakdown", "by_currency", "settings_used",
                 "definition", "note")

    def __init__(self, slug: str, unit: Unit, value: int | float | None, currency: str | None,
                 series: pd.DataFrame | Columns, breakdown: pd.DataFrame | Columns | None = None, *,
                 by_currency: Mapping[str, int | float | None] | None = None,
                 settings_used: dict[str, Any] | None = None, definition: str = "", note: str | None = None) -> None:
        self.slug, self.unit, self.value, self.currency = slug, unit, value, currency
        self._series, self._breakdown = series, breakdown
        self.by_currency: Mapping[str, int | float | None] = by_currency if by_currency is not None else {}
        self.settings_used = settings_used if settings_used is not None else {}
        self.definition = definition
        self.note = note  # e.g. "LTV is undefined: no churn in the 6 months before"

    @property
    def series(self) -> pd.DataFrame:
        self._series = _frame(self._series)
        return self._series

    @series.setter
    def series(self, value: pd.DataFrame | Columns) -> None:
        self._series = value

    @property
    def breakdown(self) -> pd.DataFrame | None:
        self._breakdown = None if self._breakdown is None else _frame(self._breakdown)
        return self._breakdown

    @breakdown.setter
    def breakdown(self, value: pd.DataFrame | Columns | None) -> None:
        self._breakdown = value

    def columns(self, name: Literal["series", "breakdown"]) -> Columns | None:
        """``series`` or ``breakdown`` as column name -> values (no pandas unless it is a frame already)."""
        table = self._series if name == "series" else self._breakdown
        if table is None or isinstance(table, dict):
            return table
        return {str(c): table[c].tolist() for c in table.columns}

    def __repr__(self) -> str:
        return f"MetricResult({self.slug!r}, value={self.value!r}, currency={self.currency!r})"


def _frame(table: pd.DataFrame | Columns) -> pd.DataFrame:
    if not isinstance(table, dict):
        return table
    import pandas as pd

    return pd.DataFrame(table)


ComputeFn = Callable[[Engine, Query], MetricResult]
DrillFn = Callable[..., "pd.DataFrame"]


@dataclass(frozen=True, slots=True)
class Metric:
    """One registered number: what the UI shows beside it and how it is computed."""

    slug: str
    title: str
    unit: Unit
    definition: str
    compute_fn: ComputeFn
    drill_fn: DrillFn
    group: str = ""  # recurring, churn, cash, health
    granularities: tuple[str, ...] = GRANULARITIES

    def compute(self, engine: Engine, query: Query) -> MetricResult:
        result = self.compute_fn(engine, query)
        result.definition = self.definition
        if not result.settings_used:
            result.settings_used = query.settings_used()
        return result

    def drill(self, engine: Engine, query: Query, *, period: date | None = None, key: str | None = None,
              limit: int | None = 10_000) -> pd.DataFrame:
        """The rows behind the number: optionally one bucket (its label date) and one key (a
        movement kind, a decline code, a brand, ...)."""
        return self.drill_fn(engine, query, period=period, key=key, limit=limit)
