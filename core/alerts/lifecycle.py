"""The alert lifecycle: open -> acknowledged -> resolved, with snooze.

Every status change is a compare-and-set (``UPDATE ... WHERE id = :id AND status = :seen``), so
two evaluators, or an evaluator and a person, can never both apply a transition; the winner
writes one ``alert_transitions`` row (who, when, note) and one audit-log entry in the same
transaction. People act through ``acknowledge``, ``resolve`` and ``snooze``, which check the
MANAGE_ALERTS permission here in core.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from core import audit
from core.db import affected_rows, session_scope
from core.models import Alert, AlertTransition
from core.permissions import Actor, Permission, guarded
from core.timeutil import ensure_aware, utc_now

OPEN, ACKNOWLEDGED, SNOOZED, RESOLVED = "open", "acknowledged", "snoozed", "resolved"
STATUSES = (OPEN, ACKNOWLEDGED, SNOOZED, RESOLVED)
ACTIVE = (OPEN, ACKNOWLEDGED, SNOOZED)
SYSTEM = "system:alerts"
MAX_NOTE = 2000
MAX_SNOOZE_HOURS = 24 * 30


class AlertError(ValueError):
    """An alert action that cannot be done; str(error) is the sentence to show."""


def transition(session: Session, alert: Alert, to_status: str, *, actor: str, note: str | None, at: datetime,
               values: dict[str, Any] | None = None) -> bool:
    """Move ``alert`` from the status it had when read to ``to_status``; False if someone was faster."""
    seen = alert.status
    changes = {"status": to_status, **(values or {})}
    done = affected_rows(session.execute(
        update(Alert).where(Alert.id == alert.id, Alert.status == seen).values(**changes)
        .execution_options(synchronize_session=False)
    ))
    if done != 1:
        return False
    for key, value in changes.items():
        setattr(alert, key, value)
    session.add(AlertTransition(alert_id=alert.id, at=at, actor=actor, from_status=seen, to_status=to_status,
                                note=note))
    audit.record(session, actor=actor, action=f"alert.{to_status}", target_type="alert", target_id=alert.id,
                 comment=note, before={"status": seen},
                 after={"status": to_status, "rule": alert.rule, "scope": alert.scope, "severity": alert.severity},
                 at=at)
    return True


def record_opened(session: Session, alert: Alert, *, at: datetime) -> None:
    """The first transition of a new alert (its insert is the compare-and-set, via the unique index)."""
    session.add(AlertTransition(alert_id=alert.id, at=at, actor=SYSTEM, from_status=None, to_status=OPEN,
                                note=alert.hint))
    audit.record(session, actor=SYSTEM, action="alert.open", target_type="alert", target_id=alert.id,
                 comment=alert.hint, after={"status": OPEN, "rule": alert.rule, "scope": alert.scope,
                                            "severity": alert.severity, **alert.measured()}, at=at)


def _clean_note(note: str | None, *, required: bool) -> str | None:
    note = (note or "").strip()
    if required and not note:
        raise AlertError("Please write a note saying why.")
    if "\x00" in note:
        raise AlertError("The note contains a NUL character, which cannot be stored; remove it and try again.")
    if len(note) > MAX_NOTE:
        raise AlertError(f"The note is too long: keep it under {MAX_NOTE} characters.")
    return note or None


REPEAT_WINDOW = timedelta(minutes=1)


def _just_done(session: Session, alert: Alert, actor: str, note: str | None, now: datetime) -> bool:
    """Whether the alert's latest transition is this same action by the same person with the same
    note within a minute. A double click on Resolve sent the form twice: the second press arrived
    with the form cleared ("Please write a note saying why.") and stopped the first's run, so
    the alert stayed snoozed; a repeat is now answered as the first."""
    last = session.scalars(select(AlertTransition).where(AlertTransition.alert_id == alert.id)
                           .order_by(AlertTransition.at.desc(), AlertTransition.id.desc()).limit(1)).first()
    return (last is not None and last.to_status == alert.status and last.actor == actor and last.note == note
            and abs(ensure_aware(last.at) - now) <= REPEAT_WINDOW)


def _act(engine: Engine, alert_id: int, *, actor: Actor, allowed_from: tuple[str, ...],
         to_status: str, note: str | None, now: datetime | None, values: dict[str, Any] | None = None) -> Alert:
    now = ensure_aware(now or utc_now())
    with session_scope(engine) as session:
        alert = session.execute(select(Alert).where(Alert.id == alert_id).with_for_update()).scalar_one_or_none()
        if alert is None:
            raise AlertError(f"There is no alert number {alert_id}.")
        if alert.status == to_status and _just_done(session, alert, actor.username, note, now):
            return alert  # the same press again (a double click): done once, said once
        if alert.status not in allowed_from:
            raise AlertError(f"Alert {alert_id} is {alert.status}; it cannot be marked {to_status} from there.")
        if not transition(session, alert, to_status, actor=actor.username, note=note, at=now, values=values):
            raise AlertError(f"Alert {alert_id} changed meanwhile; reload it and try again.")
        return alert


@guarded(Permission.MANAGE_ALERTS)
def acknowledge(engine: Engine, alert_id: int, *, actor: Actor,
                note: str | None = None, now: datetime | None = None) -> Alert:
    """Someone is looking at it: the alert stays until its condition clears or it is resolved."""
    return _act(engine, alert_id, actor=actor, allowed_from=(OPEN, SNOOZED), to_status=ACKNOWLEDGED,
                note=_clean_note(note, required=False), now=now, values={"snoozed_until": None})


@guarded(Permission.MANAGE_ALERTS)
def resolve(engine: Engine, alert_id: int, *, actor: Actor, note: str,
            now: datetime | None = None) -> Alert:
    """Close the alert by hand; if its condition still holds, the next evaluation opens a new one."""
    clean = _clean_note(note, required=True)
    when = ensure_aware(now or utc_now())
    return _act(engine, alert_id, actor=actor, allowed_from=ACTIVE, to_status=RESOLVED, note=clean,
                now=when, values={"resolved_at": when, "snoozed_until": None})


@guarded(Permission.MANAGE_ALERTS)
def snooze(engine: Engine, alert_id: int, *, actor: Actor, hours: float,
           note: str, now: datetime | None = None) -> Alert:
    """Silence the alert for ``hours``; it comes back open if its condition still holds then."""
    clean = _clean_note(note, required=True)
    try:
        hours = float(hours)
    except (TypeError, ValueError):
        raise AlertError("Snooze for a number of hours, such as 4.") from None
    if not 0 < hours <= MAX_SNOOZE_HOURS:
        raise AlertError(f"Snooze for between a few minutes and {MAX_SNOOZE_HOURS // 24} days.")
    when = ensure_aware(now or utc_now())
    return _act(engine, alert_id, actor=actor, allowed_from=(OPEN, ACKNOWLEDGED, SNOOZED),
                to_status=SNOOZED, note=clean, now=when, values={"snoozed_until": when + timedelta(hours=hours)})
