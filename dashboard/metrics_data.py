"""Cached reads of the metrics registry for the finance pages.

Guarantees:
- Every number comes from ``core.metrics`` (``page_bundle``, ``compute``, ``drill``); nothing here
  adds, divides or converts. Results are returned as the registry gives them (dataclasses of plain
  values and DataFrames, never ORM objects).
- Results are cached with ``st.cache_data`` for ``TTL`` seconds. The cache key is the database URL,
  the question (dates, granularity, money view, filters), the business settings in force (with
  the FX rates' digest: a saved rate is a new key, so the next page load in any session converts
  at it) and ``now`` rounded down to the minute; the engine itself is passed as ``_engine`` and
  not hashed.
  The numbers are computed as of the instant they are asked (``asked_at``, not hashed), never as
  of the minute's start: a subscription or payment written earlier in that minute counts, as it
  does in the command line asked at the same moment (a minute's start left out MRR written
  seconds before while the payments of the same seconds counted).
  The business settings are read on every run (one small query), so a changed setting takes
  effect on the next run instead of after the TTL.
- Errors from the registry reach the page as ``MetricError`` sentences.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from core.metrics import Filters, MetricResult, Query, drill, get, page_bundle
from core.money import SUPPORTED_CURRENCIES
from core.settings import business as business_settings
from core.settings.business import BusinessSettings
from core.timeutil import utc_now, zone
from dashboard.controls import REPORTING, Controls, FilterOptions

TTL = 300  # seconds; the rollups behind the numbers refresh after a sync, not continuously
DRILL_LIMIT = 10_000

# The product's catalogue (core/models/catalogue.py comments, the demo world): the filter choices.
TIERS = ("free", "premium", "platinum")
INTERVALS = ("month", "year")


@dataclass(frozen=True)
class Question:
    """The hashable form of a page's question (what the cache keys on)."""

    db: str
    start: date
    end_exclusive: date
    granularity: str
    currency: str | None  # reporting currency code, or None for per original currency
    tier: str | None
    interval: str | None
    money_filter: str | None  # original currency filter
    country: str | None
    now_minute: datetime
    settings: tuple[tuple[str, Any], ...]

    @property
    def last_day(self) -> date:
        """The last day included (the end the person chose)."""
        return self.end_exclusive - timedelta(days=1)

    def query(self, now: datetime | None = None) -> Query:
        """The registry's question, as of ``now`` (default: the minute's start)."""
        bs = BusinessSettings(**dict(self.settings))
        return Query(start=self.start, end=self.end_exclusive, granularity=self.granularity, tz=bs.business_timezone,
                     now=now or self.now_minute, currency=self.currency, settings=bs,
                     filters=Filters(tier=self.tier, interval=self.interval, currency=self.money_filter,
                                     country=self.country))


def settings(engine: Engine) -> BusinessSettings:
    """The business settings in force (read every run: changes apply at once)."""
    return business_settings.load(engine)


def today(bs: BusinessSettings, now: datetime | None = None) -> date:
    """Today's date in the business time zone."""
    return (now or utc_now()).astimezone(zone(bs.business_timezone)).date()


def question(engine: Engine, controls: Controls, bs: BusinessSettings, *, now: datetime | None = None) -> Question:
    """Turn the controls into the registry's question. The last chosen day is included, so the
    half-open end is the day after it."""
    now = (now or utc_now()).replace(second=0, microsecond=0)
    one = controls.filters
    money = controls.per_currency
    return Question(
        db=engine.url.render_as_string(hide_password=True),
        start=controls.start, end_exclusive=controls.end + timedelta(days=1),
        granularity=controls.granularity,
        # A single original currency is shown unconverted: filter to it and report in it.
        currency=money or bs.reporting_currency,
        tier=(one.get("tier") or (None,))[0], interval=(one.get("interval") or (None,))[0],
        money_filter=money, country=(one.get("country") or (None,))[0],
        now_minute=now, settings=tuple(sorted(bs.as_dict().items())),
    )


def asked_at(q: Question, now: datetime | None = None) -> datetime:
    """The instant a question's numbers are computed as of: the present instant, within the
    question's minute (a question pinned to an earlier minute: that minute's last instant). Not
    rounded: a row written a fraction of a second before counts."""
    present = now or utc_now()
    return max(q.now_minute, min(present, q.now_minute + timedelta(minutes=1, microseconds=-1)))


@st.cache_data(ttl=TTL, show_spinner=False, max_entries=64)
def bundle(_engine: Engine, q: Question, page: str, _asked_at: datetime | None = None) -> Any:
    """Every number of ``page`` for the question (``core.metrics.page_bundle``), as of
    ``_asked_at`` (``asked_at(q)``; not part of the cache key)."""
    return page_bundle(_engine, page, q.query(_asked_at or asked_at(q)))


# The questions whose bundle this process has in its cache (as far as it knows): a page reads
# those without ``st.spinner``, which starts a timer thread on every run (6-8 ms of a warm
# analytics page on a busy 2-core machine) for a read that takes a few milliseconds.
_loaded: dict[tuple[Question, str], float] = {}
_LOADED_MAX = 256


def loaded_recently(q: Question, page: str) -> bool:
    at = _loaded.get((q, page))
    return at is not None and time.monotonic() - at < TTL


def note_loaded(q: Question, page: str) -> None:
    if len(_loaded) >= _LOADED_MAX:
        _loaded.clear()  # a rough bound: forgetting only costs a spinner's timer
    _loaded[(q, page)] = time.monotonic()


@st.cache_data(ttl=TTL, show_spinner=False, max_entries=128)
def drill_rows(_engine: Engine, q: Question, slug: str, period: date | None, key: str | None,
               _asked_at: datetime | None = None) -> pd.DataFrame:
    """The rows behind one number, one chart bucket (``period``) and/or one key (movement kind,
    decline code, brand, country, tier, ...)."""
    return drill(_engine, slug, q.query(_asked_at or asked_at(q)), period=period, key=key, limit=DRILL_LIMIT)


def whole_worklist(engine: Engine, q: Question, name: str) -> pd.DataFrame:
    """Every row of a failed-payments worklist (``past_due`` or ``expiring_cards``), for its
    download: the page bundle holds only the first rows. Read when the download is asked for."""
    from core.metrics import worklists

    read = {"past_due": worklists.past_due, "expiring_cards": worklists.expiring_cards}[name]
    return read(engine, q.query(asked_at(q)), limit=None)


def row_count(b: Any, name: str) -> int | None:
    """Rows in the whole of a bundle table the page shows the first rows of (None: all shown)."""
    return (getattr(b, "row_counts", None) or {}).get(name)


def chain_question(q: Question, b: Any) -> Question:
    """The page's question narrowed to the month the bundle's cash chain covers (its drills)."""
    cq = getattr(b, "chain_query", None)
    if cq is None:
        return q
    return replace(q, start=cq.start, end_exclusive=cq.end, granularity="month")


def with_filter(q: Question, dim: str, value: str) -> Question:
    """The same question narrowed to one tier, interval, original currency or country (for the
    rows behind one bar of a "by segment" chart)."""
    field_name = {"tier": "tier", "interval": "interval", "currency": "money_filter", "country": "country"}[dim]
    narrowed: dict[str, Any] = {field_name: value}
    return replace(q, **narrowed)


def definition(slug: str) -> str:
    return get(slug).definition


def title(slug: str) -> str:
    return get(slug).title


def find(b: Any, slug: str) -> MetricResult | None:
    """The bundle's result for the registered metric ``slug`` (None: this bundle does not carry it)."""
    metrics = getattr(b, "metrics", b) or {}
    return metrics.get(slug)


def table(b: Any, name: str) -> pd.DataFrame | None:
    tables = getattr(b, "tables", None) or {}
    return tables.get(name)


def currencies() -> tuple[str, ...]:
    return SUPPORTED_CURRENCIES


def settings_line(bs: BusinessSettings, q: Question) -> str:
    """The settings that shaped every number on the page, as one caption line."""
    grace = "none (past-due counts until Stripe ends it)" if bs.past_due_grace_days is None else f"{bs.past_due_grace_days} days"
    tz = bs.business_timezone  # every time on a page is in the business time zone, as on the Overview
    money = (f"converted to {q.currency} ({rates_text(bs)})" if q.money_filter is None
             else f"{q.money_filter} only, unconverted")
    return (f"Time zone {tz} · money {money} · past-due grace {grace} · weeks start "
            f"{bs.week_start.title()} · data as of {q.now_minute.astimezone(zone(tz)):%Y-%m-%d %H:%M} {tz}")


def rates_text(bs: BusinessSettings) -> str:
    """Which FX rates converted the money: their last change, so a person can tell whether a rate
    just saved shaped the numbers."""
    if bs.fx_rates_changed_at is None:
        return "the built-in default FX rates"
    tz = bs.business_timezone
    return f"FX rates as of their last change, {bs.fx_rates_changed_at.astimezone(zone(tz)):%Y-%m-%d %H:%M} {tz}"


__all__ = ["INTERVALS", "REPORTING", "TIERS", "Question", "bundle", "currencies", "definition", "drill_rows",
           "find", "question", "settings", "settings_line", "table", "title", "today"]


# The registered metric behind each number a page shows (role -> slug). Every slug here must be
# registered in ``core.metrics`` (tests/test_architecture.py checks), so a renamed metric fails a
# test instead of a page silently showing nothing.
REVENUE: dict[str, str] = {
    "mrr": "mrr", "arr": "arr", "paying_members": "paying_members", "arpu": "arpu", "ltv": "ltv",
    "net_revenue": "net_revenue", "gross_revenue": "gross_revenue", "billed": "billed", "refunds": "refunds",
    "stripe_fees": "stripe_fees", "disputes_lost": "disputes_lost", "movements": "mrr_movements",
}
MOVEMENT_SLUGS: dict[str, str] = {k: f"mrr_{k}" for k in ("new", "expansion", "contraction", "churn", "reactivation",
                                                         "transfer_in", "transfer_out")}
SEGMENTS = ("tier", "interval", "currency", "country")  # page bundle tables ``revenue_by_<dim>``
CHURN: dict[str, str] = {
    "member_churn": "member_churn_rate", "voluntary": "voluntary_churn_rate",
    "involuntary": "involuntary_churn_rate", "gross_mrr_churn": "gross_mrr_churn", "net_mrr_churn": "net_mrr_churn",
    "nrr": "nrr", "grr": "grr", "cohort_members": "cohort_retention", "cohort_mrr": "cohort_mrr_retention",
    "trial_conversion": "trial_conversion", "cancellation_reasons": "cancellations",
}
FAILED: dict[str, str] = {
    "failure_rate": "failure_rate", "recovery_rate": "recovery_rate", "revenue_at_risk": "revenue_at_risk",
    "decline_codes": "decline_codes", "failed_payments": "failed_payments", "brands": "card_brands",
    "countries": "card_countries",
}
PAGE_SLUGS = (*REVENUE.values(), *MOVEMENT_SLUGS.values(), *CHURN.values(), *FAILED.values())


def default_start(today_: date) -> date:
    """The first day of the month a year before ``today_``'s month: twelve full months plus this one."""
    return date(today_.year - 1, today_.month, 1)


def filter_options() -> FilterOptions:
    """Filter choices: the catalogue's tiers and intervals, the currencies we sell in, and countries
    from ``COUNTRIES`` (ISO codes of the markets the app sells in)."""
    return FilterOptions(tier=TIERS, interval=INTERVALS, currency=SUPPORTED_CURRENCIES, country=COUNTRIES)


COUNTRIES = ("AT", "AU", "BE", "BR", "CA", "CH", "DE", "DK", "ES", "FI", "FR", "GB", "IE", "IN", "IT", "JP", "MX",
             "NL", "NO", "NZ", "PL", "PT", "SE", "SG", "US")
