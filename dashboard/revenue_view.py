"""The Revenue page (finance, manager, admin): MRR and ARR over time, the MRR movements as a
waterfall, the cash chain, revenue by tier / interval / currency / country, ARPU and LTV.

Every number comes from the metrics registry through ``dashboard.metrics_data``; this module only
lays them out. Every chart point drills to its rows (click it, or pick it in the select box under
the chart), and every table exports to CSV.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import date
from typing import Any

import streamlit as st

from dashboard import analytics_ui as ui
from dashboard import charts, render_cache, widgets
from dashboard import metrics_data as md
from dashboard.analytics_page import AnalyticsPage, open_page

S = md.REVENUE
# Two rows of three: six cards in one row truncate money values on a 1280-pixel screen.
CARDS = ((("mrr", "MRR"), ("arr", "ARR"), ("paying_members", "Paying members")),
         (("arpu", "ARPU"), ("ltv", "LTV"), ("net_revenue", "Net revenue")))
CHAIN = (("MRR", "mrr"), ("Billed", "billed"), ("Collected", "gross_revenue"), ("Refunded", "refunds"),
         ("Disputed (lost)", "disputes_lost"), ("Net revenue", "net_revenue"), ("Stripe fees", "stripe_fees"))


def render() -> None:
    page = open_page("Revenue", "revenue", computing="revenue")
    b = page.bundle
    for row in CARDS:
        for col, (role, title) in zip(st.columns(3), row, strict=True):
            ui.card(col, md.find(b, S[role]), S[role], title, page.settings_line)
    ui.by_currency_table(b, [S[r] for r in ("mrr", "arr", "arpu", "net_revenue")], key="revenue_by_currency")

    later: list[Callable[[], None]] = []  # drill tables of half-width charts, drawn below them
    left, right = st.columns(2)
    with left:
        _mrr(page, later)
    with right:
        _movements(page, later)
    ui.draw_later(later)  # the drill tables of the two charts above, full width
    _cash(page)
    _segments(page)


def _mrr(page: AnalyticsPage, later: list[Callable[[], None]]) -> None:
    q = page.question
    st.subheader("MRR over time")
    which = st.radio("Show", ["MRR", "ARR"], horizontal=True, key="revenue_mrr_or_arr", label_visibility="collapsed")
    slug = S["arr"] if which == "ARR" else S["mrr"]
    shown = md.find(page.bundle, slug)
    pts = ui.series_points(shown, ui.slug_of(shown, slug), q=q)
    if not pts:
        ui.missing(shown, f"{which} over time")
        return
    clicked = ui.chart(render_cache.figure(charts.line, pts, unit="money", currency=q.currency,
                                   title=f"{which} at the end of each {q.granularity}"), key="revenue_mrr_chart")
    ui.caption_definition(shown, slug)
    ui.drill_picker(page.engine, q, ui.targets_from_points(pts, which), clicked, key="revenue_mrr",
                    noun="subscriptions", later=later)


def _movements(page: AnalyticsPage, later: list[Callable[[], None]]) -> None:
    q = page.question
    st.subheader("MRR movements")
    wf = ui.movements(page.bundle)
    if wf is None or q.currency is None:  # the waterfall is in one currency
        ui.missing(None, "The MRR movements")
        return
    # A click on a step's bar selects its entry in the picker below (the bars carry the entries' ids).
    clicked = ui.chart(render_cache.figure(charts.waterfall, wf.start, wf.amounts, wf.end, currency=q.currency,
                                        title=f"From {q.start:%Y-%m-%d} to {q.last_day:%Y-%m-%d}",
                                        drill_keys=tuple((t.key or "", t.id) for t in wf.targets)),
                       key="revenue_waterfall")
    ui.caption_definition(wf.result, wf.slug)
    # Four bars answered a click with nothing, and nothing said why.
    st.caption("The starting and ending MRR, exchange rates and rounding bars are not members' moves, so they "
               "have no rows behind them: every member's move is in one of the other bars.")
    ui.drill_picker(page.engine, q, wf.targets, clicked, key="revenue_movements", noun="members", later=later)


def _cash(page: AnalyticsPage) -> None:
    q, b = page.question, page.bundle
    st.subheader("From MRR to cash")
    cq = md.chain_question(q, b)
    chain = ui.chain(getattr(b, "chain", None) or b, [(label, S[role]) for label, role in CHAIN])
    if not chain:
        ui.missing(None, "The cash chain")
        return
    clicked = ui.chart(render_cache.figure(charts.bars, chain, unit="money", currency=q.currency, show_values=True,
                                   title=f"MRR → billed → collected → refunded → disputed → net revenue, "
                                         f"{cq.start:%Y-%m-%d} to {cq.last_day:%Y-%m-%d}"),
                       key="revenue_cash_chart")
    st.caption("One month beside one month's MRR: the range's last month (up to today). MRR is the recurring run "
               "rate at its end; billed is the invoices finalized in it; the other bars are amounts dated inside it: "
               "payments that succeeded (collected), refunds made, disputes lost, what is left (net revenue), and "
               "Stripe's fees where Stripe reported them."
               + _part_of_a_month(cq.start, cq.last_day))  # text-safe: constant words and two whole numbers
    ui.drill_picker(page.engine, cq, ui.targets_from_points(chain, "Cash"), clicked, key="revenue_cash", noun="rows")


def _part_of_a_month(first: date, last: date) -> str:
    """A sentence when the chain covers part of a month: MRR is a month's rate, the other bars that
    part's amounts, so early in a month billed and collected look alarmingly small beside MRR."""
    days, in_month = (last - first).days + 1, calendar.monthrange(first.year, first.month)[1]
    if days >= in_month:
        return ""
    return (f" These amounts cover {days:,} of the month's {in_month} days, while MRR is a whole month's rate: "
            "in a month not over, billed and collected stay below MRR.")


def _segments(page: AnalyticsPage) -> None:
    q = page.question
    st.subheader("Revenue by segment")
    st.caption("Gross and net revenue dated inside the range, by the tier, billing interval and country each payment "
               "was billed under (a later price change or move never refiles it), and by original currency. The "
               "segments add up to the totals above.")
    for tab, dim in ui.open_tab(["By tier", "By interval", "By currency", "By country"], md.SEGMENTS,
                                key="revenue_segments"):
        with tab:
            frame = md.table(page.bundle, f"revenue_by_{dim}")
            pts = ui.segment_points(frame, dim, [("gross", "Gross revenue", S["gross_revenue"]),
                                                 ("net", "Net revenue", S["net_revenue"])])
            if not pts:
                st.info(f"No revenue by {dim} in the chosen range and filters." if frame is not None  # text-safe: dim is ours
                        else f"Revenue by {dim} is not available from the metrics registry yet.")
                continue
            clicked = ui.chart(render_cache.figure(charts.bars, pts, unit="money", currency=q.currency, horizontal=dim == "country",
                                           title=f"Revenue by {dim}"), key=f"revenue_by_{dim}_chart")
            ui.drill_picker(page.engine, q, ui.targets_from_points(pts, f"By {dim}"), clicked, key=f"revenue_by_{dim}",
                            noun="payments")
            _segment_table(frame, dim, q.currency)


def _segment_table(frame: Any, dim: str, currency: str | None) -> None:
    """The bars' figures as a table and a CSV: "the segments add up to the totals above" could only
    be checked by hovering over each bar."""
    money = {m: f"{m}_minor" for m in ("gross", "refunds", "disputes_lost", "net")}
    rows = frame.rename(columns=money)
    if dim == "currency":
        rows = rows.rename(columns={"key": "original_currency"}) if currency else rows.drop(columns="key")
    else:
        rows = rows.rename(columns={"key": dim})
    if currency:
        rows = rows.assign(currency=currency)
    widgets.records(rows, f"revenue by {dim}", empty_sentence="", key=f"revenue_by_{dim}_csv")
