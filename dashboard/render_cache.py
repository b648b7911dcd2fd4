"""What the analytics pages draw from their cached numbers, kept between script runs: plotly
figures and tables in words. (The numbers themselves are cached in ``dashboard.metrics_data``.)

A warm rerun (a click, a widget, coming back to the page) used to draw everything again from the
cached bundle although it comes out the same: building a figure with ``plotly.graph_objects``
validates every property on every update (about 15 ms a chart on this machine), and the Failed
payments page formats a dozen worklist tables (a drill table up to 10,000 rows). Together that was
most of an analytics page's CPU.

Guarantees:
- ``figure(draw, *args, **kwargs)`` returns the figure ``draw(*args, **kwargs)`` drew the last
  time it was given equal arguments, and draws it otherwise. Arguments are compared by value *and
  type* (``1``, ``1.0``, ``Decimal(1)`` and ``True`` are different keys: the hover text of an int
  and of a float may differ), points included, so a held figure is never one drawn from other
  numbers, labels or settings. An argument that is not plain data (numbers, text, dates, tuples,
  lists, mappings, sets, frozen dataclasses of those) draws afresh every time. At most
  ``FIGURES`` are kept (least recently used dropped first), shared by every session: a held figure
  is read only (``st.plotly_chart`` only reads it: ``to_dict`` copies). Not ``st.cache_resource``:
  its hasher walks the points field by field on every call (slower than a tuple key); not
  ``st.cache_data``: it pickles, and unpickling a figure validates it again.
- ``in_words(rows)`` and ``worklist_groups(rows, code_col)`` are ``st.cache_data`` per content:
  Streamlit keys a frame by a hash of its values, index, column names and dtypes. It samples the
  rows of a frame of ``HASHED_ROWS`` or more, so such a frame is formatted every run instead.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import format as fmt
from dashboard.metrics_data import TTL

FIGURES = 256  # figures of ~10-60 kB each: a few pages x questions x sessions' choices
HASHED_ROWS = 50_000  # Streamlit samples a longer frame's rows for its cache key
# Column headers the generic "words from snake_case" rule gets wrong.
RENAME = {"mrr_minor": "MRR", "mrr_start_minor": "MRR at start", "mrr_end_minor": "MRR at end",
          "amount_due_minor": "Amount due", "fee_minor": "Stripe fee", "next_retry_at": "Next retry (UTC)",
          "past_due_since": "Past due since (UTC)", "created_at": "Created (UTC)", "closed_at": "Closed (UTC)",
          "trial_end": "Trial end (UTC)", "trial_start": "Trial start (UTC)"}
_SCALARS = (str, int, float, Decimal, bool, date, datetime, type(None))
_lock = threading.Lock()
_held: OrderedDict[Any, go.Figure] = OrderedDict()


class _Unkeyable(Exception):
    """An argument that cannot be part of a key: draw afresh."""


def _frozen(value: Any) -> Any:
    if isinstance(value, _SCALARS):
        return (type(value).__name__, value)
    if isinstance(value, list | tuple):
        return ("seq", tuple(_frozen(v) for v in value))
    if isinstance(value, Mapping):
        return ("map", tuple((_frozen(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, set | frozenset):
        return ("set", frozenset(_frozen(v) for v in value))
    params = getattr(value, "__dataclass_params__", None)  # a dataclass's; frozen: it cannot change after keying
    if params is not None and params.frozen and not isinstance(value, type):
        return (type(value).__qualname__, tuple(_frozen(getattr(value, f.name)) for f in dataclasses.fields(value)))
    raise _Unkeyable(type(value).__name__)


def figure(draw: Callable[..., go.Figure], *args: Any, **kwargs: Any) -> go.Figure:
    """``draw(*args, **kwargs)``, drawn once per distinct arguments (see the module docstring)."""
    try:
        key = (draw.__module__, draw.__qualname__, _frozen(args), _frozen(sorted(kwargs.items())))
        hash(key)
    except (_Unkeyable, TypeError):
        return draw(*args, **kwargs)
    with _lock:
        fig = _held.get(key)
        if fig is not None:
            _held.move_to_end(key)
            return fig
    fig = draw(*args, **kwargs)  # outside the lock: two sessions may draw the same figure once each
    with _lock:
        _held[key] = fig
        while len(_held) > FIGURES:
            _held.popitem(last=False)
    return fig


def clear() -> None:
    with _lock:
        _held.clear()


def words(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` in words (``format.display_frame``), with a link to each row's member page."""
    shown = fmt.display_frame(rows, rename=RENAME)
    if "member_id" in rows.columns:
        shown.insert(0, "Member page", [f"members?member={m}" for m in rows["member_id"]])
    return shown


def in_words(rows: pd.DataFrame) -> pd.DataFrame:
    """``words(rows)``, kept per content."""
    return _words_kept(rows) if len(rows) < HASHED_ROWS else words(rows)


# A drill table is up to 10,000 rows (a few MB in words): fewer entries than the figures.
@st.cache_data(ttl=TTL, max_entries=64, show_spinner=False)
def _words_kept(rows: pd.DataFrame) -> pd.DataFrame:
    return words(rows)


def worklist_groups(rows: pd.DataFrame, code_col: str) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """The worklist's groups by ``code_col``, most members first: (code, rows, rows in words), kept
    per content as one entry (hashing the list once costs less than hashing each group's table)."""
    return _groups_kept(rows, code_col) if len(rows) < HASHED_ROWS else _groups(rows, code_col)


@st.cache_data(ttl=TTL, max_entries=64, show_spinner=False)
def _groups_kept(rows: pd.DataFrame, code_col: str) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    return _groups(rows, code_col)


def _groups(rows: pd.DataFrame, code_col: str) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    codes = rows[code_col].fillna("unknown").astype(str)
    order = codes.value_counts(sort=True).index.tolist()  # group order only; no figure is shown from it
    out = []
    for code in order:
        group = rows[codes == code]
        out.append((code, group, words(group)))
    return out
