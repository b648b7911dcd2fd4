"""KPI cards for the Overview: each number from the metrics registry with its change against the
same part of the previous period, and its definition on hover.

The numbers are the Overview bundle the server keeps for every session (``core.metrics.kept``,
at most a minute old; the page says as of when). When they cannot be computed the cards fall
back to the plain counts this shell reads itself (paying subscriptions, open alerts), without a
trend, and say so. Money cards are shown only to roles with VIEW_REVENUE_FIGURES.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import streamlit as st

from core.metrics import kept
from core.permissions import Permission
from core.timeutil import zone
from dashboard import format as fmt
from dashboard import metrics_data, reads
from dashboard.auth import StaffContext
from dashboard.db import engine
from dashboard.text import md
from dashboard.widgets import definition, kpi

log = logging.getLogger(__name__)

PERIODS = {"Month to date": "mtd", "Last 30 days": "30d", "Last 90 days": "90d", "Year to date": "ytd"}


def _answer(code: str) -> kept.Answer:
    """The cards' numbers: kept by the server for every session (``core.metrics.kept``), or
    computed now when none from the last minute is kept for this period at these settings and
    rates. The settings are read on every run, not from the cached ``reads.business()``: a rate
    saved in another process (or replica) must change the question on the next page load, as it
    does on the analytics pages."""
    with st.spinner("Computing the overview numbers…", show_time=True):
        return kept.overview(engine(), code)  # the server keeps a period asked for fresh a while


def _delta(card: Any) -> str | None:
    """The change against the previous period: percentage points for rates, otherwise the
    difference in the card's unit with the relative change beside it when it is defined."""
    change = getattr(card, "change", None)
    if change is None:
        return None
    if card.unit == "percent":
        return f"{change * 100:+.1f} pts"
    absolute = fmt.money(change, card.currency, signed=True) if card.unit == "money" else f"{int(change):+,}"
    ratio = getattr(card, "change_ratio", None)
    return absolute if ratio is None else f"{absolute} ({fmt.percent(ratio, signed=True)})"


def _flat(card: Any) -> bool:
    """True when the change shows as zero: drawn grey without an arrow, not as a rise."""
    change = getattr(card, "change", None)
    if change is None:
        return False
    return round(change * 100, 1) == 0 if card.unit == "percent" else change == 0


def _delta_color(card: Any) -> str:
    if _flat(card):
        return "off"
    return "inverse" if card.slug in _INVERSE else "normal"


def _value(card: Any) -> str:
    if card.unit == "money":
        return fmt.money(card.value, card.currency)
    if card.unit == "percent":
        return fmt.percent(card.value)
    return fmt.count(card.value)


# For these a rise is bad news: the delta is drawn red when it goes up.
_INVERSE = {"member_churn_rate", "failure_rate", "open_alerts", "mrr_churn_rate"}


def _fallback_cards(ctx: StaffContext) -> None:
    mrr = reads.mrr_by_currency()
    cols = st.columns(3)
    kpi(cols[0], "Paying subscriptions", fmt.count(int(mrr["paying_subscriptions"].sum()) if not mrr.empty else 0),
        help_text="Active or past-due subscriptions with a price above zero, now.")
    if ctx.can(Permission.VIEW_REVENUE_FIGURES):
        currencies = ", ".join(fmt.money(v, c) for v, c in zip(mrr["mrr_minor"], mrr["currency"], strict=True))
        kpi(cols[1], "MRR (per currency)", currencies or fmt.money(0, "USD"),
            help_text="Sum of current subscriptions' MRR in each original currency.")
    kpi(cols[2], "Open alerts", fmt.count(reads.open_alerts()),
        help_text="Alerts open or acknowledged, not yet resolved (snoozed ones are not counted).",
        delta_color="inverse")


def render_overview_kpis(ctx: StaffContext) -> None:
    choice = st.segmented_control("Period", list(PERIODS), default="Month to date", key="overview_period")
    code = PERIODS.get(choice or "Month to date", "mtd")
    try:
        got = _answer(code)
    except Exception as exc:  # the counts below still render; the sentence says why no trend
        log.exception("overview bundle failed")
        st.warning(md(exc) if str(exc).endswith(".") else "The trend numbers could not be computed just now.")
        _fallback_cards(ctx)
        return
    bundle, query = got.bundle, got.bundle.query
    tz, start, end = query.tz, query.start, query.end
    cards = [(c.title, _value(c), _delta(c), c.definition, c.slug, _delta_color(c)) for c in getattr(bundle, "kpis", [])
             if ctx.can(Permission.VIEW_REVENUE_FIGURES) or c.unit != "money"]
    if "open_alerts" not in {c[4] for c in cards}:
        cards.append(("Open alerts", fmt.count(reads.open_alerts()), None,
                      "Alerts open or acknowledged, not yet resolved (snoozed ones are not counted).", "open_alerts",
                      "inverse"))
    per_row = 3  # three cards a row keeps long titles and values whole on a 1280-pixel screen
    for i in range(0, len(cards), per_row):
        for col, (title, value, delta, help_text, _slug, color) in zip(st.columns(per_row), cards[i:i + per_row],
                                                               strict=False):
            kpi(col, title, value, delta=delta, help_text=help_text, delta_color=color)
    compared = next((c.compared for c in getattr(bundle, "kpis", []) if getattr(c, "compared", "")
                     and c.slug != "member_churn_rate"), "")
    definition(f"{fmt.day(start)} to {fmt.day(end - timedelta(days=1))} in {tz} (so far); each change compares with "
               f"the same part of the previous period{f' ({compared})' if compared else ''}: month and year to date "
               "with the same days and hours of last month or year, the last 30 or 90 days with those just before "
               "(member churn: this month's rate against last month's whole). Numbers as of "
               f"{got.as_of.astimezone(zone(tz)):%H:%M} {tz}, updated every minute"
               + (f"; money in {query.currency}, {metrics_data.rates_text(query.settings)}"
                  if ctx.can(Permission.VIEW_REVENUE_FIGURES) and query.currency else "")
               + ". Hover a card for its definition.")
    status = getattr(bundle, "freshness", None)
    # Said only when it matters: the numbers come from the raw rows, or the rollups' background
    # refresh is more than a quarter of an hour behind (the rows since then are still counted).
    if status is not None and (not status.from_rollups or status.behind > timedelta(minutes=15)):
        st.caption(md(status.sentence(tz)))
