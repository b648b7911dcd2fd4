"""Shared UI pieces: definitions beside numbers, tables with a CSV download, empty states and
error boxes as sentences. Every table on every page goes through ``table`` so each one exports."""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import pandas as pd
import streamlit as st

from core import csv_export
from core.permissions import Permission, allowed
from dashboard import format as fmt
from dashboard import media_guard
from dashboard.auth import current
from dashboard.text import md

log = logging.getLogger(__name__)
T = TypeVar("T")


def definition(text: str) -> None:
    """The definition of the number(s) just above, in small type."""
    st.caption(f"ℹ️ {md(text)}")


def empty(sentence: str) -> None:
    st.info(md(sentence))


def error_box(sentence: str) -> None:
    st.error(md(sentence))


def warning_box(sentence: str) -> None:
    st.warning(md(sentence))


def success_box(sentence: str) -> None:
    st.success(md(sentence))


# How long an action's outcome stays above the page. The sign-in's cookie component reruns a page two or
# three times after an action; a message removed on its first showing could be lost when one of those
# reruns cut the run that drew it, so it stays for a while and the next action replaces it.
FLASH_SECONDS = 20.0


def flash(key: str, sentence: str, *, ok: bool = True) -> None:
    """Remember an action's outcome to show above the page after the rerun that follows it."""
    st.session_state[key] = (ok, sentence, time.monotonic())


def show_flash(key: str) -> Any:
    """Show the outcome :func:`flash` remembered under ``key``, for :data:`FLASH_SECONDS`; returns
    its place on the page, for :func:`drop_flash`."""
    slot = st.empty()
    held = st.session_state.get(key)
    if not held:
        return slot
    ok, sentence, at = held
    if time.monotonic() - at > FLASH_SECONDS:
        del st.session_state[key]
        return slot
    with slot:
        (success_box if ok else error_box)(sentence)
    return slot


def drop_flash(key: str, slot: Any) -> None:
    """Forget and remove the outcome shown by :func:`show_flash`: a refusal below must not stand
    under an earlier action's "saved"."""
    st.session_state.pop(key, None)
    slot.empty()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "table"


def csv_bytes(frame: pd.DataFrame) -> bytes:
    # the only way a CSV leaves the app: formula-leading cells neutralised, NUL removed
    return csv_export.frame_csv_bytes(frame)


def csv_download(frame: pd.DataFrame | Callable[[], pd.DataFrame], name: str, *, key: str | None = None,
                 label: str = "Download CSV") -> None:
    """A download button for ``frame`` as ``<name>.csv`` (only for roles that may export). A
    callable is read only when the button is pressed (a whole list the page shows the start of)."""
    ctx = current()
    if ctx is None or not allowed(ctx.roles, Permission.EXPORT):
        return
    # Made when pressed: a page of tables would otherwise build every CSV on every rerun (the Failed
    # payments page's dozen took a tenth of its warm run) for a download rarely asked for.
    file_name = f"{_slug(name)}.csv"

    def data() -> bytes:
        made = csv_bytes(frame() if callable(frame) else frame)
        media_guard.claim(made, "text/csv", file_name, ctx.username)  # its address works for this person only
        return made

    st.download_button(label, data=data, file_name=file_name, mime="text/csv",
                       key=key or f"csv-{_slug(name)}", on_click="ignore")


def table(frame: pd.DataFrame | list[dict[str, Any]], name: str, *, empty_sentence: str, key: str | None = None,
          height: int | Literal["auto"] = "auto", column_config: dict[str, Any] | None = None,
          export: Callable[[], pd.DataFrame] | None = None) -> None:
    """Show ``frame`` (or a list of row dicts) with its CSV download (of ``export()`` when given,
    made only when the button is pressed), or the empty-state sentence when it has no rows."""
    if isinstance(frame, list):
        frame = pd.DataFrame(frame)
    if frame is None or frame.empty:
        empty(empty_sentence)
        return
    st.dataframe(frame, hide_index=True, width="stretch", height=height, column_config=column_config)
    csv_download(frame if export is None else export, name, key=key)


def records(rows: pd.DataFrame, name: str, *, empty_sentence: str, key: str | None = None) -> None:
    """Rows as stored (``*_minor`` money beside a currency, times, codes) shown in words, with a
    CSV of the same rows whose amounts are plain numbers a spreadsheet can add up."""
    # A sentence-long column (an audit entry's "What changed") gets the room to be read.
    wide = {fmt.label(c): st.column_config.TextColumn(width="large") for c in WIDE_COLUMNS if c in rows.columns}
    table(fmt.display_frame(rows), name, empty_sentence=empty_sentence, key=key, column_config=wide or None,
          export=functools.partial(fmt.export_frame, rows))


WIDE_COLUMNS = ("what_changed",)


def safely(sentence: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Run a read; on any error show ``sentence`` (never a traceback) and return None."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # a page must degrade to a sentence, and the log keeps the detail
        message = str(exc) if isinstance(exc, ValueError) and str(exc).endswith(".") else sentence
        log.exception("page read failed: %s", sentence)
        error_box(message)
        return None


def kpi(column: Any, title: str, value: str, *, delta: str | None = None, help_text: str | None = None,
        delta_color: str = "normal") -> None:
    """One KPI card: the number, its change against the previous period, its definition on hover."""
    # A change of zero gets no arrow: Streamlit would draw "+0.0" as a rise.
    column.metric(md(title), value, delta=delta, help=help_text, delta_color=delta_color, border=True,
                  delta_arrow="off" if delta_color == "off" else "auto")
