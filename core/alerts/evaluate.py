"""Evaluation: run every enabled rule at ``now`` and bring the alerts table in line.

Guarantees:
- Idempotent: evaluating twice at the same ``now`` leaves one alert per firing rule and scope,
  updated in place, and writes no second "open" transition or notification.
- Safe in parallel: the partial unique index (one non-resolved alert per rule and scope) decides
  which of two concurrent evaluators opens an alert; the loser's insert fails, its transaction
  rolls back and it updates the winner's alert instead. Status changes are compare-and-set.
- One rule that fails (a bad threshold, a query error) is logged and reported; the others still
  run, and notification delivery never blocks or fails the evaluation.
- Reads only data created before ``now``, so a replay over history sees what cron would have seen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError

from core import audit
from core.alerts import lifecycle, notify, rule_form, rules
from core.alerts.lifecycle import ACTIVE, OPEN, RESOLVED, SNOOZED, SYSTEM
from core.alerts.rules import Finding, Rule
from core.db import session_scope
from core.models import Alert, AlertRule, Setting
from core.permissions import Actor, Permission, guarded
from core.timeutil import ensure_aware, utc_now

log = logging.getLogger(__name__)
LAST_EVALUATED_KEY = "alerts.last_evaluated_at"
# A person who resolved an alert has seen its condition: the same rule and scope stay quiet this
# long afterwards unless it gets worse (a higher severity), instead of opening again at once.
REOPEN_QUIET = timedelta(hours=1)


@dataclass
class EvaluationResult:
    now: datetime
    opened: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # rule slug -> sentence
    notifications: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        text = (f"evaluated at {self.now:%Y-%m-%d %H:%M} UTC: {len(self.opened)} opened, {len(self.updated)} "
                f"still firing, {len(self.resolved)} resolved")
        if self.errors:
            text += f"; {len(self.errors)} rule(s) failed: " + "; ".join(f"{k}: {v}" for k, v in self.errors.items())
        return text


@dataclass(frozen=True, slots=True)
class RuleConfig:
    rule: Rule
    enabled: bool
    params: dict[str, Any]  # effective: defaults merged with the stored values
    stored: dict[str, Any]
    notify: dict[str, Any]
    updated_at: datetime | None
    updated_by: str | None


# --- rule configuration --------------------------------------------------------------------------

def ensure_rules(engine: Engine) -> None:
    """Insert a row (enabled, default thresholds) for every rule that has none yet."""
    with engine.connect() as conn:
        have = set(conn.execute(select(AlertRule.slug)).scalars())
    for rule in rules.all_rules():
        if rule.slug in have:
            continue
        try:
            with session_scope(engine) as session:
                session.add(AlertRule(slug=rule.slug, enabled=True, params={}, notify={}, updated_by="system"))
        except IntegrityError:
            pass  # a concurrent evaluator inserted it


def rule_configs(engine: Engine) -> dict[str, RuleConfig]:
    ensure_rules(engine)
    with session_scope(engine) as session:
        rows = {r.slug: r for r in session.execute(select(AlertRule)).scalars()}
        out = {}
        for rule in rules.all_rules():
            row = rows[rule.slug]
            stored = dict(row.params or {})
            out[rule.slug] = RuleConfig(rule, bool(row.enabled), rules.effective_params(rule, stored), stored,
                                        dict(row.notify or {}), row.updated_at, row.updated_by)
        return out


@guarded(Permission.MANAGE_ALERTS)
def configure_rule(engine: Engine, slug: str, *, actor: Actor, enabled: bool | None = None,
                   params: dict[str, Any] | None = None, notify_to: dict[str, Any] | None = None,
                   reset: bool = False, local_receiver: str = "") -> RuleConfig:
    """Change a rule's switch, thresholds or notification targets (admins and managers); audited.
    Webhooks must be public https servers (``notify.webhook_target``); ``local_receiver`` is the
    deployment's one allowed local receiver, if any."""
    rule = rules.get(slug)
    clean = rules.validate_params(rule, params or {})
    targets = (notify.validate_notify(notify_to, local_receiver=local_receiver)
               if notify_to is not None else None)
    ensure_rules(engine)
    with session_scope(engine) as session:
        row = session.get(AlertRule, slug, with_for_update=True)
        assert row is not None  # ensure_rules wrote every rule
        before = {"enabled": row.enabled, "params": row.params, "notify": row.notify}
        if enabled is not None:
            row.enabled = enabled
        if reset:
            row.params = {}
        if clean:
            row.params = {**(row.params or {}), **clean}
        if targets is not None:
            row.notify = targets
        after = {"enabled": row.enabled, "params": row.params, "notify": row.notify}
        if after != before:  # a save that changes nothing is not a change (it wrote an audit entry of equal halves)
            row.updated_at, row.updated_by = utc_now(), actor.username
            audit.record(session, actor=actor.username, action="alert_rule.update", target_type="alert_rule",
                         target_id=slug, before=before, after=after)
    return rule_configs(engine)[slug]


@guarded(Permission.MANAGE_ALERTS)
def configure_rule_from_form(engine: Engine, slug: str, *, actor: Actor, enabled: bool, thresholds: dict[str, Any],
                             emails: str, webhooks: str, reset: bool = False,
                             local_receiver: str = "") -> RuleConfig:
    """``configure_rule`` from the page's form: ``thresholds`` by field name in the units the form
    shows (``rule_form.fields``), comma-separated targets. Only the thresholds that differ from
    the rule's present values are stored, so an untouched one keeps following its default; with
    ``reset``, every untouched one goes back to its default."""
    current = rule_configs(engine)[rules.get(slug).slug]
    params = rule_form.params_from_form(current.rule, current.params, thresholds, reset=reset)

    def split(text: str) -> list[str]:
        return [part.strip() for part in (text or "").split(",") if part.strip()]

    return configure_rule(engine, slug, actor=actor, enabled=enabled, params=params, reset=reset,
                          notify_to={"email": split(emails), "webhook": split(webhooks)},
                          local_receiver=local_receiver)


# --- evaluation ----------------------------------------------------------------------------------

def evaluate(engine: Engine, now: datetime | None = None, *, smtp_url: str = "", deliver: bool = True,
             only: list[str] | None = None, delivery_budget_seconds: float = 30.0,
             local_receiver: str = "") -> EvaluationResult:
    """Run the rules at ``now`` (default: the clock) and open, update or resolve alerts."""
    now = ensure_aware(now or utc_now())
    result = EvaluationResult(now)
    for slug, cfg in rule_configs(engine).items():
        if only and slug not in only:
            continue
        if not cfg.enabled:
            _clear(engine, cfg, set(), now, result, note="The rule was switched off.", immediately=True)
            continue
        try:
            with engine.connect() as conn:
                findings = cfg.rule.check(conn, now, cfg.params)
        except Exception as exc:  # one broken rule must not stop the others; reported, exit code 1
            log.exception("alert rule %s failed", slug)
            result.errors[slug] = f"{type(exc).__name__}: {exc}"[:300]
            continue
        for finding in findings:
            _fire(engine, cfg, finding, now, result)
        _clear(engine, cfg, {f.scope for f in findings}, now, result)
    _set_last_evaluated(engine, now)
    if deliver:
        try:
            result.notifications = notify.deliver_pending(engine, now, smtp_url,
                                                          budget_seconds=delivery_budget_seconds,
                                                          local_receiver=local_receiver)
        except Exception:  # the database hiccuped mid-delivery: the rows stay pending for next time
            log.exception("alert notification delivery stopped early")
    log.info("alerts %s", result.summary())
    return result


def _fire(engine: Engine, cfg: RuleConfig, f: Finding, now: datetime, result: EvaluationResult) -> None:
    fields = {"severity": f.severity, "value": f.value, "baseline": f.baseline, "value_minor": f.value_minor,
              "baseline_minor": f.baseline_minor, "currency": f.currency, "hint": f.hint,
              "details": {**f.details, "rule_title": cfg.rule.title}, "last_fired_at": now,
              "window_start": f.window_start, "window_end": f.window_end, "cleared_since": None}
    for _ in range(3):
        try:
            with session_scope(engine) as session:
                alert = session.execute(
                    select(Alert).where(Alert.rule == cfg.rule.slug, Alert.scope == f.scope,
                                        Alert.status != RESOLVED).with_for_update()).scalar_one_or_none()
                if alert is not None:
                    for key, value in fields.items():
                        setattr(alert, key, value)
                    if alert.status == SNOOZED and alert.snoozed_until and alert.snoozed_until <= now:
                        lifecycle.transition(session, alert, OPEN, actor=SYSTEM, at=now, values={"snoozed_until": None},
                                             note="The snooze ended and the condition still holds.")
                    result.updated.append(alert.id)
                    return
                if _recently_resolved(session, cfg.rule.slug, f, now):
                    return
                alert = Alert(rule=cfg.rule.slug, scope=f.scope, status=OPEN, opened_at=now, **fields)
                session.add(alert)
                session.flush()  # the unique index refuses a second open alert for this rule and scope
                lifecycle.record_opened(session, alert, at=now)
                notify.enqueue(session, alert, cfg.notify, now)
                result.opened.append(alert.id)
                return
        except IntegrityError:
            continue  # a concurrent evaluator opened it first: go round again and update theirs
    raise RuntimeError(f"could not record alert {cfg.rule.slug} {f.scope}")  # pragma: no cover


def _recently_resolved(session: Any, slug: str, f: Finding, now: datetime) -> bool:
    """True when an alert of this rule and scope was resolved within ``REOPEN_QUIET`` before
    ``now`` at the same or a higher severity (so the new one would say nothing new)."""
    from core.alerts.stats import SEVERITY_RANK

    last = session.execute(
        select(Alert).where(Alert.rule == slug, Alert.scope == f.scope, Alert.status == RESOLVED,
                            Alert.resolved_at > now - REOPEN_QUIET, Alert.resolved_at <= now)
        .order_by(Alert.resolved_at.desc()).limit(1)).scalar_one_or_none()
    return last is not None and SEVERITY_RANK.get(f.severity, 0) <= SEVERITY_RANK.get(last.severity, 0)


def _clear(engine: Engine, cfg: RuleConfig, firing: set[str], now: datetime, result: EvaluationResult,
           note: str | None = None, immediately: bool = False) -> None:
    """Mark alerts whose condition no longer holds; resolve those clear for ``auto_resolve_hours``."""
    wait = timedelta(hours=float(cfg.params.get("auto_resolve_hours", 6)))
    with session_scope(engine) as session:
        alerts = session.execute(select(Alert).where(Alert.rule == cfg.rule.slug, Alert.status.in_(ACTIVE))
                                 ).scalars().all()
        for alert in alerts:
            if alert.scope in firing:
                continue
            if alert.cleared_since is None and not immediately:
                session.execute(update(Alert).where(Alert.id == alert.id, Alert.cleared_since.is_(None))
                                .values(cleared_since=now).execution_options(synchronize_session=False))
                if wait > timedelta(0):
                    continue
                alert.cleared_since = now
            if immediately or now - (alert.cleared_since or now) >= wait:  # cleared_since is set above
                text = note or f"The condition has been clear since {alert.cleared_since:%Y-%m-%d %H:%M} UTC."
                if lifecycle.transition(session, alert, RESOLVED, actor=SYSTEM, note=text, at=now,
                                        values={"resolved_at": now, "snoozed_until": None}):
                    result.resolved.append(alert.id)


def _set_last_evaluated(engine: Engine, now: datetime) -> None:
    for _ in range(3):
        try:
            with session_scope(engine) as session:
                row = session.get(Setting, LAST_EVALUATED_KEY, with_for_update=True)
                if row is None:
                    session.add(Setting(key=LAST_EVALUATED_KEY, value=now.isoformat(), updated_by=SYSTEM))
                elif str(row.value) < now.isoformat():  # ISO UTC strings sort in time order
                    row.value, row.updated_at = now.isoformat(), utc_now()
            return
        except IntegrityError:
            continue


def last_evaluated_at(engine: Engine) -> datetime | None:
    with session_scope(engine) as session:
        row = session.get(Setting, LAST_EVALUATED_KEY)
        return datetime.fromisoformat(row.value) if row and row.value else None


def evaluate_if_stale(engine: Engine, now: datetime | None = None, *, max_age_minutes: float = 5,
                      smtp_url: str = "", delivery_budget_seconds: float = 5.0,
                      local_receiver: str = "") -> EvaluationResult | None:
    """Evaluate when the last run is older than ``max_age_minutes`` (the alerts page calls this)."""
    now = ensure_aware(now or utc_now())
    last = last_evaluated_at(engine)
    if last is not None and now - last < timedelta(minutes=max_age_minutes):
        return None
    return evaluate(engine, now, smtp_url=smtp_url, delivery_budget_seconds=delivery_budget_seconds,
                    local_receiver=local_receiver)
