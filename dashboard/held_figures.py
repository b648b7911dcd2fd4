"""Plotly figures kept between script runs, keyed by exactly what they were drawn from.

Building a figure with ``plotly.graph_objects`` validates every property on every update: about
15 ms a chart on this machine, most of an analytics page's CPU on a warm rerun (a click, a widget,
coming back to the page), although the numbers come from Streamlit's cache and the figure comes
out the same. ``figure(draw, *args, **kwargs)`` returns the figure ``draw(*args, **kwargs)`` drew
the last time it was given equal arguments, and draws it otherwise.

Guarantees:
- The key is every argument, compared by value *and type* (``1``, ``1.0``, ``Decimal(1)`` and
  ``True`` are different keys: the hover text of an int and of a float may differ), points
  included, so a held figure is never one drawn from other numbers, labels or settings.
- Only what the key can hold is kept: an argument that is not plain data (numbers, text, dates,
  tuples, lists, mappings, sets, frozen dataclasses of those) draws afresh every time.
- At most ``SIZE`` figures are kept (least recently used dropped first), shared by every session:
  a held figure is read only. ``st.plotly_chart`` only reads it (``to_dict`` copies), and nothing
  else may change it.

Not ``st.cache_resource``: its hasher hashes the points field by field on every call (slower than
the tuple key here); not ``st.cache_data``: it pickles, and unpickling a figure validates it again.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import plotly.graph_objects as go

SIZE = 256  # figures of ~10-60 kB each: a few pages x questions x sessions' choices
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
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and value.__dataclass_params__.frozen:
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
        while len(_held) > SIZE:
            _held.popitem(last=False)
    return fig


def clear() -> None:
    with _lock:
        _held.clear()
