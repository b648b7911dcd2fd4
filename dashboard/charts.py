"""Plotly figures in one theme for the finance pages.

Guarantees:
- Every figure has the same fonts, colours, margins and hover style (``THEME``), sized for a
  1280-pixel laptop screen, and margins that already hold its labels and legend (``fit_margins``):
  plotly draws it once instead of growing its margins and drawing it again.
- A figure is drawn once in the browser, not twice (``finished``; shown with ``theme=None``).
- Money arrives in integer minor units with its currency; it becomes a float only here, at the
  last step, for the bar heights and line positions. Hover labels show the exact amount, formatted
  from the integer by ``core.money.format_money`` (never a rounded float).
- Category, series and cohort labels come from data (tier names are Stripe product names): they
  pass through ``dashboard.text.chart`` so plotly shows them as text, never as its HTML subset.
- Every point carries a drill key in ``customdata[0]``; ``selected_keys(event)`` turns a plotly
  selection event from ``st.plotly_chart(..., on_select="rerun")`` back into those keys, so a
  click on a bar, a waterfall step, a line point or a heat-map cell opens the rows behind it.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from core.labels import MOVEMENT as MOVEMENT_LABELS
from core.money import SYMBOLS, decimals, format_money, to_major
from dashboard.text import chart as as_text

FONT = "Inter, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
INK = "#1f2937"
MUTED = "#6b7280"
GRID = "#e5e7eb"
PRIMARY = "#4f46e5"  # the app's primaryColor in .streamlit/config.toml
POSITIVE = "#059669"
NEGATIVE = "#dc2626"
TOTAL = "#374151"
# Series colours in a fixed order so "premium" is the same colour on every chart of a page.
PALETTE = ("#4f46e5", "#0891b2", "#d97706", "#db2777", "#65a30d", "#7c3aed", "#0f766e", "#b45309")
HEAT_SCALE = [[0.0, "#fef2f2"], [0.5, "#a5b4fc"], [1.0, "#312e81"]]
HEIGHT = 340

# Streamlit's own chart look for this app's light theme (fonts, greys, paddings), which its
# ``theme="streamlit"`` used to put in each figure's template; here as plain layout, so a figure
# needs no template (see ``finished``), and then this app's choices on top.
_HEADING_FONT = '"Source Sans", sans-serif'
_LABEL = "#808495"
_TICK = "#e6eaf1"
THEME: dict[str, Any] = {
    "font": {"family": FONT, "size": 13, "color": INK},
    "colorway": ["#0068c9", "#83c9ff", "#ff2b2b", "#ffabab", "#29b09d", "#7defa1", "#ff8700", "#ffd16a", "#6d3fc0",
                 "#d5dae5"],
    "paper_bgcolor": "white",
    "plot_bgcolor": "white",
    "margin": {"l": 8, "r": 8, "t": 40, "b": 8, "pad": 8},
    "hoverlabel": {"font": {"family": FONT, "size": 13, "color": _LABEL}, "bgcolor": "white",
                   "bordercolor": "rgba(47, 45, 43, 0.2)"},
    "legend": {"orientation": "h", "yanchor": "top", "y": -0.12, "xanchor": "left", "x": 0, "valign": "top",
               "bordercolor": "rgba(0, 0, 0, 0)", "borderwidth": 0, "font": {"size": 12, "color": "#262730"},
               "title": {"font": {"size": 12, "color": _LABEL}, "side": "top"}},
    "xaxis": {"showgrid": False, "zeroline": False, "linecolor": GRID, "gridcolor": _TICK,
              "tickfont": {"color": MUTED, "size": 12}, "title": {"font": {"color": _LABEL, "size": 14}, "standoff": 20},
              "automargin": True},
    "yaxis": {"gridcolor": GRID, "zerolinecolor": GRID, "ticklabelposition": "outside",
              "tickfont": {"color": MUTED, "size": 12}, "title": {"font": {"color": _LABEL, "size": 14}, "standoff": 24},
              "automargin": True},
    # What Streamlit sets on a clickable chart once it is drawn, unless the figure says it (another
    # update of every chart): a drag pans, a hover shows the nearest point.
    "clickmode": "event+select",
    "dragmode": "pan",
    "hovermode": "closest",
}

# Stripe's order is not fixed; finance reads gains first, then losses.
MOVEMENT_ORDER = ("new", "expansion", "reactivation", "transfer_in", "contraction", "churn", "transfer_out", "rounding", "fx")
NEGATIVE_MOVEMENTS = frozenset({"contraction", "churn", "transfer_out"})


@dataclass(frozen=True, slots=True)
class Point:
    """One value to draw: its drill key, its label on the axis, and its exact value."""

    key: str
    label: str
    value: int | Decimal | float | None
    series: str = ""
    partial: bool = False  # a period that has not ended: drawn dotted or hatched, labelled "so far"


def to_float(value: int | Decimal | float | None, unit: str, currency: str | None = None) -> float | None:
    """The one place a number becomes a float: chart geometry only."""
    if value is None:
        return None
    if unit == "money":
        return float(to_major(int(value), currency or "USD"))
    if unit == "percent":
        return float(Decimal(str(value)) * 100)
    return float(value)


def label(value: int | Decimal | float | None, unit: str, currency: str | None = None) -> str:
    """Exact text for hover labels."""
    if value is None:
        return "n/a"
    if unit == "money":
        return format_money(int(value), currency or "USD")
    if unit == "percent":
        pct = Decimal(str(value)) * 100
        return f"{pct:.1f}%"
    return f"{int(value):,}" if Decimal(str(value)) == Decimal(int(value)) else f"{value:,.2f}"


def themed(fig: go.Figure, *, title: str | None = None, height: int = HEIGHT) -> go.Figure:
    fig.update_layout(**THEME, height=height)
    if title:
        fig.update_layout(title={"text": title, "x": 0, "xanchor": "left", "pad": {"l": 4},
                                 "font": {"family": _HEADING_FONT, "size": 15, "color": "#2F2D2B", "weight": "bold"}})
    return fig


def finished(fig: go.Figure) -> go.Figure:
    """``fig`` made to be drawn once in the browser: shown with ``st.plotly_chart(theme=None)``.

    Once a chart is on the page, Streamlit's frontend applies its settings again to a copy of the
    figure (new arrays, a rebuilt theme template) and hands plotly the copy. Plotly compares data
    arrays and the template by identity, so it drew every chart a second time from scratch: an
    analytics page's charts cost the browser twice (Churn and retention: about 250 ms more on a
    2-core machine). Here the figure has no template (``THEME`` says every style; Streamlit's theme
    would build one) and a ``datarevision`` that is a digest of the figure, which tells plotly that
    the copy's arrays hold the same data, and that a figure drawn from other numbers does not."""
    fig.layout.pop("template", None)
    fig.layout.datarevision = None
    digest = hashlib.blake2b(pio.to_json(fig, validate=False).encode(), digest_size=8).hexdigest()
    fig.layout.datarevision = digest
    return fig


def value_axis(fig: go.Figure, unit: str, currency: str | None = None, axis: str = "y") -> go.Figure:
    """Money axes show the currency symbol and whole units; percent axes a % suffix."""
    update = fig.update_yaxes if axis == "y" else fig.update_xaxes
    if unit == "money":
        code = currency or "USD"
        symbol = SYMBOLS.get(code)
        update(tickprefix=symbol or "", ticksuffix="" if symbol else f" {code}", tickformat=",.0f",
               separatethousands=True)
    elif unit == "percent":
        update(ticksuffix="%", tickformat=",.1f")
    else:
        update(tickformat=",d")
    return fig


# Label sizes for fit_margins, measured on the drawn charts (Streamlit's chart font, 12 px tick
# labels) and rounded up: a character of a number and of a word, the room beside a label, a line
# of labels below the plot, a legend row, what a legend adds besides its rows, a legend entry's
# symbol with its padding.
WIDE_PX = 7.0  # digits, capitals, symbols
NARROW_PX = 5.8  # lower-case letters, spaces, punctuation
LABEL_PAD_PX = 26
LINE_PX = 18
BELOW_PX = 24
LEGEND_ROW_PX = 19
LEGEND_BOX_PX = 28
LEGEND_ENTRY_PX = 44
HALF_WIDTH_PX = 400  # a chart in half a 1280-pixel screen; its legend wraps at the plot's width (a
# full-width chart's legend needs fewer rows than estimated: a little room is left unused)
LEGEND_GAP = 0.12  # THEME's legend sits this share of the plot's height below it
DATE_RIGHT_PX = 32  # the last label of a date axis, or of a row of tilted labels, likewise
DATE_TWO_LINES_DAYS = 150  # a shorter span of periods gets day or week ticks, with a line for the year
FULL_WIDTH_PX = 1180  # a chart across a 1280-pixel screen's page
ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
RIGHT_PX = 20  # at least: a bar's value or a label may reach a little past the plot


def _label_px(text: str) -> float:
    """The width of the widest line of a label (lines split at "<br>", markup and entities as shown)."""
    lines = (html.unescape(re.sub(r"<[^>]+>", "", line)) for line in text.split("<br>"))
    return max((sum(NARROW_PX if c.islower() or c in " .,;:-'()/" else WIDE_PX for c in line) for line in lines),
               default=0)


def _iso_day(label: str) -> date | None:
    """The day a period label names ("2026-11-30"), or None (any other label, "2026-13-45" too)."""
    if not ISO_DAY.fullmatch(label):
        return None
    try:
        return date.fromisoformat(label)
    except ValueError:
        return None


def _value_label(value: float, unit: str, currency: str | None) -> str:
    """The widest tick label plotly is likely to write on a value axis reaching ``value``: the next
    round number above it, as ``value_axis`` formats it."""
    top = abs(value) * 1.25 + 1
    sign = "-" if value < 0 else ""
    if unit == "money":
        code = currency or "USD"
        symbol = SYMBOLS.get(code)
        return f"{sign}{symbol or ''}{top:,.0f}{'' if symbol else ' ' + code}"
    if unit == "percent":
        return f"{sign}{top:,.1f}%"
    return f"{sign}{top:,.0f}"


def fit_margins(fig: go.Figure, *, value_axis_on: str | None, unit: str, currency: str | None = None) -> go.Figure:
    """Margins that already hold the axis labels and the legend.

    Streamlit's chart theme turns plotly's ``automargin`` on: when a label or the legend does not
    fit the figure's margins, plotly grows them and draws the whole chart a second time. With
    THEME's 8-pixel margins every chart was drawn twice, about half of a chart's cost in the
    browser. These margins are an upper estimate from the labels themselves; a label longer than
    estimated (or tick labels plotly tilts to fit) still gets its room, at the cost of that second
    drawing, and a shorter one leaves a few pixels unused. ``value_axis_on``: "x", "y" or None (a
    grid with categories on both axes)."""
    layout = fig.layout
    numbers: list[float] = []
    categories_x: list[str] = []
    categories_y: list[str] = []
    for trace in fig.data:
        for axis, cats in (("x", categories_x), ("y", categories_y)):
            drawn = getattr(trace, axis, None)
            if drawn is None:
                continue
            if axis == value_axis_on:
                numbers += [float(v) for v in drawn if isinstance(v, int | float)]
            else:
                cats += [str(v) for v in drawn if v is not None]
    margin = dict(layout.margin.to_plotly_json())
    value_labels = [_value_label(v, unit, currency) for v in (max(numbers, default=0), min(numbers, default=0))]
    left = [_label_px(t) for t in (value_labels if value_axis_on == "y" else categories_y)]
    margin["l"] = max(margin.get("l") or 0, round(max(left, default=0)) + LABEL_PAD_PX)
    # A horizontal value axis's last tick label is centred on the plot's right edge.
    right = max((_label_px(t) for t in value_labels), default=0) / 2 + 4 if value_axis_on == "x" else 0
    margin["r"] = max(margin.get("r") or 0, RIGHT_PX, round(right))
    if layout.xaxis.side != "top":  # a grid's column labels sit above it, in its top margin
        ticks_x = value_labels if value_axis_on == "x" else categories_x
        lines = max((t.count("<br>") + 1 for t in ticks_x), default=1)
        bottom = lines * LINE_PX + BELOW_PX
        days = sorted(d for d in map(_iso_day, ticks_x) if d is not None)
        if days and len(days) == len(ticks_x):
            # Periods: plotly makes it a date axis and picks its own ticks. Over a few months they
            # are days or weeks, the first with its year on a second line; the last label can
            # reach past the plot.
            if (days[-1] - days[0]).days <= DATE_TWO_LINES_DAYS:
                bottom = 2 * LINE_PX + BELOW_PX
            margin["r"] = max(margin["r"], DATE_RIGHT_PX)
        elif layout.xaxis.tickangle is None:
            widest = max((_label_px(t) for t in ticks_x), default=0)
            if len(set(ticks_x)) * (widest + 8) > FULL_WIDTH_PX - margin["l"] - margin["r"]:
                # Too many to stand side by side: plotly tilts them, deeper, the last reaching right.
                bottom = max(bottom, round(widest / 2 + LINE_PX + BELOW_PX))
                margin["r"] = max(margin["r"], DATE_RIGHT_PX)
        shown = [t for t in fig.data if t.showlegend] if layout.showlegend is not False else []
        if len(shown) > 1 or any(t.showlegend is True for t in shown):
            rows, width = 1, 0.0
            for t in shown:
                entry = LEGEND_ENTRY_PX + _label_px(t.name or "")
                if width and width + entry > HALF_WIDTH_PX - margin["l"] - margin["r"]:
                    rows, width = rows + 1, 0.0
                width += entry
            # The legend's top is LEGEND_GAP of the plot's height below the plot; solve for b.
            plot = (layout.height or HEIGHT) - (margin.get("t") or 0)
            bottom = max(bottom, round((LEGEND_GAP * plot + rows * LEGEND_ROW_PX + LEGEND_BOX_PX) / (1 + LEGEND_GAP)))
        margin["b"] = max(margin.get("b") or 0, bottom)
    fig.update_layout(margin=margin)
    return fig


def _top_down(fig: go.Figure, categories: Sequence[str]) -> go.Figure:
    """Rows of categories read from the top, first to last: a category axis with its range given
    upside down, where plotly's own autorange would give it the other way up.

    Not ``autorange="reversed"``: plotly writes it back into the figure as ``autorange=True`` with
    the range it found, so when Streamlit hands plotly its copy of the figure (see ``finished``)
    the setting reads as changed and plotly computes and draws the whole chart again: 25 ms more
    for the cohort heat map and 7-9 ms for the cancellation reasons and the MRR waterfall,
    measured in Chromium on a 2-core machine (2-3 ms with the range given). Same picture, pixel
    for pixel."""
    fig.update_yaxes(type="category", autorange=False, range=[len(categories) - 0.5, -0.5])
    return fig


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _group(points: Iterable[Point]) -> dict[str, list[Point]]:
    out: dict[str, list[Point]] = {}
    for p in points:
        out.setdefault(p.series, []).append(p)
    return out


def _beside_the_line(ys: Sequence[float | None]) -> str:
    """Where "so far" goes at the last point so that the dotted line into it does not cross it:
    above and to the left when the line climbs to it (or is flat), below and to the left when it
    falls to it. Centred above, the label sat on a line coming down from the left."""
    if len(ys) < 2 or ys[-1] is None or ys[-2] is None:
        return "top center"
    return "bottom left" if ys[-2] > ys[-1] else "top left"


def line(points: Sequence[Point], *, unit: str, currency: str | None = None, title: str | None = None,
         height: int = HEIGHT) -> go.Figure:
    """A line per series (one when ``series`` is empty), markers clickable."""
    fig = go.Figure()
    # Each period not ended is labelled "so far" once, above its highest point: early in a month
    # every series is near zero there, and one label per series wrote them over one another.
    highest: dict[str, Point] = {}
    for p in points:
        if p.partial and p.value is not None and (
                p.label not in highest or float(p.value) > float(highest[p.label].value or 0)):
            highest[p.label] = p
    for i, (series, pts) in enumerate(_group(points).items()):
        done = [p for p in pts if not p.partial]
        group = f"series{i}"  # a click on the legend hides a series' solid and dotted parts together
        if done:
            fig.add_trace(go.Scatter(
                x=[as_text(p.label) for p in done], y=[to_float(p.value, unit, currency) for p in done],
                name=as_text(series) or (title or ""), mode="lines+markers",
                line={"color": _colour(i), "width": 2.5}, marker={"size": 8},
                customdata=[[p.key, label(p.value, unit, currency)] for p in done],
                hovertemplate="%{x}<br><b>%{customdata[1]}</b><extra>" + as_text(series) + "</extra>",
                showlegend=bool(series), legendgroup=group,
            ))
        so_far = [p for p in pts if p.partial]
        if so_far:
            # A period that has not ended is not comparable with whole ones: a dotted line to an open
            # marker, labelled "so far", instead of a solid dip.
            lead = done[-1:] if done else []
            xs = [as_text(p.label) for p in lead + so_far]
            ys = [to_float(p.value, unit, currency) for p in lead + so_far]
            fig.add_trace(go.Scatter(
                x=xs, y=ys,
                name=f"{as_text(series) or title or ''} (so far)", mode="lines+markers+text",
                line={"color": _colour(i), "width": 2, "dash": "dot"},
                marker={"size": [0] * len(lead) + [9] * len(so_far), "symbol": "circle-open", "color": _colour(i)},
                text=[""] * len(lead) + ["so far" if highest.get(p.label) is p else "" for p in so_far],
                textposition=_beside_the_line(ys),
                textfont={"color": _colour(i), "size": 11},
                customdata=[[p.key, label(p.value, unit, currency) + (" so far" if p.partial else "")]
                            for p in lead + so_far],
                hovertemplate="%{x}<br><b>%{customdata[1]}</b><extra>" + as_text(series) + "</extra>",
                # In a range of one period there is no solid part: the dotted one names the series.
                showlegend=bool(series) and not done, legendgroup=group,
            ))
    _period_hover(fig, points)
    if len({p.label for p in points}) == 1:
        # One period (a range inside this month): plotly took its date for a time axis of a few
        # milliseconds ("23:59:59.999") and ranged the values a cent around it ("$23,866" four
        # times). One category, and values from zero.
        fig.update_xaxes(type="category")
        fig.update_yaxes(rangemode="tozero")
    return finished(fit_margins(value_axis(themed(fig, title=title, height=height), unit, currency), value_axis_on="y",
                                unit=unit, currency=currency))


def _period_hover(fig: go.Figure, points: Sequence[Point]) -> None:
    """The hover named a month's point by its first day ("Nov 1, 2026" for MRR at the end of
    November): on a time axis, months by their name, days and weeks as every table writes a day."""
    labels = {as_text(p.label) for p in points}
    if len(labels) > 1 and all(_iso_day(x) for x in labels):
        months = all(x.endswith("-01") for x in labels)
        fig.update_xaxes(hoverformat="%b %Y" if months else "%Y-%m-%d")


def bars(points: Sequence[Point], *, unit: str, currency: str | None = None, title: str | None = None,
         horizontal: bool = False, stacked: bool = False, height: int = HEIGHT,
         show_values: bool = False) -> go.Figure:
    """Bars per category (grouped or stacked by series); ``show_values`` writes each bar's value on it."""
    fig = go.Figure()
    for i, (series, pts) in enumerate(_group(points).items()):
        cats = [as_text(p.label) for p in pts]
        vals = [to_float(p.value, unit, currency) for p in pts]
        fig.add_trace(go.Bar(
            x=vals if horizontal else cats, y=cats if horizontal else vals,
            orientation="h" if horizontal else "v", name=as_text(series) or (title or ""),
            # A period that has not ended is hatched (and its label says "so far").
            marker={"color": _colour(i), "pattern": {"shape": ["/" if p.partial else "" for p in pts]}},
            customdata=[[p.key, label(p.value, unit, currency)] for p in pts],
            hovertemplate=("%{y}" if horizontal else "%{x}") + "<br><b>%{customdata[1]}</b><extra>"
            + as_text(series) + "</extra>",
            showlegend=bool(series),
            **({"text": [label(p.value, unit, currency) for p in pts], "textposition": "outside",
                "cliponaxis": False} if show_values else {}),
        ))
    fig.update_layout(barmode="stack" if stacked else "group")
    if horizontal:
        _top_down(fig, list(dict.fromkeys(as_text(p.label) for p in points)))
    elif len({p.label for p in points}) == 1:
        fig.update_xaxes(type="category")  # one period: a bar of its own width, not a time axis
    else:
        _period_hover(fig, points)
    axis = "x" if horizontal else "y"
    return finished(fit_margins(value_axis(themed(fig, title=title, height=height), unit, currency, axis=axis),
                                value_axis_on=axis, unit=unit, currency=currency))


def waterfall(start: int, movements: Mapping[str, int], end: int, *, currency: str, title: str | None = None,
              height: int = HEIGHT, drill_keys: Sequence[tuple[str, str]] = ()) -> go.Figure:
    """Starting MRR, the movements (losses drawn leftwards), ending MRR, from top to bottom.

    ``movements`` holds each movement as a positive amount in minor units; contraction and churn
    are subtracted. ``fx`` (the effect of different exchange rates between the months of a
    converted range) is drawn with its own sign. The figure draws what it is given: the identity is the registry's to keep.
    ``drill_keys``: (movement, drill key) pairs; a click on that step's bar selects that key.

    Drawn sideways, a row a step, each row labelled with its name and amount: the chart sits in a
    third of the page, and eleven steps side by side left each about 30 pixels, where "Exchange
    rates", "Rounding" and "Churn" ran into one another and so did the amounts above the bars; an
    amount written past a bar's end was cut off at the plot's edge.
    """
    keys = ["start", *[k for k in MOVEMENT_ORDER if k in movements], "end"]
    signed: list[int] = [start]
    for k in keys[1:-1]:
        amount = int(movements[k])
        signed.append(-abs(amount) if k in NEGATIVE_MOVEMENTS else amount)
    signed.append(end)
    measure = ["absolute", *["relative"] * (len(keys) - 2), "total"]
    texts = [format_money(v, currency, signed=k not in ("start", "end")) for k, v in zip(keys, signed, strict=True)]
    labels = [f"{MOVEMENT_LABELS[k]}  {t}" for k, t in zip(keys, texts, strict=True)]
    drill = dict(drill_keys)
    fig = go.Figure(go.Waterfall(
        orientation="h", y=labels, measure=measure,
        # A "total" bar is drawn at the running sum; its own x is ignored by plotly.
        x=[to_float(v, "money", currency) for v in signed[:-1]] + [0.0],
        customdata=[[drill.get(k, k), t] for k, t in zip(keys, texts, strict=True)],
        hovertemplate="<b>%{customdata[1]}</b><extra></extra>",
        increasing={"marker": {"color": POSITIVE}}, decreasing={"marker": {"color": NEGATIVE}},
        totals={"marker": {"color": TOTAL}}, connector={"line": {"color": GRID}},
    ))
    fig.update_layout(showlegend=False)
    _top_down(fig, labels)  # the steps read from the top
    fig.update_yaxes(showgrid=False)
    value_axis(themed(fig, title=title, height=height), "money", currency, axis="x")
    # The named rows leave the bars about 200 pixels: a few short ticks ("$20k"; each row says its
    # exact amount), never tilted (tilted, they grew the bottom margin and plotly drew it twice).
    fig.update_xaxes(showgrid=True, tickformat="~s", nticks=5, tickangle=0)
    return finished(fit_margins(fig, value_axis_on="x", unit="money", currency=currency))


def heatmap(rows: Sequence[str], cols: Sequence[str], cells: Mapping[tuple[str, str], int | Decimal | float | None],
            *, unit: str = "percent", currency: str | None = None, title: str | None = None,
            keys: Mapping[tuple[str, str], str] | None = None, height: int | None = None,
            partial: Collection[tuple[str, str]] = ()) -> go.Figure:
    """A cohort-style grid: ``cells[(row, col)]`` -> value (missing cells stay blank). Cells in
    ``partial`` (a month not ended yet) are left uncoloured, in italics, "so far" on hover (the page's
    caption says so).

    An invisible marker sits on every filled cell so a click selects it (heat-map traces are not
    selectable in plotly); its ``customdata[0]`` is the drill key.
    """
    z = [[None if (r, c) in partial else to_float(cells.get((r, c)), unit, currency) for c in cols] for r in rows]
    text = [[(f"<i>{label(cells[(r, c)], unit, currency)}</i>" if (r, c) in partial
              else label(cells[(r, c)], unit, currency)) if cells.get((r, c)) is not None else "" for c in cols]
            for r in rows]
    # The first row on top: listed bottom-up, as a category axis places them (not
    # ``autorange="reversed"``: see ``_top_down``; an explicit range would drop the room the click
    # targets' markers add around the grid).
    fig = go.Figure(go.Heatmap(
        x=[as_text(c) for c in cols], y=[as_text(r) for r in reversed(rows)], z=z[::-1], text=text[::-1],
        texttemplate="%{text}", textfont={"size": 11},
        colorscale=HEAT_SCALE, showscale=False, hoverinfo="skip", xgap=2, ygap=2,
    ))
    filled = [(r, c) for r in rows for c in cols if cells.get((r, c)) is not None]
    fig.add_trace(go.Scatter(
        x=[as_text(c) for _, c in filled], y=[as_text(r) for r, _ in filled], mode="markers",
        marker={"size": 22, "color": "rgba(0,0,0,0)", "symbol": "square"},
        customdata=[[(keys or {}).get(rc, f"{rc[0]}|{rc[1]}"),
                     label(cells[rc], unit, currency) + (" so far (the month has not ended)" if rc in partial else "")]
                    for rc in filled],
        hovertemplate="%{y} · %{x}<br><b>%{customdata[1]}</b><extra></extra>", showlegend=False,
    ))
    # A category axis has tick marks: in the light grey of the grid, as Streamlit's theme drew them.
    fig.update_yaxes(type="category", showgrid=False, tickcolor=_TICK)
    fig.update_xaxes(type="category", side="top", tickcolor=_TICK)
    fig = themed(fig, title=title, height=height or max(HEIGHT, 90 + 28 * len(rows)))
    # The column labels sit on top: leave them room under the title instead of drawing over it.
    fig.update_layout(margin={"t": 72}, title={"y": 0.99, "yanchor": "top"})
    return finished(fit_margins(fig, value_axis_on=None, unit=unit, currency=currency))


def selected_keys(event: Any) -> list[str]:
    """Drill keys of the points a person clicked or box-selected, in order, without repeats."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError, IndexError):
        return []
    out: list[str] = []
    for point in points or []:
        data = point.get("customdata") if isinstance(point, Mapping) else None
        if isinstance(data, list | tuple) and data and isinstance(data[0], str) and data[0] not in out:
            out.append(data[0])
    return out


# The chart toolbar: keep download-as-PNG, drop the tools that fight with click-to-drill.
CONFIG: dict[str, Any] = {
    "displaylogo": False,
    "modeBarButtonsToRemove": ["lasso2d", "select2d", "zoom2d", "pan2d", "autoScale2d", "zoomIn2d", "zoomOut2d"],
}


def money_decimals(currency: str) -> int:
    return decimals(currency)
