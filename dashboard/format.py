"""Formatting for people: money, percentages, counts, times and whole tables.

Pages never do arithmetic or formatting themselves; they hand values and DataFrames to these
functions. Money comes in as integer minor units beside a currency (``core.money``); times come in
already converted to the business time zone by ``core``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

import pandas as pd

from core.labels import CODE_COLUMNS, SUBSCRIPTION_STATUS, code_label
from core.money import decimals, format_money
from core.timeutil import zone

DASH = "—"


def money(amount_minor: int | float | None, currency: str | None, *, signed: bool = False) -> str:
    if amount_minor is None or currency is None or (isinstance(amount_minor, float) and pd.isna(amount_minor)):
        return DASH
    return format_money(int(amount_minor), currency, signed=signed)


def plain_money(amount_minor: int | float | None, currency: str | None) -> str:
    """An amount for a spreadsheet: major units as a plain number ("1234.50", "-9.99", yen "500"),
    blank when unknown. "$1,234.50" is text to a spreadsheet: it cannot add a column of them."""
    if amount_minor is None or currency is None or (isinstance(amount_minor, float) and pd.isna(amount_minor)):
        return ""
    places = decimals(currency)
    whole, part = divmod(abs(int(amount_minor)), 10 ** places)
    sign = "-" if int(amount_minor) < 0 else ""
    return f"{sign}{whole}.{part:0{places}d}" if places else f"{sign}{whole}"


def percent(fraction: float | None, *, digits: int = 1, signed: bool = False) -> str:
    if fraction is None or pd.isna(fraction):
        return DASH
    value = fraction * 100
    step = 10 ** -digits
    if signed and value != 0 and abs(value) < step / 2:
        # "-0.0%" beside "-$5.81" reads as a contradiction: say how small it is instead.
        return f"{'-' if value < 0 else '+'}<{step:.{digits}f}%"
    if round(value, digits) == 0:
        value = 0.0  # never "-0.0%"
    text = f"{value:+.{digits}f}%" if signed else f"{value:.{digits}f}%"
    return text


def count(value: int | float | None) -> str:
    if value is None or pd.isna(value):
        return DASH
    return f"{int(value):,}"


def when(value: datetime | pd.Timestamp | None, *, with_zone: bool = False) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return DASH
    text = f"{value:%Y-%m-%d %H:%M}"
    if with_zone and getattr(value, "tzinfo", None) is not None:
        text += f" {value:%Z}"
    return text


def day(value: date | datetime | None) -> str:
    return DASH if value is None or value is pd.NaT else f"{value:%Y-%m-%d}"


ACRONYMS = {"mrr": "MRR", "arr": "ARR", "arpu": "ARPU", "ltv": "LTV", "fx": "FX", "usd": "USD"}


def label(column: str) -> str:
    """``amount_paid_minor`` -> ``Amount paid``; ``stripe_charge_id`` -> ``Stripe charge id``; ``mrr`` -> ``MRR``."""
    words = [ACRONYMS.get(w, w) for w in column.removesuffix("_minor").split("_") if w]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


# Stored flags a table may hold as 1/0 or true/false (by database): shown and exported as Yes/No.
YES_NO_COLUMNS = frozenset({"is_renewal", "disputed", "cancel_at_period_end", "is_default", "livemode", "enabled",
                            "active", "first_attempts_only", "paid_out_of_band"})


def display_frame(frame: pd.DataFrame, *, money_columns: Iterable[str] | None = None,
                  currency_column: str = "currency", drop: Iterable[str] = (),
                  rename: Mapping[str, str] | None = None, for_export: bool = False) -> pd.DataFrame:
    """A copy ready to show: ``*_minor`` money columns formatted in their row's currency,
    timestamps as ``YYYY-MM-DD HH:MM ZONE``, stored codes and headers in words. ``for_export``:
    the same, but money as plain numbers in major units beside the currency column
    (``plain_money``), for a CSV."""
    out = frame.drop(columns=[c for c in drop if c in frame.columns]).copy()
    blank = "" if for_export else DASH  # a missing time: "—" on screen, an empty cell in a CSV
    minor = list(money_columns) if money_columns is not None else [c for c in out.columns if c.endswith("_minor")]
    if minor and currency_column in out.columns:
        shown = plain_money if for_export else money
        for col in minor:
            out[col] = [shown(v, c) for v, c in zip(out[col], out[currency_column], strict=True)]
    for col in out.columns:
        # Times always carry their zone ("2026-11-27 14:05 CET", "… UTC"): a table of member times in
        # the business zone beside alert times in UTC must never leave a person guessing.
        if pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = out[col].map(lambda v: blank if pd.isna(v) else when(v, with_zone=True))
        elif out[col].dtype == object and len(out) and any(isinstance(v, datetime) for v in out[col]):
            out[col] = out[col].map(lambda v: when(v, with_zone=True) if isinstance(v, datetime)
                                    else (blank if v is None else v))
    for col in out.columns:
        # Yes or No, whatever the database handed back: SQLite gives a flag as 1/0 and PostgreSQL as
        # true/false, so one CSV said "1" where another said "True" for the same kind of fact.
        if pd.api.types.is_bool_dtype(out[col]) or col in YES_NO_COLUMNS:
            out[col] = [blank if v is None or (isinstance(v, float) and pd.isna(v)) else ("Yes" if v else "No")
                        for v in out[col]]
    for col in out.columns:  # stored codes in words (payment_failed -> Payment failed)
        if col in CODE_COLUMNS and not pd.api.types.is_numeric_dtype(out[col]):
            out[col] = [code_label(v, col) if isinstance(v, str) else v for v in out[col]]
    for col in out.columns:  # blanks instead of "None"/"<NA>" (also in the CSV)
        if out[col].isna().any():
            # One type per column: a column of numbers and blanks becomes text ("12", ""), else
            # Arrow cannot serialise it and Streamlit logs a traceback on every run.
            out[col] = [_cell_text(v) for v in out[col]]
    names = {c: label(c) for c in out.columns}
    names.update(rename or {})
    return out.rename(columns=names)


def in_zone(frame: pd.DataFrame, tz: str) -> pd.DataFrame:
    """The frame's times (UTC as stored) in ``tz``: a drill's rows said "2026-12-01 01:44 UTC"
    under a Tokyo day's bucket, a different date from the bucket they were listed under."""
    out = frame
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.DatetimeTZDtype):
            if out is frame:
                out = frame.copy()
            out[col] = frame[col].dt.tz_convert(zone(tz))
    return out


def export_frame(frame: pd.DataFrame, *, money_columns: Iterable[str] | None = None) -> pd.DataFrame:
    """Stored rows as every CSV of the dashboard holds them: headers and codes in words as on
    screen, times with their zone, each amount a plain number in major units beside its currency
    (``plain_money``), so a spreadsheet can add a column up."""
    return display_frame(frame, money_columns=money_columns, for_export=True)


def _cell_text(value: Any) -> str:
    """A cell of a column that has blanks: the value as text, whole numbers without ``.0``."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def when_in(value: datetime | None, tz: str) -> str:
    """A UTC time shown in the business time zone, with the zone's abbreviation."""
    if value is None:
        return DASH
    return when(value.astimezone(zone(tz)), with_zone=True)


def status_label(status: str | None) -> str:
    icons = {"active": "🟢", "trialing": "🔵", "past_due": "🟠", "unpaid": "🔴", "canceled": "⚫",
             "paused": "⏸️", "incomplete": "🟡", "incomplete_expired": "⚫", "no membership": "⚪"}
    if not status:
        return DASH
    # In words, as every table writes them ("Past due", "Pending approval"), not "past due".
    words = SUBSCRIPTION_STATUS.get(status) or code_label(status)
    return f"{icons.get(status, '')} {words}".strip()
