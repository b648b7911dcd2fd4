"""``python -m cli metrics``: the dashboard's numbers from the command line (same registry).

    python -m cli metrics --from 2026-01-01 --to 2026-07-01 --tz Europe/Berlin --currency EUR \\
        --granularity month --format json [--metric SLUG ...] [--drill SLUG --period 2026-03-01 --key new]
    python -m cli metrics --list
    python -m cli metrics --refresh [--since 2026-03-01]

``--to`` is exclusive (half-open periods). ``--currency original`` keeps every currency apart.
Numbers go to stdout (JSON or CSV); progress and errors to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from cli.common import CommandError, engine, progress
from core import csv_export

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd
    from sqlalchemy import Engine

    from core.metrics import Metric, MetricResult, Query

# The export never imports pandas (a metric's result is columns until a page reads it as a frame):
# its import alone is a fifth to a half of the command's two-second budget. Drill-down rows are
# frames.


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("metrics", help="export metrics (the dashboard's numbers)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="start", help="first local date (YYYY-MM-DD)")
    p.add_argument("--to", dest="end", help="end local date, exclusive (YYYY-MM-DD)")
    p.add_argument("--tz", help="time zone (default: the business time zone setting)")
    p.add_argument("--currency", default="reporting",
                   help="reporting currency (USD, EUR, GBP, JPY), 'original' for per currency; default: setting")
    p.add_argument("--granularity", default="month", choices=("day", "week", "month"))
    p.add_argument("--format", default="json", choices=("json", "csv"))
    p.add_argument("--metric", action="append", help="one metric slug (repeatable); default: all")
    p.add_argument("--drill", metavar="SLUG", help="print the rows behind one metric instead")
    p.add_argument("--period", help="with --drill: one bucket, by its first local date")
    p.add_argument("--key", help="with --drill: a movement kind, decline code, brand, country, ...")
    p.add_argument("--limit", type=int, default=100_000, help="with --drill: at most this many rows")
    p.add_argument("--tier", help="filter: tier code")
    p.add_argument("--interval", help="filter: billing interval (month, year)")
    p.add_argument("--only-currency", dest="filter_currency", help="filter: original currency")
    p.add_argument("--country", help="filter: member country (ISO code)")
    p.add_argument("--now", help="answer as of this UTC instant (ISO 8601; default: now)")
    p.add_argument("--list", action="store_true", help="list the metrics and their definitions")
    p.add_argument("--refresh", action="store_true", help="bring the rollup tables up to date")
    p.add_argument("--since", help="with --refresh: only days from this date (default: full rebuild)")
    p.set_defaults(func=_run)


def _date(text: str | None, name: str) -> date:
    if not text:
        raise CommandError(f"{name} is required (YYYY-MM-DD).")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"“{text}” is not a date; use YYYY-MM-DD.") from None


def _instant(text: str) -> datetime:
    from datetime import UTC

    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"“{text}” is not a date and time; use ISO 8601 such as 2026-07-01T00:00:00Z.") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _run(args: argparse.Namespace) -> int:
    from core.metrics import MetricError, list_metrics

    if args.list:
        for m in list_metrics():
            print(f"{m.slug:24} {m.unit:8} {m.title}: {m.definition}")
        return 0
    eng = engine()
    if args.refresh:
        from core.metrics.rollups import refresh

        since = _instant(args.since) if args.since else None
        summary = refresh(eng, since)
        progress(f"rollups refreshed from {summary['since_day']} in {summary['seconds']:.1f}s")
        return 0
    from core.timeutil import utc_now

    now = _instant(args.now) if args.now else utc_now()
    currency = None if args.currency.lower() in ("original", "none", "per-currency") else (
        "reporting" if args.currency == "reporting" else args.currency.upper())
    try:
        query = _query(eng, args, now, currency)
        if args.drill:
            from core.metrics import drill

            period = _date(args.period, "--period") if args.period else None
            rows = drill(eng, args.drill, query, period=period, key=args.key, limit=args.limit)
            _write_rows(rows, args.format)
            return 0
        from core.metrics import get
        from core.metrics.memo import shared

        metrics = [get(s) for s in args.metric] if args.metric else list_metrics()
        with shared():
            results = [m.compute(eng, query) for m in metrics]
    except MetricError as exc:
        raise CommandError(str(exc)) from None
    if args.format == "json":
        doc = {"query": query.settings_used(), "from": query.start.isoformat(), "to": query.end.isoformat(),
               "metrics": [export(m, r) for m, r in zip(metrics, results, strict=True)]}
        json.dump(doc, sys.stdout, default=_json_default, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(metrics_csv(metrics, results))
    return 0


def _query(eng: Engine, args: argparse.Namespace, now: datetime, currency: str | None) -> Query:
    from core.metrics import Filters, Query

    return Query.make(eng, start=_date(args.start, "--from"), end=_date(args.end, "--to"), now=now,
                      granularity=args.granularity, tz=args.tz, currency=currency,
                      filters=Filters(tier=args.tier, interval=args.interval, currency=args.filter_currency,
                                      country=args.country))


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):  # NaN
        return None
    if isinstance(value, (datetime, date)):  # a pandas Timestamp is a datetime
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _json_default(value: Any) -> Any:
    return _plain(value)


def _records(columns: dict[str, list] | None, only: tuple[str, ...] | None = None) -> list[dict[str, Any]] | None:
    """Rows as plain dicts from a table of columns (``only`` these, when given)."""
    if columns is None:
        return None
    names = [c for c in columns if only is None or c in only]
    values = [[_plain(v) for v in columns[c]] for c in names]
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]


def _frame_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    # Read column by column: pandas' row-wise ``to_dict`` costs more than the query.
    return _records({str(c): df[c].tolist() for c in df.columns}) or []


def export(metric: Metric, result: MetricResult) -> dict[str, Any]:
    """One metric as plain data (what the JSON export holds; tests compare it with the registry)."""
    return {"slug": metric.slug, "title": metric.title, "unit": metric.unit, "currency": result.currency,
            "value": _plain(result.value), "by_currency": {k: _plain(v) for k, v in result.by_currency.items()},
            "definition": metric.definition, "note": result.note, "settings_used": result.settings_used,
            "series": _records(result.columns("series"), ("period", "currency", "value")),
            "breakdown": _records(result.columns("breakdown"))}


def metrics_csv(metrics: Sequence[Metric], results: Sequence[MetricResult]) -> str:
    """Long format: one line per metric and period (``total`` = the whole range)."""
    rows: list[list[str]] = []
    for m, r in zip(metrics, results, strict=True):
        if r.value is not None or not r.by_currency:
            rows.append([m.slug, m.unit, "total", r.currency or "", _csv(r.value)])
        else:
            for cur, v in sorted(r.by_currency.items()):
                rows.append([m.slug, m.unit, "total", cur, _csv(v)])
        for row in _records(r.columns("series")) or []:
            rows.append([m.slug, m.unit, str(row["period"]), row.get("currency") or r.currency or "",
                         _csv(row["value"])])
    return csv_export.rows_csv(["metric", "unit", "period", "currency", "value"], rows)


def _csv(value: Any) -> str:
    value = _plain(value)
    return "" if value is None else str(value)


def _write_rows(rows: pd.DataFrame, fmt: str) -> None:
    if fmt == "csv":
        sys.stdout.write(csv_export.frame_csv(rows))
    else:
        json.dump(_frame_records(rows), sys.stdout, default=_json_default, indent=1)
        sys.stdout.write("\n")
