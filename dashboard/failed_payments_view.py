"""The Failed payments page (support, manager, admin): first-attempt failure and recovery rates,
decline codes, card brands and countries, revenue at risk, the worklist of past-due members grouped
by decline code (each linked to its member page), and cards that expire before their renewal.

Support works the worklist from here: it sees the rates and the worklist's own amounts, but not
the revenue-at-risk total (a revenue figure, ``VIEW_REVENUE_FIGURES``). Every number comes from
the metrics registry through ``dashboard.metrics_data``; this module only lays them out.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from core.metrics import MetricResult
from core.permissions import Permission
from dashboard import analytics_ui as ui
from dashboard import charts, render_cache
from dashboard import metrics_data as md
from dashboard.analytics_page import AnalyticsPage, open_page
from dashboard.auth import StaffContext

F = md.FAILED
WHY = (("decline_codes", "decline code"), ("brands", "card brand"), ("countries", "card country"))


def render(ctx: StaffContext) -> None:
    sees_revenue = ctx.can(Permission.VIEW_REVENUE_FIGURES)
    page = open_page("Failed payments", "failed_payments", computing="payment health", controls_key="failed",
                     with_money=sees_revenue)
    eng, q, b = page.engine, page.question, page.bundle
    found = {role: md.find(b, slug) for role, slug in F.items()}
    cards = [("failure_rate", "Failure rate (first attempt)"), ("recovery_rate", "Recovery rate")]
    if sees_revenue:
        cards.append(("revenue_at_risk", "Revenue at risk (MRR)"))
    for col, (role, title) in zip(st.columns(len(cards) + (1 if not sees_revenue else 0)), cards, strict=False):
        ui.card(col, found[role], F[role], title, page.settings_line)

    st.subheader("Past-due worklist")
    st.caption("Members whose subscription is past due, grouped by the decline code of their latest failed attempt. "
               "Open the member page to retry the payment or contact the member.")
    ui.worklist(md.table(b, "past_due"), key="failed_worklist", total=md.row_count(b, "past_due"),
                whole=lambda: md.whole_worklist(eng, q, "past_due"))

    later: list[Callable[[], None]] = []  # drill tables of half-width charts, drawn below them
    left, right = st.columns(2)
    with left:
        _rates(page, found, later)
    with right:
        st.subheader("Why payments fail")
        for tab, (role, what) in ui.open_tab(["Decline code", "Card brand", "Card country"], WHY, key="failed_why"):
            with tab:
                _why(page, found[role], role, what, later)
    ui.draw_later(later)  # the drill tables of the two charts above, full width

    st.subheader("Cards expiring before their renewal")
    st.caption("Subscriptions whose default card expires before the next renewal date: ask the member to update it.")
    ui.show_rows(md.table(b, "expiring_cards"), "cards expiring before renewal", key="failed_expiring_csv",
                 total=md.row_count(b, "expiring_cards"), whole=lambda: md.whole_worklist(eng, q, "expiring_cards"),
                 empty_sentence="No default card expires before its subscription renews.")


def _rates(page: AnalyticsPage, found: dict[str, MetricResult | None], later: list[Callable[[], None]]) -> None:
    st.subheader("First-attempt failure rate")
    q, res, rec = page.question, found["failure_rate"], found["recovery_rate"]
    pts = ui.series_points(res, ui.slug_of(res, F["failure_rate"]), series="Failure rate", q=q)
    pts += ui.series_points(rec, ui.slug_of(rec, F["recovery_rate"]), series="Recovery rate", q=q)
    if not pts:
        ui.missing(res, "The failure rate over time")
        return
    clicked = ui.chart(render_cache.figure(charts.line, pts, unit="percent", title=f"Renewal payments, by {q.granularity}"),
                       key="failed_rate_chart")
    ui.caption_definition(res, F["failure_rate"])
    ui.caption_definition(rec, F["recovery_rate"])
    ui.drill_picker(page.engine, q, ui.targets_from_points(pts, "Rate"), clicked, key="failed_rate", noun="payments",
                    later=later)


def _why(page: AnalyticsPage, res: MetricResult | None, role: str, what: str, later: list[Callable[[], None]]) -> None:
    pts = ui.breakdown_points(res, ui.slug_of(res, F[role]), label_column="label")
    if not pts:
        ui.missing(res, f"Failures by {what}")
        return
    clicked = ui.chart(render_cache.figure(charts.bars, pts, unit=res.unit if res else "count", horizontal=True,
                                   title=f"Failed attempts by {what}"), key=f"failed_{role}_chart")
    ui.caption_definition(res, F[role])
    ui.drill_picker(page.engine, page.question, ui.targets_from_points(pts, what.capitalize()), clicked,
                    key=f"failed_{role}", noun="payments", later=later)
