"""The one way a CSV leaves Memberdesk (every dashboard download and the command line's CSV).

A spreadsheet opening a CSV runs any cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, in
some, a tab or a carriage return) as a formula: a member name such as
``=HYPERLINK("http://evil","x")`` becomes a live link, ``+cmd|' /C calc'!A0`` a command. Names,
notes and Stripe descriptions are typed by people outside the company, so every text cell goes
through ``safe_text``, which does what OWASP's "CSV Injection" page recommends:

- a text cell whose first character is one of those is prefixed with a single quote, which a
  spreadsheet shows as text and does not evaluate; genuine numbers are left alone (a numeric
  column is written as numbers; a text cell that is only a signed number, amount or percentage,
  such as ``-12.50``, ``-$2.00`` or ``+4.5%``, cannot hold a formula and stays as it is);
- full-width look-alikes of those characters, which some spreadsheets fold into them, count too;
- NUL bytes are removed (some readers cut the file there);
- every text cell that holds a quote, a separator a spreadsheet might use (``,`` ``;`` tab ``|``),
  a line break or the leading single quote is wrapped in double quotes with its own quotes
  doubled, so a cell cannot break out into a neighbouring cell whatever separator the reader picks.

Kept free of pandas: the command-line export must not pay for importing it. Frames are read
column by column through ``.columns`` and ``[column].tolist()``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

# Characters that make a spreadsheet read a cell as a formula, and their full-width forms.
FORMULA_LEADS = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")
# A signed number, amount or percentage as we format them: no letters, brackets or operators
# after the sign, so nothing a spreadsheet could run.
_NUMBER = re.compile(r"[+-](?:CA\$|A\$|[$€£¥])?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][+-]?\d+)?%?")
_QUOTE_IF = re.compile(r"[\",;\t|\r\n']")


def safe_text(text: str) -> str:
    """``text`` as a CSV cell a spreadsheet shows and never runs (see the module docstring)."""
    text = text.replace("\x00", "")
    first = text.lstrip(" ")[:1]
    if first and first in FORMULA_LEADS and not _NUMBER.fullmatch(text.strip(" ")):
        return "'" + text
    return text


def field(value: Any) -> str:
    """One value as it is written between the commas."""
    if value is None or type(value).__name__ in {"NaTType", "NAType"}:  # pandas' missing values
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if isinstance(value, Decimal):
        return "" if value.is_nan() else str(value)
    if isinstance(value, datetime | date):
        return str(value)
    text = safe_text(str(value))
    if _QUOTE_IF.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def rows_csv(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """A header and rows of plain values as CSV text (``\\n`` line ends)."""
    lines = [",".join(field(h) for h in header)]
    lines.extend(",".join(field(v) for v in row) for row in rows)
    return "\n".join(lines) + "\n"


def frame_csv(frame: Any) -> str:
    """A pandas DataFrame (index left out) as CSV text, read column by column."""
    columns = [str(c) for c in frame.columns]
    values = [frame[c].tolist() for c in frame.columns]
    return rows_csv(columns, zip(*values, strict=True))


def frame_csv_bytes(frame: Any) -> bytes:
    """What a download button hands the browser: UTF-8 CSV."""
    return frame_csv(frame).encode("utf-8")
