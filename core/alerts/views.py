"""The read side of alerts: lists, history search, one alert's story, its chart and its rows.

Everything returns plain data (dicts, lists) for the CLI and the dashboard; nothing here writes.
Lists put active alerts first (open, then acknowledged, then snoozed), each by severity, worst
first, then by when they last fired.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, case, exists, func, or_, select
from sqlalchemy.orm import Session

from core.alerts import rules
from core.alerts.checks_payments import DIMENSIONS
from core.alerts.evaluate import rule_configs
from core.alerts.lifecycle import ACTIVE, OPEN, STATUSES
from core.alerts.stats import SEVERITY_RANK
from core.models import Alert, AlertTransition, Dispute, Member, Notification, Payment, Refund, Subscription
from core.money import format_money

DRILL_LIMIT = 200


def open_alert_count(engine: Engine) -> int:
    """Alerts that need someone: open or acknowledged (snoozed ones are silenced on purpose)."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Alert).where(
            Alert.status.in_((OPEN, "acknowledged")))).scalar_one())


def value_text(value: float | None, unit: str, currency: str | None = None) -> str:
    """A rule's value for people, by its unit (money arrives in minor units of ``currency``)."""
    if value is None:
        return "—"
    if unit == "percent":
        return f"{value:.1%}"
    if unit == "money":
        return format_money(round(value), currency or "USD")
    if unit == "hours":
        return f"{value:.1f} hours"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _row(a: Alert) -> dict[str, Any]:
    details = a.details or {}
    unit = details.get("unit", "")
    measured = a.measured()  # value and baseline in the rule's unit; money in minor units
    value, baseline, currency = measured["value"], measured["baseline"], measured.get("currency")
    return {"value_text": value_text(value, unit, currency), "baseline_text": value_text(baseline, unit, currency),
            "id": a.id, "rule": a.rule, "title": details.get("rule_title", a.rule), "scope": a.scope,
            "status": a.status, "severity": a.severity, "value": value, "baseline": baseline,
            "unit": unit, "currency": currency, "hint": a.hint,
            "opened_at": a.opened_at, "last_fired_at": a.last_fired_at, "window_start": a.window_start,
            "window_end": a.window_end, "cleared_since": a.cleared_since, "snoozed_until": a.snoozed_until,
            "resolved_at": a.resolved_at}


def list_alerts(engine: Engine, *, status: list[str] | str | None = None, rule: str | None = None,
                search: str | None = None, since: datetime | None = None, until: datetime | None = None,
                limit: int = 200) -> list[dict[str, Any]]:
    """Alerts matching the filters; ``search`` looks in the rule (its name or title), scope, hint and
    transition notes."""
    statuses = [status] if isinstance(status, str) else list(status or [])
    bad = [s for s in statuses if s not in STATUSES]
    if bad:
        raise ValueError(f"“{bad[0]}” is not an alert status; use one of: {', '.join(STATUSES)}.")
    query = select(Alert)
    if statuses:
        query = query.where(Alert.status.in_(statuses))
    if rule:
        query = query.where(Alert.rule == rule)
    if since:
        query = query.where(Alert.opened_at >= since)
    if until:
        query = query.where(Alert.opened_at < until)
    text = (search or "").strip().lower()
    if text:
        pattern = f"%{text}%"
        noted = exists().where(and_(AlertTransition.alert_id == Alert.id,
                                    func.lower(AlertTransition.note).like(pattern)))
        titled = [r.slug for r in rules.all_rules() if text in r.title.lower()]  # the page shows titles
        query = query.where(or_(func.lower(Alert.rule).like(pattern), Alert.rule.in_(titled),
                                func.lower(Alert.scope).like(pattern), func.lower(Alert.hint).like(pattern), noted))
    status_order = case({s: i for i, s in enumerate((*ACTIVE, "resolved"))}, value=Alert.status, else_=9)
    severity_order = case(SEVERITY_RANK, value=Alert.severity, else_=-1)
    query = query.order_by(status_order, severity_order.desc(), Alert.last_fired_at.desc(), Alert.id.desc())
    with Session(engine) as session:
        return [_row(a) for a in session.execute(query.limit(max(1, min(int(limit), 5000)))).scalars()]


def latest_resolved(engine: Engine) -> dict[str, Any] | None:
    """The resolved alert that fired last (what a quiet Open tab points to), or None."""
    query = (select(Alert).where(Alert.status == "resolved")
             .order_by(Alert.last_fired_at.desc(), Alert.id.desc()).limit(1))
    with Session(engine) as session:
        found = session.execute(query).scalars().first()
        return None if found is None else _row(found)


def alert_detail(engine: Engine, alert_id: int) -> dict[str, Any] | None:
    """One alert with its transitions (oldest first) and notifications."""
    with Session(engine) as session:
        alert = session.get(Alert, alert_id)
        if alert is None:
            return None
        out = _row(alert)
        out["details"] = alert.details or {}
        out["transitions"] = [
            {"at": t.at, "actor": t.actor, "from": t.from_status, "to": t.to_status, "note": t.note}
            for t in session.execute(select(AlertTransition).where(AlertTransition.alert_id == alert_id)
                                     .order_by(AlertTransition.at, AlertTransition.id)).scalars()]
        out["notifications"] = [
            {"channel": n.channel, "target": n.target, "status": n.status, "attempts": n.attempts,
             "last_error": n.last_error, "next_attempt_at": n.next_attempt_at, "sent_at": n.sent_at}
            for n in session.execute(select(Notification).where(Notification.alert_id == alert_id)
                                     .order_by(Notification.id)).scalars()]
        return out


def history_series(engine: Engine, alert_id: int, points: int = 14) -> list[dict[str, Any]]:
    """The rule's value over the ``points`` windows ending where the alert last fired (for the chart)."""
    detail = alert_detail(engine, alert_id)
    if detail is None:
        return []
    cfg = rule_configs(engine).get(detail["rule"])
    if cfg is None or cfg.rule.measure is None or not detail["window_start"] or not detail["window_end"]:
        return []
    end = detail["window_end"]
    span = end - detail["window_start"]
    step = span if span <= timedelta(days=1) else timedelta(days=1)
    out = []
    with engine.connect() as conn:
        for k in range(points - 1, -1, -1):
            w_end = end - step * k
            value = cfg.rule.measure(conn, detail["scope"], w_end - span, w_end, cfg.params)
            out.append({"window_end": w_end, "value": value})
    return out


def affected_rows(engine: Engine, alert_id: int) -> dict[str, list[dict[str, Any]]]:
    """The rows behind an alert: {"payments"|"refunds"|"disputes"|"subscriptions": [...], "members": [...]}."""
    detail = alert_detail(engine, alert_id)
    if detail is None or not detail["details"].get("drill"):
        return {}
    drill = dict(detail["details"]["drill"])
    table = drill.pop("table")
    start, end = detail["window_start"], detail["window_end"]
    with engine.connect() as conn:
        if table == "payments":
            p = Payment.__table__.c
            where = [p.created_at >= start, p.created_at < end]
            for key, value in drill.items():
                column = p[key] if key in ("status", "attempt_number") else DIMENSIONS[key]
                where.append(column == value)
            rows = conn.execute(select(p.id, p.created_at, p.member_id, p.amount, p.currency, p.status,
                                       p.decline_code, p.failure_code, p.card_brand, p.card_country,
                                       p.attempt_number, p.stripe_charge_id)
                                .where(*where).order_by(p.created_at.desc()).limit(DRILL_LIMIT)).mappings().all()
        elif table in ("refunds", "disputes"):
            t = (Refund if table == "refunds" else Dispute).__table__.c
            where = [t.id == drill["id"]] if "id" in drill else [t.created_at >= start, t.created_at < end]
            rows = conn.execute(select(t.id, t.created_at, t.member_id, t.payment_id, t.amount, t.currency, t.status,
                                       t.reason).where(*where).order_by(t.created_at.desc()).limit(DRILL_LIMIT)
                                ).mappings().all()
        elif table == "subscriptions":
            s = Subscription.__table__.c
            rows = conn.execute(select(s.id, s.canceled_at, s.member_id, s.status, s.churn_kind,
                                       s.cancellation_reason, s.cancellation_feedback, s.mrr_minor, s.currency)
                                .where(s.canceled_at >= start, s.canceled_at < end,
                                       s.churn_kind == drill.get("churn_kind"))
                                .order_by(s.canceled_at.desc()).limit(DRILL_LIMIT)).mappings().all()
        else:
            return {}
        items = [dict(r) for r in rows]
        counts: dict[int, int] = {}
        for item in items:
            counts[item["member_id"]] = counts.get(item["member_id"], 0) + 1
        m = Member.__table__.c
        members = conn.execute(select(m.id, m.name, m.email, m.country).where(m.id.in_(list(counts)))).mappings().all()
    member_rows = sorted(({**dict(r), "rows": counts[r["id"]]} for r in members), key=lambda r: -r["rows"])
    return {table: items, "members": member_rows}


def rule_table(engine: Engine) -> list[dict[str, Any]]:
    """Every rule with its switch, effective thresholds and notification targets."""
    return [{"slug": c.rule.slug, "title": c.rule.title, "description": c.rule.description, "enabled": c.enabled,
             "params": c.params, "unit": c.rule.unit, "notify": c.notify, "updated_at": c.updated_at, "updated_by": c.updated_by}
            for c in rule_configs(engine).values()]


def all_rule_slugs() -> list[str]:
    return [r.slug for r in rules.all_rules()]
