"""Rules over payment attempts: failure rate, concentration of failures, revenue collected.

All aggregates run in SQL over an indexed time range (``payments.created_at``): the current
window and, for the baseline, the same window one to ``baseline_weeks`` weeks earlier (same
weekday and hour), or the weeks before the window for failure shares.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, func, literal, select

from core.alerts import stats
from core.alerts.rules import Finding, Rule, register
from core.labels import code_label
from core.models import Payment
from core.money import MinorUnits, format_money

P = Payment.__table__.c
FAILED, SUCCEEDED = "failed", "succeeded"

# Failure dimensions an alert may name as the root-cause hint; "decline code" falls back to
# Stripe's failure code when the bank gave none (as docs/metrics.md defines decline codes).
DIMENSIONS: dict[str, Any] = {
    "decline_code": func.coalesce(P.decline_code, P.failure_code, literal("unknown")),
    "card_brand": func.coalesce(P.card_brand, literal("unknown")),
    "card_country": func.coalesce(P.card_country, literal("unknown")),
    "currency": P.currency,
}
DIMENSION_WORDS = {"decline_code": "decline code", "card_brand": "card brand",
                   "card_country": "card country", "currency": "currency"}


def window_text(hours: float) -> str:
    if hours == 1:
        return "the last hour"
    if hours % 24 == 0:
        days = int(hours // 24)
        return "the last 24 hours" if days == 1 else f"the last {days} days"
    return f"the last {hours:g} hours"


def weekly_windows(now: datetime, hours: float, weeks: int) -> list[tuple[datetime, datetime]]:
    """The same window (same weekday and hour) 1..weeks weeks before ``now``."""
    span = timedelta(hours=hours)
    return [(now - timedelta(weeks=w) - span, now - timedelta(weeks=w)) for w in range(1, weeks + 1)]


def _first(first_only: bool) -> list[Any]:
    # Retries of earlier failures fail far more often (and a day after an incident they echo it for
    # two weeks), so by default the payment rules look at first attempts only.
    return [P.attempt_number == 1] if first_only else []


def attempts(conn: Connection, start: datetime, end: datetime, first_only: bool = False) -> tuple[int, int]:
    """(failed, attempted) payment attempts created in [start, end)."""
    row = conn.execute(
        select(func.coalesce(func.sum(case((P.status == FAILED, 1), else_=0)), 0), func.count())
        .where(P.created_at >= start, P.created_at < end, P.status.in_((FAILED, SUCCEEDED)), *_first(first_only))
    ).one()
    return int(row[0]), int(row[1])


def failure_counts(conn: Connection, dimension: str, start: datetime, end: datetime,
                   first_only: bool = False) -> dict[str, int]:
    col = DIMENSIONS[dimension]
    rows = conn.execute(
        select(col, func.count()).where(P.created_at >= start, P.created_at < end, P.status == FAILED,
                                        *_first(first_only))
        .group_by(col)
    ).all()
    return {str(k): int(n) for k, n in rows}


def top_failure_reason(conn: Connection, start: datetime, end: datetime, first_only: bool = False) -> str:
    counts = failure_counts(conn, "decline_code", start, end, first_only)
    total = sum(counts.values())
    if not total:
        return ""
    code, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    return f"; most failures: decline code “{code_label(code, 'decline_code')}” ({n / total:.0%} of {total})"


# --- failure rate -----------------------------------------------------------------------------

def _failure_rate_check(conn: Connection, now: datetime, params: dict[str, Any]) -> list[Finding]:
    hours = float(params["window_hours"])
    start = now - timedelta(hours=hours)
    first = bool(params["first_attempts_only"])
    failed, tried = attempts(conn, start, now, first)
    if tried < params["min_attempts"] or failed < params["min_failures"]:
        return []
    base_failed = base_tried = 0
    for ws, we in weekly_windows(now, hours, int(params["baseline_weeks"])):
        f, t = attempts(conn, ws, we, first)
        base_failed, base_tried = base_failed + f, base_tried + t
    if base_tried < params["min_baseline_attempts"]:
        return []  # not enough history to say what is normal
    rate, base = failed / tried, base_failed / base_tried
    floor = max(base, float(params["baseline_floor"]))
    distance = stats.ratio(rate, floor)
    if (distance < params["min_ratio"] or rate - base < params["min_increase"]
            or stats.rate_z(failed, tried, floor) < params["z_min"]):
        return []
    what = "first payment attempts" if first else "payment attempts"
    hint = (f"{failed} of {tried} {what} failed in {window_text(hours)} ({rate:.1%}), against "
            f"{base:.1%} in the same hours of the previous {int(params['baseline_weeks'])} weeks"
            f"{top_failure_reason(conn, start, now, first)}.")
    drill = {"table": "payments", "status": FAILED, **({"attempt_number": 1} if first else {})}
    return [Finding("all", rate, base, stats.severity(distance, params["severity_steps"]), hint, start, now,
                    {"unit": "percent", "failed": failed, "attempts": tried, "drill": drill})]


def _failure_rate_measure(conn: Connection, scope: str, start: datetime, end: datetime,
                          params: dict[str, Any]) -> float | None:
    failed, tried = attempts(conn, start, end, bool(params["first_attempts_only"]))
    return failed / tried if tried else None


_RATE_COMMON = {"first_attempts_only": True, "baseline_weeks": 4, "min_ratio": 1.5, "z_min": 4.0, "baseline_floor": 0.02,
                "severity_steps": dict(stats.DEFAULT_STEPS)}

# The two failure-rate rules differ only in their window and thresholds.
for _slug, _title, _description, _tuning in (
    ("failure_rate_hour", "Payment failure rate, last hour",
     "Share of payment attempts that failed in the last hour, against the same hour of the same weekday "
     "over the previous weeks.",
     {"window_hours": 1, "min_attempts": 40, "min_failures": 10, "min_baseline_attempts": 80,
      "min_increase": 0.10, "auto_resolve_hours": 2}),
    ("failure_rate_day", "Payment failure rate, last 24 hours",
     "Share of payment attempts that failed in the last 24 hours, against the same 24 hours of the previous "
     "weeks.",
     {"window_hours": 24, "min_attempts": 30, "min_failures": 8, "min_baseline_attempts": 120,
      "min_increase": 0.05, "auto_resolve_hours": 6}),
):
    register(Rule(_slug, _title, _description, "percent", {**_tuning, **_RATE_COMMON},
                  _failure_rate_check, _failure_rate_measure))


# --- failures concentrated on one decline code, brand, country or currency --------------------

def failure_breakdown(conn: Connection, start: datetime, end: datetime,
                      first_only: bool = False) -> dict[str, dict[str, int]]:
    """Failed attempts in [start, end) counted by each dimension, from one grouped scan."""
    cols = list(DIMENSIONS.values())
    rows = conn.execute(
        select(*cols, func.count()).where(P.created_at >= start, P.created_at < end, P.status == FAILED,
                                          *_first(first_only)).group_by(*cols)
    ).all()
    out: dict[str, dict[str, int]] = {dim: {} for dim in DIMENSIONS}
    for row in rows:
        n = int(row[-1])
        for dim, value in zip(DIMENSIONS, row[:-1], strict=True):
            out[dim][str(value)] = out[dim].get(str(value), 0) + n
    return out


def _concentration_check(conn: Connection, now: datetime, params: dict[str, Any]) -> list[Finding]:
    hours = float(params["window_hours"])
    start = now - timedelta(hours=hours)
    base_start = start - timedelta(days=float(params["baseline_days"]))
    first = bool(params["first_attempts_only"])
    what = "failed first attempts" if first else "failed attempts"
    current = failure_breakdown(conn, start, now, first)
    total = sum(current["currency"].values())
    if total < params["min_failures"]:
        return []
    baseline = failure_breakdown(conn, base_start, start, first)
    base_total = sum(baseline["currency"].values())
    if base_total < params["min_baseline_failures"]:
        return []
    findings: list[Finding] = []
    for dim in DIMENSIONS:
        if not params["dimensions"].get(dim, 0):
            continue
        base_counts = baseline[dim]
        for value, n in current[dim].items():
            if value == "unknown" or n < params["min_count"]:
                continue
            share, base_share = n / total, base_counts.get(value, 0) / base_total
            floor = max(base_share, float(params["baseline_floor"]))
            distance = stats.ratio(share, floor)
            if (share - base_share < params["min_share_increase"] or distance < params["min_ratio"]
                    or stats.rate_z(n, total, floor) < params["z_min"]):
                continue
            words = DIMENSION_WORDS[dim]
            shown = value if dim in ("currency", "card_country") else code_label(value, dim)
            hint = (f"Failures concentrated on {words} “{shown}”: {n} of {total} {what} in "
                    f"{window_text(hours)} ({share:.0%}), against {base_share:.0%} of failures over the "
                    f"previous {float(params['baseline_days']):g} days.")
            findings.append(Finding(
                f"{dim}={value}", share, base_share, stats.severity(distance, params["severity_steps"]), hint,
                start, now, {"unit": "percent", "dimension": dim, "dimension_value": value, "count": n,
                             "failures": total, "drill": {"table": "payments", "status": FAILED, dim: value,
                                                          **({"attempt_number": 1} if first else {})}},
            ))
    return findings


def _concentration_measure(conn: Connection, scope: str, start: datetime, end: datetime,
                           params: dict[str, Any]) -> float | None:
    dim, _, value = scope.partition("=")
    if dim not in DIMENSIONS:
        return None
    counts = failure_counts(conn, dim, start, end, bool(params["first_attempts_only"]))
    total = sum(counts.values())
    return counts.get(value, 0) / total if total else None


register(Rule(
    "failure_concentration", "Failures concentrated on one cause",
    "One decline code, card brand, card country or currency suddenly takes a much larger share of failed "
    "attempts than over the previous weeks; the alert names it.",
    "percent",
    {"first_attempts_only": True, "window_hours": 24, "baseline_days": 28, "min_failures": 10, "min_baseline_failures": 40,
     "min_count": 8, "min_share_increase": 0.20, "min_ratio": 1.5, "z_min": 3.0, "baseline_floor": 0.02,
     "auto_resolve_hours": 6, "severity_steps": dict(stats.DEFAULT_STEPS),
     "dimensions": {"decline_code": 1, "card_brand": 1, "card_country": 1, "currency": 1}},
    _concentration_check, _concentration_measure,
))


# --- revenue collected below baseline ----------------------------------------------------------

def _collected(conn: Connection, start: datetime, end: datetime) -> dict[str, tuple[int, int]]:
    rows = conn.execute(
        select(P.currency, func.sum(P.amount), func.count())
        .where(P.created_at >= start, P.created_at < end, P.status == SUCCEEDED).group_by(P.currency)
    ).all()
    return {str(c): (int(a or 0), int(n)) for c, a, n in rows}


def complete_window_end(now: datetime, hours: float) -> datetime:
    """The end of the last complete window before ``now``: the last UTC midnight for windows of
    whole days, else the last whole hour.

    Money collected is compared over complete windows only: a day in progress (or a demo whose data
    stops at midnight) holds part of a day's payments, and set against whole days it reads as a
    drop. Evaluated at any hour of a day, the rule therefore sees the same window, yesterday."""
    if hours % 24 == 0:
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    return now.replace(minute=0, second=0, microsecond=0)


def _revenue_check(conn: Connection, now: datetime, params: dict[str, Any]) -> list[Finding]:
    hours = float(params["window_hours"])
    weeks = int(params["baseline_weeks"])
    end = complete_window_end(now, hours)
    start = end - timedelta(hours=hours)
    current = _collected(conn, start, end)
    base: dict[str, list[int]] = {}
    for ws, we in weekly_windows(end, hours, weeks):
        for cur, (amount, n) in _collected(conn, ws, we).items():
            acc = base.setdefault(cur, [0, 0])
            acc[0] += amount
            acc[1] += n
    findings = []
    for cur, (base_amount, base_n) in sorted(base.items()):
        mean_amount, mean_n = base_amount / weeks, base_n / weeks
        if mean_n < params["min_baseline_payments"]:
            continue
        amount, n = current.get(cur, (0, 0))
        drop = 1 - amount / mean_amount if mean_amount else 0.0
        if drop < params["min_drop"] or -stats.count_z(n, mean_n) < params["z_min"]:
            continue
        distance = stats.ratio(mean_amount, max(amount, 1))
        span = (f"on {start:%a %Y-%m-%d} (UTC)" if hours == 24 else
                f"from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC")
        hint = (f"{format_money(amount, cur)} collected in {cur} {span} from {n} payments, "
                f"against {format_money(round(mean_amount), cur)} ({mean_n:.0f} payments) in the same hours "
                f"of the previous {weeks} weeks: {drop:.0%} lower"
                f"{top_failure_reason(conn, start, end)}.")
        findings.append(Finding.money(
            f"currency={cur}", MinorUnits(amount), MinorUnits(round(mean_amount)), cur,
            stats.severity(distance, params["severity_steps"]), hint, start, end,
            {"payments": n, "baseline_payments": mean_n, "drill": {"table": "payments", "currency": cur}},
        ))
    return findings


def _revenue_measure(conn: Connection, scope: str, start: datetime, end: datetime,
                     params: dict[str, Any]) -> float | None:
    cur = scope.partition("=")[2]
    return float(_collected(conn, start, end).get(cur, (0, 0))[0])


register(Rule(
    "revenue_drop", "Revenue collected below baseline",
    "Money collected (succeeded payments) in one currency over the last complete day (UTC), against the same "
    "weekday of the previous weeks.",
    "money",
    {"window_hours": 24, "baseline_weeks": 4, "min_baseline_payments": 20, "min_drop": 0.5, "z_min": 4.0,
     "auto_resolve_hours": 6, "severity_steps": dict(stats.DEFAULT_STEPS)},
    _revenue_check, _revenue_measure,
))
