"""Notifications for new alerts: e-mail over SMTP and a chat webhook (a JSON POST).

Guarantees: a notification row is written in the same transaction that opens its alert, so it
cannot be lost; delivery happens afterwards, with short timeouts, and never raises into the
evaluation. Each attempt is claimed with a compare-and-set on ``next_attempt_at`` so two
evaluators never send the same message twice at once. A failure stores its error and schedules a
retry with exponential backoff (5 minutes doubling, at most 6 hours); after ``MAX_ATTEMPTS`` the
row is marked ``failed`` and logged as an error (it stays visible on the alerts page).
"""

from __future__ import annotations

import json
import logging
import smtplib
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import Engine, or_, select, update
from sqlalchemy.orm import Session

from core.db import affected_rows, session_scope
from core.models import Alert, Notification

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
TIMEOUT_SECONDS = 5
LEASE = timedelta(minutes=2)  # a crashed sender's claim expires after this
BATCH = 50


def backoff(attempts: int) -> timedelta:
    doublings: int = 2 ** max(attempts - 1, 0)
    return min(timedelta(minutes=5) * doublings, timedelta(hours=6))


def targets(notify: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(channel, target) pairs from a rule's ``notify`` setting: {"email": [...], "webhook": "..."}."""
    notify = notify or {}
    out: list[tuple[str, str]] = []
    emails = notify.get("email") or []
    for address in [emails] if isinstance(emails, str) else emails:
        if str(address).strip():
            out.append(("email", str(address).strip()))
    hooks = notify.get("webhook") or []
    for url in [hooks] if isinstance(hooks, str) else hooks:
        if str(url).strip():
            out.append(("webhook", str(url).strip()))
    return out


def validate_notify(notify: dict[str, Any]) -> dict[str, Any]:
    """Raise ValueError (a sentence) unless ``notify`` is a list of addresses and http(s) URLs."""
    clean: dict[str, Any] = {"email": [], "webhook": []}
    for channel, target in targets(notify):
        if channel == "email" and ("@" not in target or " " in target):
            raise ValueError(f"“{target}” is not an e-mail address.")
        if channel == "webhook" and urlsplit(target).scheme not in ("http", "https"):
            raise ValueError(f"“{target}” is not an http(s) address for the webhook.")
        clean[channel].append(target)
    unknown = set(notify) - {"email", "webhook"}
    if unknown:
        raise ValueError(f"Notifications go by email or webhook, not {', '.join(sorted(unknown))}.")
    return clean


def enqueue(session: Session, alert: Alert, notify: dict[str, Any] | None, now: datetime) -> None:
    for channel, target in targets(notify):
        session.add(Notification(alert_id=alert.id, channel=channel, target=target, status="pending",
                                 attempts=0, created_at=now, next_attempt_at=now))


@dataclass(frozen=True, slots=True)
class Message:
    subject: str
    body: str
    payload: dict[str, Any]


def message_for(alert: Alert) -> Message:
    subject = f"[Memberdesk {alert.severity}] {alert.rule} {alert.scope}"
    body = f"{alert.hint}\n\nAlert {alert.id}, opened {alert.opened_at:%Y-%m-%d %H:%M} UTC, status {alert.status}."
    payload = {"text": f"{subject}: {alert.hint}", "alert": {
        "id": alert.id, "rule": alert.rule, "scope": alert.scope, "severity": alert.severity,
        "status": alert.status, **alert.measured(), "hint": alert.hint,
        "opened_at": alert.opened_at.isoformat()}}
    return Message(subject, body, payload)


def send_email(smtp_url: str, to: str, message: Message) -> None:
    """smtp://[user:password@]host[:port][?from=alerts@example.com&starttls=1]; smtps:// for TLS."""
    if not smtp_url:
        raise RuntimeError("no SMTP server is configured (set MEMBERDESK_SMTP_URL)")
    parts = urlsplit(smtp_url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    sender = query.get("from", "memberdesk@localhost")
    email = EmailMessage()
    email["From"], email["To"], email["Subject"] = sender, to, message.subject
    email.set_content(message.body)
    smtp_cls = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
    with smtp_cls(parts.hostname or "localhost", parts.port or (465 if parts.scheme == "smtps" else 25),
                  timeout=TIMEOUT_SECONDS) as smtp:
        if query.get("starttls") in ("1", "true", "yes"):
            smtp.starttls()
        if parts.username:
            smtp.login(unquote(parts.username), unquote(parts.password or ""))
        smtp.send_message(email)


def send_webhook(url: str, message: Message) -> None:
    request = urllib.request.Request(url, data=json.dumps(message.payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 (admin-set URL)
        if not 200 <= response.status < 300:
            raise RuntimeError(f"the webhook answered HTTP {response.status}")


def _describe(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"the webhook answered HTTP {exc.code}"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


def deliver_pending(engine: Engine, now: datetime, smtp_url: str = "", *,
                    budget_seconds: float = 30.0) -> dict[str, int]:
    """Send what is due; returns counts {"sent": n, "retry": n, "failed": n}. Never raises for a send.

    Stops starting new sends after ``budget_seconds`` (a hanging mail server must not hold cron or
    a page for minutes); whatever is left stays pending for the next evaluation."""
    counts = {"sent": 0, "retry": 0, "failed": 0}
    deadline = time.monotonic() + budget_seconds
    with session_scope(engine) as session:
        due = session.execute(
            select(Notification.id).where(Notification.status == "pending",
                                          or_(Notification.next_attempt_at.is_(None),
                                              Notification.next_attempt_at <= now))
            .order_by(Notification.id).limit(BATCH)).scalars().all()
    for nid in due:
        if time.monotonic() > deadline:
            break
        with session_scope(engine) as session:
            claimed = affected_rows(session.execute(
                update(Notification).where(Notification.id == nid, Notification.status == "pending",
                                           or_(Notification.next_attempt_at.is_(None),
                                               Notification.next_attempt_at <= now))
                .values(next_attempt_at=now + LEASE, attempts=Notification.attempts + 1)
                .execution_options(synchronize_session=False)))
            if claimed != 1:
                continue  # another evaluator is on it
            note = session.get(Notification, nid)
            assert note is not None  # claimed just now
            alert = session.get(Alert, note.alert_id)
            assert alert is not None  # a notification's alert is never deleted
            channel, target, attempts = note.channel, note.target, note.attempts
            message = message_for(alert)
        error = None
        try:
            if channel == "email":
                send_email(smtp_url, target, message)
            else:
                send_webhook(target, message)
        except Exception as exc:  # any failure is recorded and retried, never raised into evaluation
            error = _describe(exc)
        with session_scope(engine) as session:
            note = session.get(Notification, nid)
            assert note is not None  # claimed above
            if error is None:
                note.status, note.sent_at, note.last_error, note.next_attempt_at = "sent", now, None, None
                counts["sent"] += 1
                log.info("alert notification sent: alert=%s channel=%s", note.alert_id, channel)
            elif attempts >= MAX_ATTEMPTS:
                note.status, note.last_error, note.next_attempt_at = "failed", error, None
                counts["failed"] += 1
                log.error("alert notification gave up after %d attempts: alert=%s channel=%s error=%s",
                          attempts, note.alert_id, channel, error)
            else:
                note.last_error, note.next_attempt_at = error, now + backoff(attempts)
                counts["retry"] += 1
                log.warning("alert notification failed, retrying later: alert=%s channel=%s attempt=%d error=%s",
                            note.alert_id, channel, attempts, error)
    return counts
