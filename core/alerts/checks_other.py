"""Rules over refunds, disputes, cancellations and the freshness of the Stripe data.

Counts of rare events (refunds, disputes, cancellations) are compared with their mean over the
``baseline_days`` before the window, scaled to the window: four same-weekday samples of a
handful of events are too noisy to be a baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, func, select

from core.alerts import stats
from core.alerts.checks_payments import window_text
from core.alerts.rules import Finding, Rule, register
from core.labels import code_label
from core.models import Dispute, Refund, StripeEvent, Subscription, SyncRun
from core.money import MinorUnits, format_money

R, D, S = Refund.__table__.c, Dispute.__table__.c, Subscription.__table__.c
EV, RUN = StripeEvent.__table__.c, SyncRun.__table__.c
REFUND_COUNTED = ("succeeded", "pending")


def _window(now: datetime, params: dict[str, Any]) -> tuple[datetime, datetime, datetime, float]:
    hours = float(params["window_hours"])
    start = now - timedelta(hours=hours)
    base_days = float(params["baseline_days"])
    return start, start - timedelta(days=base_days), now, hours / 24 / base_days


def _spike(count: int, base_count: int, scale: float, params: dict[str, Any]) -> tuple[bool, float, float]:
    """(firing, expected count in the window, distance) for a count against its scaled baseline."""
    expected = base_count * scale
    distance = stats.ratio(count, max(expected, float(params["baseline_floor"])))
    firing = (count >= params["min_count"] and distance >= params["min_ratio"]
              and stats.count_z(count, expected) >= params["z_min"])
    return firing, expected, distance


def _amounts(rows: Sequence[Row[str, int]]) -> str:
    return ", ".join(format_money(int(a or 0), c) for c, a in sorted(rows)) or "nothing"


# --- refunds and disputes above baseline -------------------------------------------------------

def _count_between(conn: Connection, table: Any, start: datetime, end: datetime, *extra: Any) -> int:
    return int(conn.execute(
        select(func.count()).where(table.created_at >= start, table.created_at < end, *extra)).scalar_one())


def _refund_spike(conn: Connection, now: datetime, params: dict[str, Any]) -> list[Finding]:
    start, base_start, end, scale = _window(now, params)
    counted = R.status.in_(REFUND_COUNTED)
    n = _count_between(conn, R, start, end, counted)
    firing, expected, distance = _spike(n, _count_between(conn, R, base_start, start, counted), scale, params)
    if not firing:
        return []
    amounts = conn.execute(select(R.currency, func.sum(R.amount)).where(
        R.created_at >= start, R.created_at < end, counted).group_by(R.currency)).all()
    reasons = conn.execute(select(func.coalesce(R.reason, "no reason"), func.count()).where(
        R.created_at >= start, R.created_at < end, counted).group_by(R.reason)).all()
    reason, top = max(((str(r), int(c)) for r, c in reasons), key=lambda rc: (rc[1], rc[0]))
    hint = (f"{n} refunds in {window_text(params['window_hours'])} ({_amounts(amounts)}), against "
            f"{expected:.1f} usually; most given reason: {code_label(reason)} ({top}).")
    return [Finding("all", float(n), expected, stats.severity(distance, params["severity_steps"]), hint,
                    start, end, {"unit": "count", "drill": {"table": "refunds"}})]


def _dispute_spike(conn: Connection, now: datetime, params: dict[str, Any]) -> list[Finding]:
    start, base_start, end, scale = _window(now, params)
    n = _count_between(conn, D, start, end)
    firing, expected, distance = _spike(n, _count_between(conn, D, base_start, start), scale, params)
    if not firing:
        return []
    amounts = conn.execute(select(D.currency, func.sum(D.amount)).where(
        D.created_at >= start, D.created_at < end).group_by(D.currency)).all()
    hint = (f"{n} disputes opened in {window_text(params['window_hours'])} ({_amounts(amounts)}), against "
            f"{expected:.1f} usually.")
    return [Finding("all", float(n), expected, stats.severity(distance, params["severity_steps"]), hint,
                    start, end, {"unit": "count", "drill": {"table": "disputes"}})]


def _count_measure(table: Any, *extra: Any) -> Any:
    def measure(conn: Connection, scope: str, start: datetime, end: datetime, params: dict[str, Any]) -> float:
        return float(_count_between(conn, table, start, end, *extra))
    return measure


_SPIKE_COMMON = {"window_hours": 24, "baseline_days": 28, "z_min": 4.0, "auto_resolve_hours": 6,
                 "severity_steps": dict(stats.DEFAULT_STEPS)}

register(Rule(
    "refund_spike", "Refunds above baseline",
    "Number of refunds in the last 24 hours, against the daily mean of the previous four weeks.",
    "count", {"min_count": 6, "min_ratio": 2.5, "baseline_floor": 0.5, **_SPIKE_COMMON},
    _refund_spike, _count_measure(R, R.status.in_(REFUND_COUNTED)),
))
register(Rule(
    "dispute_spike", "Disputes above baseline",
    "Number of disputes opened in the last 24 hours, against the daily mean of the previous four weeks.",
    "count", {"min_count": 4, "min_ratio": 3.0, "baseline_floor": 0.3, **_SPIKE_COMMON},
    _dispute_spike, _count_measure(D),
))


# --- one refund above a set amount --------------------------------------------------------------

def _large_refund(conn: Connection, now: datetime, params: dict[str, Any]) -> list[Finding]:
    start = now - timedelta(hours=float(params["lookback_hours"]))
    limits = {str(c).upper(): int(v) for c, v in params["max_amount"].items()}
    rows = conn.execute(select(R.id, R.amount, R.currency, R.member_id, R.payment_id, R.reason, R.created_at)
                        .where(R.created_at >= start, R.created_at < now, R.status.in_(REFUND_COUNTED))).all()
    findings = []
    for rid, amount, cur, member_id, payment_id, reason, created in rows:
        limit = limits.get(str(cur))
        if limit is None or amount <= limit:
            continue
        hint = (f"A refund of {format_money(amount, cur)} to member {member_id} "
                f"(reason: {code_label(reason, 'reason') if reason else 'none given'}), above the {format_money(limit, cur)} limit.")
        findings.append(Finding.money(
            f"refund={rid}", MinorUnits(amount), MinorUnits(limit), str(cur),
            stats.severity(amount / limit, params["severity_steps"]), hint, created, now,
            {"member_id": member_id, "payment_id": payment_id, "drill": {"table": "refunds", "id": rid}},
        ))
    return findings


register(Rule(
    "large_refund", "A single large refund",
    "Any one refund above the amount set for its currency, in the last 24 hours.",
    "money",
    {"lookback_hours": 24, "auto_resolve_hours": 24,
     "max_amount": {"USD": 25000, "EUR": 25000, "GBP": 20000, "JPY": 40000},
     "severity_steps": dict(stats.DEFAULT_STEPS)},
    _large_refund,
))


# --- cancellations above baseline ---------------------------------------------------------------

def _cancel_counts(conn: Connection, start: datetime, end: datetime) -> dict[str, int]:
    rows = conn.execute(select(S.churn_kind, func.count()).where(
        S.canceled_at >= start, S.canceled_at < end, S.churn_kind.is_not(None)).group_by(S.churn_kind)).all()
    return {str(k): int(n) for k, n in rows}


def _cancellations(conn: Connection, now: datetime, params: dict[str, Any]) -> list[Finding]:
    start, base_start, end, scale = _window(now, params)
    current, base = _cancel_counts(conn, start, end), _cancel_counts(conn, base_start, start)
    findings = []
    for kind in ("voluntary", "involuntary"):
        n = current.get(kind, 0)
        firing, expected, distance = _spike(n, base.get(kind, 0), scale, params)
        if not firing:
            continue
        why = "ended by failed payments" if kind == "involuntary" else "cancelled by members or staff"
        hint = (f"{n} {kind} cancellations ({why}) in {window_text(params['window_hours'])}, against "
                f"{expected:.1f} usually.")
        findings.append(Finding(f"churn={kind}", float(n), expected,
                                stats.severity(distance, params["severity_steps"]), hint, start, end,
                                {"unit": "count", "drill": {"table": "subscriptions", "churn_kind": kind}}))
    return findings


def _cancel_measure(conn: Connection, scope: str, start: datetime, end: datetime,
                    params: dict[str, Any]) -> float:
    return float(_cancel_counts(conn, start, end).get(scope.partition("=")[2], 0))


register(Rule(
    "cancellations", "Cancellations above baseline",
    "Voluntary and involuntary cancellations in the last 24 hours, each against its daily mean of the "
    "previous four weeks.",
    "count", {"min_count": 8, "min_ratio": 2.0, "baseline_floor": 0.5, **_SPIKE_COMMON},
    _cancellations, _cancel_measure,
))


# --- Stripe data stale ---------------------------------------------------------------------------

def _stale(conn: Connection, now: datetime, params: dict[str, Any]) -> list[Finding]:
    findings = []
    steps = params["severity_steps"]
    # Only once a sync has ever run: a database that never synced (a local demo) is not "stale".
    first_run = conn.execute(select(func.min(RUN.started_at)).where(RUN.started_at <= now)).scalar_one()
    if first_run is not None:
        last_ok = conn.execute(select(func.max(RUN.finished_at)).where(
            RUN.status == "succeeded", RUN.finished_at <= now)).scalar_one()
        limit = float(params["max_hours_without_sync"])
        age = (now - (last_ok or first_run)).total_seconds() / 3600
        if age > limit:
            since = f"since {last_ok:%Y-%m-%d %H:%M} UTC" if last_ok else "ever"
            findings.append(Finding(
                "sync", age, limit, stats.severity(age / limit, steps),
                f"No successful Stripe sync {since} ({age:.1f} hours; the limit is {limit:g}).",
                last_ok or first_run, now, {"unit": "hours"}))
        last = conn.execute(select(RUN.status, RUN.error, RUN.finished_at).where(
            RUN.finished_at.is_not(None), RUN.finished_at <= now,
            RUN.status.in_(("succeeded", "failed"))).order_by(RUN.finished_at.desc()).limit(1)).first()
        if last is not None and last.status == "failed":
            error = (last.error or "no error recorded").splitlines()[0][:200]
            findings.append(Finding(
                "sync_failed", 1.0, 0.0, "high",
                f"The last Stripe sync run failed at {last.finished_at:%Y-%m-%d %H:%M} UTC: {error}",
                last.finished_at, now, {"unit": "count"}))
    newest = conn.execute(select(func.max(EV.created_at)).where(EV.created_at <= now)).scalar_one()
    if newest is not None:
        limit = float(params["max_hours_without_event"])
        age = (now - newest).total_seconds() / 3600
        if age > limit:
            findings.append(Finding(
                "events", age, limit, stats.severity(age / limit, steps),
                f"No new Stripe event since {newest:%Y-%m-%d %H:%M} UTC ({age:.1f} hours; the limit is {limit:g}).",
                newest, now, {"unit": "hours"}))
    return findings


register(Rule(
    "stripe_stale", "Stripe data stale",
    "No successful sync or no new Stripe event for longer than the set hours, or the last sync run failed.",
    "hours",
    {"max_hours_without_sync": 6, "max_hours_without_event": 12, "auto_resolve_hours": 0,
     "severity_steps": {"medium": 1.5, "high": 3.0, "critical": 6.0}},
    _stale,
))
