"""The one export path (core.csv_export): hostile cells leave as text a spreadsheet shows and
never runs (OWASP's CSV-injection advice), numbers stay numbers, NUL never reaches the file, and
no other way to write a CSV or offer a download exists in the app."""

from __future__ import annotations

import ast
import csv
import io
import tomllib
from pathlib import Path

import pandas as pd

from core import csv_export
from dashboard.widgets import csv_bytes

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ['=HYPERLINK("http://evil","x")', "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3", "\t=1+1", "\r=1+1",
           "＝1+1", "  =1+1"]


def _cells(text: str) -> list[list[str]]:
    """What a CSV reader (Python's, as strict as a spreadsheet's parser) finds in the file."""
    return list(csv.reader(io.StringIO(text, newline="")))


def test_formula_leading_cells_become_quoted_text():
    frame = pd.DataFrame({"Name": HOSTILE, "Amount": range(len(HOSTILE))})
    rows = _cells(csv_export.frame_csv(frame))
    assert rows[0] == ["Name", "Amount"]
    assert [r[0] for r in rows[1:]] == ["'" + h for h in HOSTILE]  # the value, made inert, nothing lost
    # no cell anywhere starts with a character a spreadsheet would evaluate
    assert not [c for r in rows for c in r[:1] if c and c.lstrip(" ")[0] in csv_export.FORMULA_LEADS]


def test_numbers_stay_numbers_and_signed_amounts_are_not_touched():
    frame = pd.DataFrame({"Amount": [-500, 1200], "Rate": [-0.25, 1.5], "Shown": ["-$2.00", "+4.5%"],
                          "Text": ["-12", "-1,234.50"]})
    text = csv_export.frame_csv(frame)
    assert text.splitlines()[1] == "-500,-0.25,-$2.00,-12"
    back = pd.read_csv(io.StringIO(text))
    assert pd.api.types.is_integer_dtype(back["Amount"]) and list(back["Amount"]) == [-500, 1200]
    assert pd.api.types.is_float_dtype(back["Rate"]) and list(back["Rate"]) == [-0.25, 1.5]
    assert list(back["Text"]) == [-12, "-1,234.50"] or list(back["Text"].astype(str)) == ["-12", "-1,234.50"]


def test_nul_bytes_never_reach_the_file():
    frame = pd.DataFrame({"Note": ["a\x00b", "\x00=1+1"]})
    data = csv_bytes(frame)
    assert b"\x00" not in data
    assert [r[0] for r in _cells(data.decode("utf-8"))[1:]] == ["ab", "'=1+1"]


def test_a_cell_cannot_break_out_into_the_next_whatever_the_separator():
    frame = pd.DataFrame({"Note": ['x";=1+1', "a;=2+2", "b\t=3+3", "c|=4+4", "line\n=5+5"], "n": range(5)})
    text = csv_export.frame_csv(frame)
    rows = _cells(text)
    assert [r[0] for r in rows[1:]] == list(frame["Note"]) and [r[1] for r in rows[1:]] == list("01234")
    # read with ';' (how a spreadsheet in many European locales opens a .csv): still no formula cell
    for row in csv.reader(io.StringIO(text, newline=""), delimiter=";"):
        assert not any(c.startswith(("=", "+", "@")) for c in row)


def test_missing_values_are_blank_and_dates_read_back():
    frame = pd.DataFrame({"When": pd.to_datetime(["2026-11-01 10:00", None], utc=True), "Who": ["ann", None],
                          "N": [1.5, None]})
    assert csv_export.frame_csv(frame).splitlines()[1:] == ["2026-11-01 10:00:00+00:00,ann,1.5", ",,"]


def test_the_dashboard_download_and_pandas_agree_on_plain_data():
    frame = pd.DataFrame({"Member": ["Ann Lee", "Bob Stone"], "Amount": [999, -5000], "Currency": ["USD", "EUR"]})
    assert csv_bytes(frame) == frame.to_csv(index=False).encode("utf-8")


def test_the_command_line_metrics_csv_goes_through_the_same_path(engine):
    from cli.metrics import metrics_csv

    class _Result:
        value, currency, by_currency = -1250, "USD", {}

        def columns(self, name):
            return {"period": ["2026-01-01"], "currency": ["=HYPERLINK(1)"], "value": [-3]}

    class _Metric:
        slug, unit = "m", "money"

    lines = metrics_csv([_Metric()], [_Result()]).splitlines()
    assert lines[1] == "m,money,total,USD,-1250"
    assert lines[2] == "m,money,2026-01-01,\"'=HYPERLINK(1)\",-3"


# ------------------------------------------------------------------ architecture

def _calls(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            out.append((name, node.lineno))
    return out


def test_no_other_way_to_write_a_csv_or_offer_a_download():
    """Every CSV leaves through core.csv_export; the one download button is widgets.csv_download."""
    offenders = []
    for folder in ("dashboard", "pages", "core"):
        for p in (ROOT / folder).rglob("*.py"):
            rel = str(p.relative_to(ROOT))
            if rel.startswith(("stripe_sandbox/", "demo/")):  # a fake Stripe and the demo loader
                continue
            for name, line in _calls(p):
                if name in {"to_csv", "to_excel", "writer", "DictWriter"} and rel != "core/csv_export.py":
                    offenders.append(f"{rel}:{line} {name}(")
                if name == "download_button" and rel != "dashboard/widgets.py":
                    offenders.append(f"{rel}:{line} download_button(")
            imported = {a.name for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
                        if isinstance(n, ast.Import) for a in n.names}
            if "csv" in imported and rel != "core/csv_export.py":
                offenders.append(f"{rel}: import csv")
    assert offenders == []
    widgets = (ROOT / "dashboard" / "widgets.py").read_text(encoding="utf-8")
    assert widgets.count("download_button(") == 1 and "csv_export.frame_csv_bytes(frame)" in widgets


def test_the_grids_own_csv_export_is_switched_off():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["client"]["disableDataExport"] is True
