"""The Churn and retention page (finance, manager, admin): member and MRR churn, voluntary against
involuntary, NRR and GRR, cohort retention heat maps (members and net MRR), trial conversion and
cancellation reasons.

Every number comes from the metrics registry through ``dashboard.metrics_data``; this module only
lays them out. Every chart point drills to its rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import streamlit as st

from core.metrics import MetricResult
from dashboard import analytics_ui as ui
from dashboard import charts, render_cache
from dashboard import metrics_data as md
from dashboard.analytics_page import AnalyticsPage, open_page

C = md.CHURN
CARDS = (("member_churn", "Member churn"), ("voluntary", "Voluntary churn"), ("involuntary", "Involuntary churn"),
         ("trial_conversion", "Trial conversion"), ("gross_mrr_churn", "Gross MRR churn"),
         ("net_mrr_churn", "Net MRR churn"), ("nrr", "NRR"), ("grr", "GRR"))
MEMBER_LINES = (("member_churn", "All"), ("voluntary", "Voluntary"), ("involuntary", "Involuntary"))
MRR_CHURN_LINES = (("gross_mrr_churn", "Gross MRR churn"), ("net_mrr_churn", "Net MRR churn"))
RETENTION_LINES = (("nrr", "NRR"), ("grr", "GRR"))


def render() -> None:
    page = open_page("Churn and retention", "churn", computing="churn and retention")
    found = {role: md.find(page.bundle, slug) for role, slug in C.items()}
    for row in (CARDS[:4], CARDS[4:]):
        for col, (role, title) in zip(st.columns(4), row, strict=True):
            ui.card(col, found[role], C[role], title, page.settings_line)
    grain = page.question.granularity
    if grain != "month":
        # The same week read 0.1 % by day and 0.9 % by month, and nothing said which.
        st.caption(f"Churn and retention rates are per {grain}: over the range, the average {grain}'s rate "  # text-safe: day or week
                   f"(weighted by who was paying at each {grain}'s start). Choose Month for monthly rates.")

    later: list[Callable[[], None]] = []  # drill tables of half-width charts, drawn below them
    left, right = st.columns(2)
    with left:
        st.subheader("Member churn")
        _lines(page, found, MEMBER_LINES, shown_by="member_churn", key="churn_members", drill="Churn", later=later,
               title="Share of paying members lost", missing="Member churn over time")
    with right:
        st.subheader("MRR churn and retention")
        # Churn (a few per cent) and retention (near 100 %) on one axis laid the churn lines flat
        # along its floor; two tabs, drawn one at a time, keep the page at five charts.
        for tab, (lines, shown_by, key, drill, title) in ui.open_tab(
                ["MRR churn", "NRR and GRR"],
                [(MRR_CHURN_LINES, "gross_mrr_churn", "churn_mrr", "MRR", "Share of MRR lost"),
                 (RETENTION_LINES, "nrr", "churn_retention", "Retention", "Share of MRR kept")], key="churn_mrr_tabs"):
            with tab:
                _lines(page, found, lines, shown_by=shown_by, key=key, drill=drill, later=later, title=title,
                       missing="MRR churn and retention over time")
    ui.draw_later(later)  # the drill tables of the two charts above, full width

    _cohorts(page, found)

    left, right = st.columns(2)
    with left:
        _trials(page, found["trial_conversion"], later)
    with right:
        _reasons(page, found["cancellation_reasons"], later)
    ui.draw_later(later)


def _lines(page: AnalyticsPage, found: dict[str, MetricResult | None], lines: tuple[tuple[str, str], ...], *,
           shown_by: str, key: str, drill: str, later: list[Callable[[], None]], title: str, missing: str) -> None:
    """Several rates over time as one line chart, its definition, and the drill into its points."""
    q = page.question
    pts = [p for role, name in lines
           for p in ui.series_points(found[role], ui.slug_of(found[role], C[role]), series=name, q=q)]
    if not pts:
        ui.missing(found[shown_by], missing)
        return
    clicked = ui.chart(render_cache.figure(charts.line, pts, unit="percent", title=f"{title}, by {q.granularity}"), key=f"{key}_chart")
    ui.caption_definition(found[shown_by], C[shown_by])
    ui.drill_picker(page.engine, q, ui.targets_from_points(pts, drill), clicked, key=key, noun="members", later=later)


def _cohorts(page: AnalyticsPage, found: dict[str, MetricResult | None]) -> None:
    st.subheader("Cohort retention")
    st.caption("Cohort = month of a member's first paid month; a member who comes back stays in that cohort. "
               "Click a cell (or pick it below) to see the cohort's members.")
    for tab, (role, what) in ui.open_tab(["Members retained", "Net MRR retained"],
                                         [("cohort_members", "members"), ("cohort_mrr", "net MRR")], key="churn_cohorts"):
        with tab:
            grid = ui.cohort_grid(found[role], ui.slug_of(found[role], C[role]), page.question)
            if grid is None:
                ui.missing(found[role], f"Cohort retention ({what})")
                continue
            clicked = ui.chart(render_cache.figure(charts.heatmap, grid.rows, grid.cols, grid.cells, unit="percent", keys=grid.keys,
                                              partial=grid.partial,
                                              title=f"Share of each cohort's {what} at the end of month k"),
                               key=f"churn_{role}_chart")
            ui.caption_definition(found[role], C[role])
            if grid.partial:
                st.caption("Uncoloured cells in italics are the month in progress: so far, not yet comparable.")
            ui.drill_picker(page.engine, page.question, grid.targets, clicked, key=f"churn_{role}", noun="members")


def _trials(page: AnalyticsPage, res: MetricResult | None, later: list[Callable[[], None]]) -> None:
    st.subheader("Trial conversion")
    pts = ui.series_points(res, ui.slug_of(res, C["trial_conversion"]), q=page.question)
    if not pts:
        ui.missing(res, "Trial conversion")
        return
    clicked = ui.chart(render_cache.figure(charts.bars, pts, unit="percent", title="Trials ending in each period that converted"),
                       key="churn_trials_chart")
    ui.caption_definition(res, C["trial_conversion"])
    ui.drill_picker(page.engine, page.question, ui.targets_from_points(pts, "Trials"), clicked, key="churn_trials",
                    noun="trials", later=later)


def _reasons(page: AnalyticsPage, res: MetricResult | None, later: list[Callable[[], None]]) -> None:
    st.subheader("Cancellation reasons")
    pts = ui.breakdown_points(res, ui.slug_of(res, C["cancellation_reasons"]), series_column="churn_kind")
    if not pts:
        ui.missing(res, "Cancellation reasons")
        return
    clicked = ui.chart(render_cache.figure(charts.bars, pts, unit=res.unit if res else "count", horizontal=True, stacked=True,
                                   title="Members lost, by reason"), key="churn_reasons_chart")
    ui.caption_definition(res, C["cancellation_reasons"])
    # A reason's rows are every change counted under it, of either kind: the picker names the
    # reason alone ("Reason: Payment failed (Involuntary (payment))" named one of its bars).
    ui.drill_picker(page.engine, page.question, ui.targets_from_points([replace(p, series="") for p in pts], "Reason"),
                    clicked, key="churn_reasons", noun="members", later=later)
