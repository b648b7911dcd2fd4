"""Failed payments (support, manager, admin): first-attempt failure and recovery rates, decline
codes, card brands and countries, revenue at risk, the worklist of past-due members grouped by
decline code (each linked to its member page), and cards that expire before their renewal.

Support works the worklist from here: it sees the rates and the worklist's own amounts, but not
the revenue-at-risk total (a revenue figure, ``VIEW_REVENUE_FIGURES``).
Thin by rule: every number comes from the metrics registry through ``dashboard.metrics_data``.
"""

from __future__ import annotations

import streamlit as st

from core.permissions import Permission
from dashboard import analytics_ui as ui
from dashboard import charts
from dashboard import metrics_data as md
from dashboard.analytics_page import open_page
from dashboard.auth import guard

ctx = guard(Permission.VIEW_FAILED_PAYMENTS)
sees_revenue = ctx.can(Permission.VIEW_REVENUE_FIGURES)

eng, q, line, b = open_page("Failed payments", "failed_payments", computing="payment health", controls_key="failed",
                            with_money=sees_revenue)

F = md.FAILED
found = {role: md.find(b, slug) for role, slug in F.items()}
cards = [("failure_rate", "Failure rate (first attempt)"), ("recovery_rate", "Recovery rate")]
if sees_revenue:
    cards.append(("revenue_at_risk", "Revenue at risk (MRR)"))
for col, (role, title) in zip(st.columns(len(cards) + (1 if not sees_revenue else 0)), cards, strict=False):
    ui.card(col, found[role], F[role], title, line)

st.subheader("Past-due worklist")
st.caption("Members whose subscription is past due, grouped by the decline code of their latest failed attempt. "
           "Open the member page to retry the payment or contact the member.")
ui.worklist(md.table(b, "past_due"), key="failed_worklist", total=md.row_count(b, "past_due"),
            whole=lambda: md.whole_worklist(eng, q, "past_due"))

LATER: list = []  # drill tables of half-width charts, drawn below them
left, right = st.columns(2)
with left:
    st.subheader("First-attempt failure rate")
    res = found["failure_rate"]
    pts = ui.series_points(res, ui.slug_of(res, F["failure_rate"]), series="Failure rate", q=q)
    pts += ui.series_points(found["recovery_rate"], ui.slug_of(found["recovery_rate"], F["recovery_rate"]),
                            series="Recovery rate", q=q)
    if pts:
        clicked = ui.chart(charts.line(pts, unit="percent", title=f"Renewal payments, by {q.granularity}"),
                           key="failed_rate_chart")
        ui.caption_definition(res, F["failure_rate"])
        ui.caption_definition(found["recovery_rate"], F["recovery_rate"])
        ui.drill_picker(eng, q, ui.targets_from_points(pts, "Rate"), clicked, key="failed_rate", noun="payments", later=LATER)
    else:
        ui.missing(res, "The failure rate over time")
with right:
    st.subheader("Why payments fail")
    tabs = st.tabs(["Decline code", "Card brand", "Card country"])
    for tab, role, what in zip(tabs, ("decline_codes", "brands", "countries"),
                               ("decline code", "card brand", "card country"), strict=True):
        with tab:
            res = found[role]
            pts = ui.breakdown_points(res, ui.slug_of(res, F[role]), label_column="label")
            if pts:
                clicked = ui.chart(charts.bars(pts, unit=res.unit if res else "count", horizontal=True,
                                               title=f"Failed attempts by {what}"), key=f"failed_{role}_chart")
                ui.caption_definition(res, F[role])
                ui.drill_picker(eng, q, ui.targets_from_points(pts, what.capitalize()), clicked,
                                key=f"failed_{role}", noun="payments", later=LATER)
            else:
                ui.missing(res, f"Failures by {what}")

ui.draw_later(LATER)  # the drill tables of the two charts above, full width

st.subheader("Cards expiring before their renewal")
st.caption("Subscriptions whose default card expires before the next renewal date: ask the member to update it.")
ui.show_rows(md.table(b, "expiring_cards"), "cards expiring before renewal", key="failed_expiring_csv",
             total=md.row_count(b, "expiring_cards"), whole=lambda: md.whole_worklist(eng, q, "expiring_cards"),
             empty_sentence="No default card expires before its subscription renews.")
