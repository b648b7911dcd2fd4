"""Plotly figures in one theme for the finance pages.

Guarantees:
- Every figure has the same fonts, colours, margins and hover style (``THEME``), sized for a
  1280-pixel laptop screen.
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

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import plotly.graph_objects as go

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

THEME: dict[str, Any] = {
    "font": {"family": FONT, "size": 13, "color": INK},
    "paper_bgcolor": "white",
    "plot_bgcolor": "white",
    "margin": {"l": 8, "r": 8, "t": 40, "b": 8},
    "hoverlabel": {"font": {"family": FONT, "size": 13}, "bgcolor": "white"},
    "legend": {"orientation": "h", "yanchor": "top", "y": -0.12, "xanchor": "left", "x": 0},
    "xaxis": {"showgrid": False, "linecolor": GRID, "tickfont": {"color": MUTED}},
    "yaxis": {"gridcolor": GRID, "zerolinecolor": GRID, "tickfont": {"color": MUTED}},
    "clickmode": "event+select",
    "dragmode": False,
}

MOVEMENT_LABELS = {
    "start": "Starting MRR",
    "new": "New",
    "expansion": "Expansion",
    "reactivation": "Reactivation",
    "contraction": "Contraction",
    "churn": "Churn",
    "transfer_in": "Transfer in",
    "transfer_out": "Transfer out",
    "fx": "Exchange rates",
    "rounding": "Rounding",
    "end": "Ending MRR",
}
# Axis labels broken over two lines so eight steps fit half a 1280-pixel screen unrotated.
MOVEMENT_TICKS = {"start": "Starting<br>MRR", "reactivation": "Reacti-<br>vation", "contraction": "Contrac-<br>tion",
                  "expansion": "Expan-<br>sion", "transfer_in": "Trans-<br>fer in", "transfer_out": "Trans-<br>fer out",
                  "fx": "Exchange<br>rates", "end": "Ending<br>MRR"}
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
        fig.update_layout(title={"text": title, "font": {"size": 15}, "x": 0, "xanchor": "left"})
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


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _group(points: Iterable[Point]) -> dict[str, list[Point]]:
    out: dict[str, list[Point]] = {}
    for p in points:
        out.setdefault(p.series, []).append(p)
    return out


def line(points: Sequence[Point], *, unit: str, currency: str | None = None, title: str | None = None,
         height: int = HEIGHT) -> go.Figure:
    """A line per series (one when ``series`` is empty), markers clickable."""
    fig = go.Figure()
    for i, (series, pts) in enumerate(_group(points).items()):
        done = [p for p in pts if not p.partial]
        fig.add_trace(go.Scatter(
            x=[as_text(p.label) for p in done], y=[to_float(p.value, unit, currency) for p in done],
            name=as_text(series) or (title or ""), mode="lines+markers",
            line={"color": _colour(i), "width": 2.5}, marker={"size": 8},
            customdata=[[p.key, label(p.value, unit, currency)] for p in done],
            hovertemplate="%{x}<br><b>%{customdata[1]}</b><extra>" + as_text(series) + "</extra>",
            showlegend=bool(series),
        ))
        so_far = [p for p in pts if p.partial]
        if so_far:
            # A period that has not ended is not comparable with whole ones: a dotted line to an open
            # marker, labelled "so far", instead of a solid dip.
            lead = done[-1:] if done else []
            xs = [as_text(p.label) for p in lead + so_far]
            fig.add_trace(go.Scatter(
                x=xs, y=[to_float(p.value, unit, currency) for p in lead + so_far],
                name=f"{as_text(series) or title or ''} (so far)", mode="lines+markers+text",
                line={"color": _colour(i), "width": 2, "dash": "dot"},
                marker={"size": [0] * len(lead) + [9] * len(so_far), "symbol": "circle-open", "color": _colour(i)},
                text=[""] * len(lead) + ["so far"] * len(so_far), textposition="top center",
                textfont={"color": _colour(i), "size": 11},
                customdata=[[p.key, label(p.value, unit, currency) + (" so far" if p.partial else "")]
                            for p in lead + so_far],
                hovertemplate="%{x}<br><b>%{customdata[1]}</b><extra>" + as_text(series) + "</extra>",
                showlegend=False,
            ))
    return value_axis(themed(fig, title=title, height=height), unit, currency)


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
        fig.update_yaxes(autorange="reversed")
    return value_axis(themed(fig, title=title, height=height), unit, currency, axis="x" if horizontal else "y")


def waterfall(start: int, movements: Mapping[str, int], end: int, *, currency: str, title: str | None = None,
              height: int = HEIGHT) -> go.Figure:
    """Starting MRR, the movements (losses drawn downwards), ending MRR.

    ``movements`` holds each movement as a positive amount in minor units; contraction and churn
    are subtracted. ``fx`` (the effect of different exchange rates between the months of a
    converted range) is drawn with its own sign. The figure draws what it is given: the identity is the registry's to keep.
    """
    keys = ["start", *[k for k in MOVEMENT_ORDER if k in movements], "end"]
    labels = [MOVEMENT_TICKS.get(k, MOVEMENT_LABELS[k]) for k in keys]
    signed: list[int] = [start]
    for k in keys[1:-1]:
        amount = int(movements[k])
        signed.append(-abs(amount) if k in NEGATIVE_MOVEMENTS else amount)
    signed.append(end)
    measure = ["absolute", *["relative"] * (len(keys) - 2), "total"]
    texts = [format_money(v, currency, signed=k not in ("start", "end")) for k, v in zip(keys, signed, strict=True)]
    fig = go.Figure(go.Waterfall(
        x=labels, measure=measure,
        # A "total" bar is drawn at the running sum; its own y is ignored by plotly.
        y=[to_float(v, "money", currency) for v in signed[:-1]] + [0.0],
        customdata=[[k, t] for k, t in zip(keys, texts, strict=True)],
        hovertemplate="<b>%{customdata[1]}</b><extra></extra>",
        increasing={"marker": {"color": POSITIVE}}, decreasing={"marker": {"color": NEGATIVE}},
        totals={"marker": {"color": TOTAL}}, connector={"line": {"color": GRID}},
        text=texts, textposition="outside", cliponaxis=False, textfont={"size": 11},
    ))
    fig.update_layout(showlegend=False)
    fig.update_xaxes(tickangle=0)
    return value_axis(themed(fig, title=title, height=height), "money", currency)


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
    fig = go.Figure(go.Heatmap(
        x=[as_text(c) for c in cols], y=[as_text(r) for r in rows], z=z, text=text, texttemplate="%{text}", textfont={"size": 11},
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
    fig.update_yaxes(autorange="reversed", type="category", showgrid=False)
    fig.update_xaxes(type="category", side="top")
    fig = themed(fig, title=title, height=height or max(HEIGHT, 90 + 28 * len(rows)))
    # The column labels sit on top: leave them room under the title instead of drawing over it.
    fig.update_layout(margin={"t": 72}, title={"y": 0.99, "yanchor": "top"})
    return fig


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
