"""The common top of the analytics pages (Revenue, Churn and retention, Failed payments): the
title, the controls, the settings line, the page's numbers and where they come from.

A page that cannot get its numbers has already shown a sentence and stops here, so the page
module below this call only lays numbers out.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import streamlit as st
from sqlalchemy import Engine

from dashboard import analytics_ui as ui
from dashboard import controls, text
from dashboard import metrics_data as md
from dashboard.db import engine


class AnalyticsPage(NamedTuple):
    engine: Engine
    question: md.Question
    settings_line: str
    bundle: Any


def open_page(title: str, page: str, *, computing: str, controls_key: str | None = None,
              with_money: bool = True) -> AnalyticsPage:
    """Draw the top of an analytics page and return what its sections need. ``page`` names the
    metrics bundle; ``controls_key`` (default ``page``) prefixes the controls' widget keys."""
    st.title(text.md(title))
    eng = engine()
    bs = md.settings(eng)
    today = md.today(bs)
    chosen = controls.render(controls_key or page, today=today, default_start=md.default_start(today), options=md.filter_options(),
                             reporting_currency=bs.reporting_currency, with_money=with_money)
    q = md.question(eng, chosen, bs)
    line = md.settings_line(bs, q)
    st.caption(text.md(line))
    if md.loaded_recently(q, page):
        b = ui.load_bundle(eng, q, page)
    else:
        with st.spinner(f"Computing {computing} …"):
            b = ui.load_bundle(eng, q, page)
    if b is None:
        st.stop()
    md.note_loaded(q, page)
    ui.freshness(b, bs.business_timezone)
    return AnalyticsPage(eng, q, line, b)
