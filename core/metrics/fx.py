"""Conversion into the reporting currency through ``fx_rates`` (USD per unit, per month).

A currency with no row at all in ``fx_rates`` uses ``core.settings.business.DEFAULT_RATES``.

Rule: an amount belonging to month M is converted at the rate of M; a month without a rate uses
the latest earlier month of that currency, and before the first rate the earliest one. An
amount converts exactly (rates are exact decimals) and is rounded once, half to even; which
amounts are converted and then added is the rule in ``core.metrics.common`` (segments: each
segment's monthly running total for flows, each segment's MRR for stocks).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from fractions import Fraction

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.metrics.memo import memoised
from core.metrics.types import MetricError
from core.models import FxRate
from core.money import decimals
from core.settings.business import DEFAULT_RATES


@dataclass(frozen=True)
class RateTable:
    months: dict[str, list[date]]
    rates: dict[str, list[Decimal]]
    # (from, to, month) -> the exact ratio (numerator, denominator) of minor units.
    _converters: dict[tuple[str, str, date], tuple[int, int]] = field(
        default_factory=dict, compare=False, repr=False)

    @classmethod
    def load(cls, engine: Engine) -> RateTable:
        return memoised(("rate table", engine.url), lambda: cls._read(engine))

    @classmethod
    def _read(cls, engine: Engine) -> RateTable:
        months: dict[str, list[date]] = {}
        rates: dict[str, list[Decimal]] = {}
        defaults: dict[str, bool] = {}  # currencies with no row at all use the built-in defaults
        with Session(engine) as s:
            for cur, month, rate in s.execute(
                    select(FxRate.currency, FxRate.month, FxRate.usd_per_unit).order_by(FxRate.currency, FxRate.month)):
                months.setdefault(cur, []).append(month)
                rates.setdefault(cur, []).append(Decimal(rate))
        for year, per in sorted(DEFAULT_RATES.items()):
            for cur, default_rate in per.items():
                if cur in months and not defaults.get(cur):
                    continue
                defaults[cur] = True
                for m in range(1, 13):
                    months.setdefault(cur, []).append(date(year, m, 1))
                    rates.setdefault(cur, []).append(Decimal(default_rate))
        return cls(months, rates)

    def usd_per_unit(self, currency: str, month: date) -> Decimal:
        if currency == "USD":
            return Decimal(1)
        months = self.months.get(currency)
        if not months:
            raise MetricError(f"There is no {currency} exchange rate; add one on the admin page.")
        i = bisect.bisect_right(months, month.replace(day=1)) - 1
        return self.rates[currency][max(i, 0)]

    def convert(self, amount_minor: int, currency: str, to_currency: str, month: date) -> int:
        """``amount_minor`` at the month's rates, exactly, rounded half to even (integer
        arithmetic: a page converts tens of thousands of daily rows)."""
        if currency == to_currency:
            return int(amount_minor)
        return _rounded(int(amount_minor), *self._ratio(currency, to_currency, month))

    def converter(self, currency: str, to_currency: str, month: date) -> Callable[[int], int]:
        """``convert`` with the currencies and month bound: a loop converting many amounts of one
        segment's month looks the ratio up once."""
        if currency == to_currency:
            return int
        num, den = self._ratio(currency, to_currency, month)
        return lambda amount_minor: _rounded(int(amount_minor), num, den)

    def _ratio(self, currency: str, to_currency: str, month: date) -> tuple[int, int]:
        key = (currency, to_currency, month.replace(day=1))
        ratio = self._converters.get(key)
        if ratio is None:
            exact = (Fraction(self.usd_per_unit(currency, month)) * 10 ** decimals(to_currency)
                     / (Fraction(self.usd_per_unit(to_currency, month)) * 10 ** decimals(currency)))
            ratio = self._converters[key] = (exact.numerator, exact.denominator)
        return ratio


def _rounded(amount_minor: int, num: int, den: int) -> int:
    """amount x num / den, rounded half to even."""
    q, r = divmod(amount_minor * num, den)
    if 2 * r > den or (2 * r == den and q % 2):
        q += 1
    return q
