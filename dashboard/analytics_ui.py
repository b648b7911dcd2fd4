"""Streamlit pieces the finance pages share: a number card with its definition, a chart whose
points drill to their rows, and the drill table with its CSV download.

Guarantees:
- A card shows the registry's value formatted by its unit kind, and on hover the metric's
  definition plus the settings that shaped it; a missing or undefined value is an em dash and a
  sentence, never an exception.
- Every drillable chart has a keyboard-friendly select box ("Show rows behind ...") under it;
  clicking a point on the chart selects the same entry, so mouse and keyboard reach the same rows.
- Every drill table goes through ``dashboard.widgets.table`` (CSV download, empty-state sentence).
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, TypeVar

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from sqlalchemy import Engine

from core.labels import CODE_COLUMNS, code_label
from core.metrics import MetricError, MetricResult
from dashboard import charts, metrics_data, render_cache
from dashboard import format as fmt
from dashboard.text import md
from dashboard.widgets import csv_download, empty

log = logging.getLogger(__name__)
NONE = "—"
@dataclass(frozen=True)
class DrillTarget:
    """One drillable thing: shown as ``label``, answered by ``drill(slug, period=, key=)`` on the
    page's question, narrowed to ``dim = value`` when set (one bar of a "by segment" chart)."""

    slug: str
    label: str
    period: date | None = None
    key: str | None = None
    dim: str | None = None
    value: str | None = None

    @property
    def id(self) -> str:
        narrowed = f"{self.dim}={self.value}" if self.dim else ""
        return f"{self.slug}|{self.period.isoformat() if self.period else ''}|{self.key or ''}|{narrowed}"

    @classmethod
    def parse(cls, ident: str, label: str) -> DrillTarget:
        slug, period, key, narrowed = (ident.split("|") + ["", "", ""])[:4]
        dim, _, value = narrowed.partition("=")
        return cls(slug, label, period=date.fromisoformat(period) if period else None, key=key or None,
                   dim=dim or None, value=value or None)


def value_text(result: MetricResult | None, currency: str | None = None) -> str:
    if result is None:
        return fmt.DASH
    if result.unit == "money":
        if result.value is None and result.by_currency and len(result.by_currency) == 1:
            (code, amount), = result.by_currency.items()
            return fmt.money(amount, code)
        return fmt.money(result.value, result.currency or currency)
    if result.unit == "percent":
        return fmt.percent(result.value)
    return fmt.count(result.value)


def help_text(result: MetricResult | None, slug: str, settings_line: str) -> str:
    definition = (result.definition if result is not None else "") or metrics_data.definition(slug)
    parts = [definition or "Not available from the metrics registry yet."]
    if result is not None and result.note:
        parts.append(result.note)
    parts.append(settings_line)
    return "\n\n".join(parts)


def card(column: Any, result: MetricResult | None, slug: str, title: str, settings_line: str) -> None:
    column.metric(md(title), value_text(result), help=help_text(result, slug, settings_line), border=True)


SO_FAR = " (so far)"


def unfinished(period: date | None, q: metrics_data.Question | None, granularity: str | None = None) -> bool:
    """True when the bucket starting at ``period`` has not ended at the question's ``now``."""
    if period is None or q is None:
        return False
    return _bucket_end(period, granularity or q.granularity, q.settings) > q.now_minute


@functools.lru_cache(maxsize=4096)
def _bucket_end(period: date, granularity: str, settings: tuple[tuple[str, Any], ...]) -> datetime:
    """The instant a bucket ends, kept: asked for every point and cohort cell on every run, it
    validated the business settings and converted a time zone each time (a tenth of a warm Churn run)."""
    from core.settings.business import BusinessSettings
    from core.timeutil import local_midnight, next_period_start, zone

    tz = zone(BusinessSettings(**dict(settings)).business_timezone)
    return local_midnight(next_period_start(period, granularity), tz)


def series_points(result: MetricResult | None, slug: str, *, series: str = "",
                  q: metrics_data.Question | None = None) -> list[charts.Point]:
    """One point per bucket; per original currency gives one series per currency. With ``q``, a
    bucket that has not ended yet is marked partial and labelled "so far"."""
    # The plain columns, not ``result.series``: that builds a DataFrame per result on every rerun
    # (the bundle comes out of the cache as columns) to read three columns: a tenth of a warm Churn run.
    cols = result.columns("series") if result is not None else None
    if not cols or not len(cols.get("period", ())):
        return []
    currencies = cols.get("currency")
    out = []
    for i, (period, value) in enumerate(zip(cols["period"], cols["value"], strict=True)):
        name = series or (str(currencies[i]) if currencies is not None else "")
        partial = unfinished(_as_date(period), q)
        # The axis keeps the bucket's date (a date axis drops anything else); the chart marks it.
        out.append(charts.Point(key=DrillTarget(slug, "", period=_as_date(period)).id,
                                label=_label(period),
                                value=None if pd.isna(value) else value, series=name, partial=partial))
    return out


def breakdown_points(result: MetricResult | None, slug: str, *, label_column: str = "key",
                     value_column: str = "value", series_column: str | None = None) -> list[charts.Point]:
    # The plain columns, not ``result.breakdown`` (a DataFrame built on every run; see series_points).
    frame = result.columns("breakdown") if result is not None else None
    if not frame or not len(frame.get("key", ())):
        return []
    col = label_column if label_column in frame else "key"
    series = ([code_label("unknown" if _blank(v) else str(v), series_column) for v in frame[series_column]]
              if series_column is not None and series_column in frame else [""] * len(frame["key"]))
    # Bars are labelled in words (core.labels), never with the stored code.
    return [charts.Point(key=DrillTarget(slug, "", key=str(k)).id,
                         label=code_label(lbl) if lbl is not None else "Unknown",
                         value=None if _blank(v) else v, series=sr)
            for k, lbl, v, sr in zip(frame["key"], frame[col], frame[value_column], series, strict=True)]


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT


def segment_points(frame: pd.DataFrame | None, dim: str, measures: Sequence[tuple[str, str, str]]) -> list[charts.Point]:
    """Bars of a ``revenue_by_<dim>`` table: one series per (column, series name, drill slug)."""
    if frame is None or frame.empty:
        return []
    out = []
    # A tier or an interval by its words ("Premium", "Monthly"), as the tables name it; the drill
    # keeps the stored code. "none": a payment billed without one.
    words = {str(k): "None" if str(k) == "none" else code_label(str(k), dim) if dim in CODE_COLUMNS else str(k)
             for k in frame["key"]}
    for column, name, slug in measures:
        for k, v in zip(frame["key"], frame[column], strict=True):
            out.append(charts.Point(key=DrillTarget(slug, "", dim=dim, value=str(k)).id, label=words[str(k)],
                                    value=None if pd.isna(v) else int(v), series=name))
    return out


def _as_date(value: Any) -> date | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp | datetime):  # a datetime is a date too: keep only its date
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _label(period: Any) -> str:
    d = _as_date(period)
    return d.isoformat() if d else str(period)


def targets_from_points(points: Sequence[charts.Point], title: str) -> list[DrillTarget]:
    out: list[DrillTarget] = []
    seen: set[str] = set()
    # Months by their name, as the chart's hover says ("Rate: 2026-01-01" read as one day).
    months = bool(points) and all(re.fullmatch(r"\d{4}-\d{2}-01", str(p.label)) for p in points)
    for p in points:
        if p.key in seen:
            continue
        seen.add(p.key)
        shown = date.fromisoformat(str(p.label)).strftime("%b %Y") if months else p.label
        label = f"{title}: {shown}" + (SO_FAR if p.partial else "") + (f" ({p.series})" if p.series else "")
        out.append(DrillTarget.parse(p.key, label))
    return out


T = TypeVar("T")


def open_tab(labels: Sequence[str], items: Sequence[T], key: str) -> list[tuple[Any, T]]:
    """Tabs that draw only the tab in view: ``[(tab, item)]`` for the open tab alone, to draw
    ``item`` in. Choosing another tab reruns the page (``on_change="rerun"``), tens of
    milliseconds on the server, instead of every visit drawing every tab's chart in the browser,
    hidden or not (a plotly chart is 50-200 ms of the browser's time on a 2-core machine). A hidden
    tab's drill picker is not drawn either, so its choice resets when the tab is opened again."""
    tabs = st.tabs(list(labels), key=key, on_change="rerun")  # text-safe: the callers pass constant labels
    return [(tab, item) for tab, item in zip(tabs, items, strict=True) if tab.open]


def chart(fig: go.Figure, key: str) -> list[str]:
    """Draw a clickable chart; return the drill ids of the selected points."""
    # theme=None: the figure carries its own (charts.THEME); see charts.finished.
    event = st.plotly_chart(fig, key=key, theme=None, on_select="rerun", selection_mode="points", config=charts.CONFIG,
                            width="stretch")
    return charts.selected_keys(event)


def drill_picker(engine: Engine, q: metrics_data.Question, targets: Sequence[DrillTarget], clicked: Sequence[str],
                 *, key: str, noun: str = "rows", later: list[Callable[[], None]] | None = None) -> None:
    """A select box of the chart's cells; the chosen cell's rows below it, with CSV download.
    ``later``: the picker sits in a half-width column; its rows are drawn when the caller runs
    ``draw_later(later)`` below the columns, at full width, so every money column shows."""
    if not targets:
        return
    ids = [NONE, *[t.id for t in targets]]
    by_id = {t.id: t for t in targets}
    box = f"{key}_drill"
    last = f"{key}_drill_click"
    click = next((c for c in clicked if c in by_id), None)
    if click and st.session_state.get(last) != click:
        st.session_state[box] = click  # a new click on the chart selects the same entry
    st.session_state[last] = click
    chosen = st.selectbox(f"Show {noun} behind …", ids, key=box,
                          format_func=lambda i: "— pick a point, or click one on the chart —" if i == NONE else by_id[i].label,
                          help="Opens the members, subscriptions or payments behind that point, with a CSV download.")
    if chosen in (None, NONE):
        return
    target = by_id[chosen]
    if later is not None:
        st.caption(f"The rows behind {md(target.label)} are below the charts.")
        later.append(lambda: _drill_rows(engine, q, target, key))
        return
    _drill_rows(engine, q, target, key)


def draw_later(later: list[Callable[[], None]]) -> None:
    """The drill tables of a row of half-width charts, each at full width, in order."""
    for draw in later:
        draw()
    later.clear()


def _drill_rows(engine: Engine, q: metrics_data.Question, target: DrillTarget, key: str) -> None:
    with st.spinner(f"Loading the rows behind {target.label} …"):
        try:
            asked = metrics_data.with_filter(q, target.dim, target.value) if target.dim and target.value else q
            rows = metrics_data.drill_rows(engine, asked, target.slug, target.period, target.key)
        except MetricError as exc:
            st.warning(md(exc))
            return
        except Exception:
            log.exception("drill failed for %s", target.id)
            st.error(f"The rows behind {md(target.label)} could not be loaded; try again, and tell an admin if it persists.")
            return
    rows = fmt.in_zone(rows, q.query().tz)  # the business time zone, as the buckets they sit under
    st.caption(f"{len(rows):,} row(s) behind {md(target.label)}"
               + (f" (the first {metrics_data.DRILL_LIMIT:,})" if len(rows) >= metrics_data.DRILL_LIMIT else ""))
    show_rows(rows, f"{target.label} rows", key=f"{key}_csv", empty_sentence=f"No rows sit behind {target.label}.")


def show_rows(rows: pd.DataFrame | None, name: str, *, key: str, empty_sentence: str,
              height: int | Literal["auto"] = "auto", total: int | None = None,
              whole: Callable[[], pd.DataFrame] | None = None) -> None:
    """A table in words (money formatted, member ids linked to the member page) with a CSV
    download of the same rows as the command line gives them (minor units beside the currency).
    ``total``/``whole``: the rows are the first ``len(rows)`` of ``total``; the download reads
    the whole list (``whole()``) when pressed."""
    if rows is None or rows.empty:
        empty(empty_sentence)
        return
    if total is not None and whole is not None and total > len(rows):
        st.caption(f"The first {len(rows):,} of {total:,} are listed; the download holds all {total:,}.")
        _table(rows, height)
        csv_download(lambda: fmt.export_frame(whole()), name, key=key, label=f"Download all {total:,} (CSV)")
        return
    _table(rows, height)
    csv_download(lambda: fmt.export_frame(rows), name, key=key)


def _table(rows: pd.DataFrame, height: int | Literal["auto"], *, shown: pd.DataFrame | None = None) -> None:
    """``rows`` in words (``shown``: already put in words by ``render_cache``)."""
    config: dict[str, Any] = {}
    if "member_id" in rows.columns:
        config["Member page"] = st.column_config.LinkColumn("Member page", display_text=r"members\?member=(\d+)",
                                                            help="Opens the member page")
    st.dataframe(render_cache.in_words(rows) if shown is None else shown, hide_index=True, width="stretch",
                 height=height, column_config=config or None)


def load_bundle(engine: Engine, q: metrics_data.Question, page: str) -> Any:
    """The page's numbers, or None after showing a sentence (never a traceback)."""
    try:
        return metrics_data.bundle(engine, q, page)
    except MetricError as exc:
        st.warning(md(exc))
    except Exception:
        log.exception("page bundle failed for %s", page)
        st.error("The numbers for this page could not be computed; try again in a minute, and tell an admin "
                 "if it keeps happening.")
    return None


def slug_of(result: MetricResult | None, fallback: str) -> str:
    return result.slug if result is not None else fallback


def caption_definition(result: MetricResult | None, slug: str) -> None:
    text = (result.definition if result is not None else "") or metrics_data.definition(slug)
    if text:
        st.caption(f"ℹ️ {md(text)}" + (f" {md(result.note)}" if result is not None and result.note else ""))


def missing(result: MetricResult | None, what: str) -> None:
    """The empty state of a chart: why there is nothing to draw, in one sentence."""
    if result is None:
        st.info(f"{md(what)} is not available from the metrics registry yet.")
    elif result.note:
        st.info(md(result.note))
    else:
        st.info(f"{md(what)}: no data in the chosen range and filters.")


def by_currency_table(b: Any, slugs: Sequence[str], *, key: str) -> None:
    """Money figures per original currency (unconverted), one row per currency. The table shows
    them formatted; its CSV holds the same table with each figure a plain number in major units
    beside its currency, like every other download (``fmt.export_frame``; a cell such as "¥5,226,720" is text
    to a spreadsheet: it cannot add it up)."""
    shown: dict[str, dict[str, str]] = {}
    plain: dict[str, dict[str, str]] = {}
    for slug in slugs:
        result = metrics_data.find(b, slug)
        if result is None or result.unit != "money" or not result.by_currency:
            continue
        name = metrics_data.title(result.slug)
        for code, amount in sorted(result.by_currency.items()):
            shown.setdefault(code, {"Currency": code})[name] = fmt.money(amount, code)
            plain.setdefault(code, {"Currency": code})[name] = fmt.plain_money(amount, code)
    if not shown:
        return
    with st.expander("The same figures in each original currency (unconverted)"):
        st.dataframe(pd.DataFrame(list(shown.values())), hide_index=True, width="stretch")
        # The same table, each figure a plain number ("5366.84"): "€5,366.84" is text to a spreadsheet.
        csv_download(pd.DataFrame(list(plain.values())).fillna(""), "figures by original currency", key=key)


@dataclass
class Movements:
    result: MetricResult | None
    slug: str
    start: int
    end: int
    amounts: dict[str, int]
    targets: list[DrillTarget]


def movements(b: Any) -> Movements | None:
    """Starting MRR, the five movements and ending MRR from the registry's movements metric
    (its breakdown has one row per ``key``), or from one metric per movement."""
    result = metrics_data.find(b, metrics_data.REVENUE["movements"])
    values: dict[str, int] = {}
    slug = result.slug if result is not None else ""
    frame = result.columns("breakdown") if result is not None else None  # (no DataFrame per run)
    if frame and "key" in frame:
        for k, v in zip(frame["key"], frame["value"], strict=True):
            if not _blank(v):
                values[str(k)] = int(v)
    slugs: dict[str, str] = {}
    for kind, one_slug in metrics_data.MOVEMENT_SLUGS.items():
        if kind in values and slug:
            slugs[kind] = slug
            continue
        one = metrics_data.find(b, one_slug)
        if one is not None and one.value is not None:
            values[kind], slugs[kind] = int(one.value), one.slug
    start = values.get("start", values.get("mrr_start"))
    end = values.get("end", values.get("mrr_end"))
    kinds = [k for k in charts.MOVEMENT_ORDER if k in values]
    if start is None or end is None or not kinds:
        return None
    # The exchange-rate effect and the conversion's rounding have no member rows behind them.
    targets = [DrillTarget(slugs.get(k, slug), f"Movement: {charts.MOVEMENT_LABELS[k]}", key=k)
               for k in kinds if k not in ("fx", "rounding")]
    return Movements(result, slug or slugs[kinds[0]], start, end, {k: values[k] for k in kinds}, targets)


def chain(b: Any, steps: Sequence[tuple[str, str]]) -> list[charts.Point]:
    """One bar per step whose metric the bundle carries (money, whole range)."""
    out = []
    for title, slug in steps:
        result = metrics_data.find(b, slug)
        if result is None:
            continue
        out.append(charts.Point(key=DrillTarget(result.slug, "").id, label=title, value=result.value))
    return out


@dataclass
class CohortGrid:
    rows: list[str]
    cols: list[str]
    cells: dict[tuple[str, str], Any]
    keys: dict[tuple[str, str], str]
    targets: list[DrillTarget]
    partial: set[tuple[str, str]] = field(default_factory=set)  # cells of a month not ended yet


COHORT_COLUMNS = ("cohort", "cohort_month", "period")
OFFSET_COLUMNS = ("k", "months_since", "age", "offset")


def cohort_grid(result: MetricResult | None, slug: str, q: metrics_data.Question | None = None) -> CohortGrid | None:
    """Rows = cohorts (first paid month), columns = months since (0, 1, 2 ...), from the
    registry's cohort breakdown (one row per cohort and month). With ``q``, cells of a calendar
    month that has not ended are listed in ``partial`` (drawn as "so far", not coloured)."""
    frame = result.columns("breakdown") if result is not None else None  # (no DataFrame per run)
    if not frame:
        return None
    cohort_col = next((c for c in COHORT_COLUMNS if c in frame), None)
    offset_col = next((c for c in OFFSET_COLUMNS if c in frame), None)
    if cohort_col is None or offset_col is None or not len(frame[cohort_col]):
        return None
    rows: list[str] = []
    cols: list[str] = []
    cells: dict[tuple[str, str], Any] = {}
    keys: dict[tuple[str, str], str] = {}
    targets: list[DrillTarget] = []
    partial: set[tuple[str, str]] = set()
    seen: set[str] = set()
    shares = frame["share"] if "share" in frame else frame["value"]
    months = frame["month"] if "month" in frame and offset_col != "month" else frame[cohort_col]
    for cohort, k, value, month in zip(frame[cohort_col], frame[offset_col], shares, months, strict=True):
        period = _as_date(cohort)
        r = f"{period:%Y-%m}" if period else str(cohort)
        c = f"M{int(k)}" if not _blank(k) else "?"
        if r not in rows:
            rows.append(r)
        if c not in cols:
            cols.append(c)
        cells[(r, c)] = None if _blank(value) else value
        if unfinished(_as_date(month), q, "month"):
            partial.add((r, c))
        # The registry's drill behind a cohort cell: the cohort's members paying at the end of that
        # calendar month (``key``: the cohort's first month).
        at = _as_date(month)
        target = DrillTarget(slug, f"Cohort {r}, paying at the end of {at:%Y-%m}" if at else f"Cohort {r}",
                             period=at, key=period.isoformat() if period else None)
        keys[(r, c)] = target.id
        if target.id not in seen:
            seen.add(target.id)
            targets.append(target)
    cols.sort(key=lambda c: int(c[1:]) if c[1:].isdigit() else 10**6)
    return CohortGrid(rows, cols, cells, keys, targets, partial)


WORKLIST_FIRST = ("member_id", "email", "amount_due_minor", "currency", "days_past_due", "decline_code", "next_retry_at",
                  "attempt_count", "beyond_grace", "tier", "interval", "country", "mrr_minor", "past_due_since")


def worklist(rows: pd.DataFrame | None, *, key: str, total: int | None = None,
             whole: Callable[[], pd.DataFrame] | None = None) -> None:
    """The past-due worklist, one expander per decline code (most members first), each with its
    member links and its own CSV; plus one CSV of the whole list. ``total``/``whole``: the rows
    are the longest past due of ``total``; the whole list is read when its download is pressed."""
    if rows is None:
        st.info("The past-due worklist is not available from the metrics registry yet.")
        return
    if rows.empty:
        st.success("No member is past due right now.")
        return
    # What an agent needs first, then the rest: readable without scrolling sideways at 1280 px.
    first = [c for c in WORKLIST_FIRST if c in rows.columns]
    rows = rows[first + [c for c in rows.columns if c not in first]]
    code_col = next((c for c in ("decline_code", "code", "failure_code") if c in rows.columns), None)
    if code_col is None:
        show_rows(rows, "past-due worklist", key=f"{key}_all", empty_sentence="No member is past due right now.")
        return
    partial = total is not None and whole is not None and total > len(rows)
    if partial:
        st.caption(f"The {len(rows):,} members longest past due of {total:,} are listed, by decline code; "
                   f"the download holds all {total:,}.")
    groups = render_cache.worklist_groups(rows, code_col)
    for i, (code, group, shown) in enumerate(groups):
        count = f"{len(group):,} of those listed" if partial else f"{len(group):,} member(s)"
        # Drawn only while open (opening one reruns the page, as the tabs do): each closed group's
        # table was sent and drawn on every visit, a dozen grids at a million members.
        group_box = st.expander(f"{md(code_label(code, code_col))} — {md(count)}", expanded=i == 0 or len(groups) <= 2,
                                key=f"{key}_open_{code}", on_change="rerun")
        if group_box.open:
            with group_box:
                _table(group, "auto", shown=shown)
                csv_download(functools.partial(fmt.export_frame, group), f"past-due {code}", key=f"{key}_{code}")
    if partial and whole is not None:  # (partial: whole is given)
        csv_download(lambda: fmt.export_frame(whole()), "past-due worklist", key=f"{key}_all",
                     label=f"Download the whole worklist: {total:,} (CSV)")
    else:
        csv_download(lambda: fmt.export_frame(rows), "past-due worklist", key=f"{key}_all",
                     label="Download the whole worklist (CSV)")


def freshness(b: Any, tz: str) -> None:
    """Where the page's numbers come from: the rollups (and when they were last refreshed, in the
    business time zone ``tz``) or the raw rows (when the rollups do not match the settings yet)."""
    status = getattr(b, "freshness", None)
    if status is not None:
        st.caption(md(status.sentence(tz)))
        return
    through = getattr(b, "data_through", None)
    if through is not None:
        st.caption(f"Numbers from the metric rollups refreshed {md(fmt.when_in(through, tz))}; the Stripe sync and "
                   "the demo loader refresh them as data arrives.")
    else:
        st.caption("Numbers computed from the raw rows (the metric rollups are being rebuilt for the current settings).")
