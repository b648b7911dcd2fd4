"""Churn and retention (finance, manager, admin): member and MRR churn, voluntary against
involuntary, NRR and GRR, cohort retention heat maps (members and net MRR), trial conversion and
cancellation reasons.

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

ctx = guard(Permission.VIEW_CHURN)

eng, q, line, b = open_page("Churn and retention", "churn", computing="churn and retention")

C = md.CHURN
found = {role: md.find(b, slug) for role, slug in C.items()}
cards = [("member_churn", "Member churn"), ("voluntary", "Voluntary churn"), ("involuntary", "Involuntary churn"),
         ("trial_conversion", "Trial conversion"), ("gross_mrr_churn", "Gross MRR churn"),
         ("net_mrr_churn", "Net MRR churn"), ("nrr", "NRR"), ("grr", "GRR")]
for row in (cards[:4], cards[4:]):
    for col, (role, title) in zip(st.columns(4), row, strict=True):
        ui.card(col, found[role], C[role], title, line)

LATER: list = []  # drill tables of half-width charts, drawn below them
left, right = st.columns(2)
with left:
    st.subheader("Member churn")
    pts = [p for role, name in (("member_churn", "All"), ("voluntary", "Voluntary"), ("involuntary", "Involuntary"))
           for p in ui.series_points(found[role], ui.slug_of(found[role], C[role]), series=name, q=q)]
    if pts:
        clicked = ui.chart(charts.line(pts, unit="percent", title=f"Share of paying members lost, by {q.granularity}"),
                           key="churn_members_chart")
        ui.caption_definition(found["member_churn"], C["member_churn"])
        ui.drill_picker(eng, q, ui.targets_from_points(pts, "Churn"), clicked, key="churn_members", noun="members", later=LATER)
    else:
        ui.missing(found["member_churn"], "Member churn over time")
with right:
    st.subheader("MRR retention")
    pts = [p for role, name in (("gross_mrr_churn", "Gross MRR churn"), ("net_mrr_churn", "Net MRR churn"),
                                ("nrr", "NRR"), ("grr", "GRR"))
           for p in ui.series_points(found[role], ui.slug_of(found[role], C[role]), series=name, q=q)]
    if pts:
        clicked = ui.chart(charts.line(pts, unit="percent", title=f"MRR churn and retention, by {q.granularity}"),
                           key="churn_mrr_chart")
        ui.caption_definition(found["nrr"], C["nrr"])
        ui.drill_picker(eng, q, ui.targets_from_points(pts, "MRR"), clicked, key="churn_mrr", noun="members", later=LATER)
    else:
        ui.missing(found["nrr"], "MRR churn over time")

ui.draw_later(LATER)  # the drill tables of the two charts above, full width

st.subheader("Cohort retention")
st.caption("Cohort = month of a member's first paid month; a member who comes back stays in that cohort. "
           "Click a cell (or pick it below) to see the cohort's members.")
tab_members, tab_mrr = st.tabs(["Members retained", "Net MRR retained"])
for tab, role, what in ((tab_members, "cohort_members", "members"), (tab_mrr, "cohort_mrr", "net MRR")):
    with tab:
        grid = ui.cohort_grid(found[role], ui.slug_of(found[role], C[role]), q)
        if grid is not None:
            clicked = ui.chart(charts.heatmap(grid.rows, grid.cols, grid.cells, unit="percent", keys=grid.keys,
                                              partial=grid.partial,
                                              title=f"Share of each cohort's {what} at the end of month k"),
                               key=f"churn_{role}_chart")
            ui.caption_definition(found[role], C[role])
            if grid.partial:
                st.caption("Uncoloured cells in italics are the month in progress: so far, not yet comparable.")
            ui.drill_picker(eng, q, grid.targets, clicked, key=f"churn_{role}", noun="members")
        else:
            ui.missing(found[role], f"Cohort retention ({what})")

left, right = st.columns(2)
with left:
    st.subheader("Trial conversion")
    res = found["trial_conversion"]
    pts = ui.series_points(res, ui.slug_of(res, C["trial_conversion"]), q=q)
    if pts:
        clicked = ui.chart(charts.bars(pts, unit="percent", title="Trials ending in each period that converted"),
                           key="churn_trials_chart")
        ui.caption_definition(res, C["trial_conversion"])
        ui.drill_picker(eng, q, ui.targets_from_points(pts, "Trials"), clicked, key="churn_trials", noun="trials", later=LATER)
    else:
        ui.missing(res, "Trial conversion")
with right:
    st.subheader("Cancellation reasons")
    res = found["cancellation_reasons"]
    pts = ui.breakdown_points(res, ui.slug_of(res, C["cancellation_reasons"]), series_column="churn_kind")
    if pts:
        clicked = ui.chart(charts.bars(pts, unit=res.unit if res else "count", horizontal=True, stacked=True,
                                       title="Members lost, by reason"), key="churn_reasons_chart")
        ui.caption_definition(res, C["cancellation_reasons"])
        ui.drill_picker(eng, q, ui.targets_from_points(pts, "Reason"), clicked, key="churn_reasons", noun="members", later=LATER)
    else:
        ui.missing(res, "Cancellation reasons")
ui.draw_later(LATER)
