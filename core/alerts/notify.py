"""Notifications for new alerts: e-mail over SMTP and a chat webhook (a JSON POST).

Guarantees: a notification row is written in the same transaction that opens its alert, so it
cannot be lost; delivery happens afterwards, with short timeouts, and never raises into the
evaluation. Each attempt is claimed with a compare-and-set on ``next_attempt_at`` so two
evaluators never send the same message twice at once. A failure stores its error and schedules a
retry with exponential backoff (5 minutes doubling, at most 6 hours); after ``MAX_ATTEMPTS`` the
row is marked ``failed`` and logged as an error (it stays visible on the alerts page).

Webhooks go only to public https servers (managers type the URL; the server sends it, from inside
our network): the host must resolve to public addresses only (no loopback, private, link-local,
shared, reserved, multicast or unspecified address, IPv4-mapped ones included), checked when a rule
is saved and again at every send, and the request goes to the address that was checked, so a name
that changes its answer in between (DNS rebinding) cannot redirect it. Redirects are not followed and
the receiver's answer is reduced to its status code: nothing it sends back is stored or shown. For
development and tests one named local receiver (``http://127.0.0.1:8765``: scheme, host and port)
may be allowed by the deployment setting ``MEMBERDESK_ALERT_WEBHOOK_LOCAL_RECEIVER``; off by default.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

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


def validate_notify(notify: dict[str, Any], *, local_receiver: str = "") -> dict[str, Any]:
    """Raise ValueError (a sentence) unless ``notify`` is a list of addresses and webhook URLs we
    may send to (``webhook_target``)."""
    clean: dict[str, Any] = {"email": [], "webhook": []}
    for channel, target in targets(notify):
        if channel == "email" and ("@" not in target or " " in target):
            raise ValueError(f"“{target}” is not an e-mail address.")
        if channel == "webhook":
            webhook_target(target, local_receiver)
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


# --- webhooks: where they may go ------------------------------------------------------------------

class WebhookRefused(ValueError):
    """A webhook address alerts may not be sent to; str(error) is the sentence to show."""


class WebhookAnswered(RuntimeError):
    """The receiver answered with something other than 2xx; str(error) names only the status."""


Resolver = Callable[[str, int], list[str]]


def _system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (empty when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public_address(text: str) -> bool:
    """True for an address on the public internet; False for loopback, private, link-local, shared
    (100.64/10), reserved, multicast and unspecified ones, and for IPv4 ones hidden in IPv6."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_reserved
                                 or ip.is_multicast or ip.is_unspecified)


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """Where one webhook request goes: ``host`` names the server (TLS and the Host header),
    ``address`` is the checked address the connection is made to (None: the named local receiver)."""

    scheme: str
    host: str
    port: int
    path: str
    address: str | None

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.address is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            return cls(self.host, self.port, timeout=timeout)
        return _PinnedHTTPSConnection(self.host, self.port, self.address, timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to ``host`` (its certificate is checked against the name) over a connection to
    ``address``, the one that was checked, not whatever the name resolves to a moment later."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self._tls)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


def _origin(parts: SplitResult) -> str:
    """``scheme://host:port``, the port spelled out: what the local receiver setting names."""
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{parts.hostname}:{port or (443 if parts.scheme == 'https' else 80)}"


def webhook_target(url: str, local_receiver: str = "", *, resolve: Resolver = _system_resolver) -> WebhookTarget:
    """Where ``url`` may be sent, or ``WebhookRefused``: https to a host whose every address is
    public (``resolve`` gives them; the system's resolver unless a caller brings its own), or the
    one named local receiver."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        raise WebhookRefused(f"“{url}” has a port that is not a number from 1 to 65535.") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname or ""
    if local_receiver and host and _origin(parts) == _origin(urlsplit(local_receiver.strip())):
        return WebhookTarget(parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path, None)
    if parts.scheme != "https" or not host:
        raise WebhookRefused(f"“{url}” is not an https address; alert webhooks go only to https servers.")
    addresses = resolve(host, port or 443)
    if not addresses or not all(is_public_address(a) for a in addresses):
        # One sentence whether the name is unknown or private: the answer tells nobody which.
        raise WebhookRefused(f"“{host}” is not a public internet server; alert webhooks go only to https "
                             "servers whose every address is public.")
    return WebhookTarget("https", host, port or 443, path, addresses[0])


def send_webhook(url: str, message: Message, *, local_receiver: str = "") -> None:
    """POST the message as JSON, checking the address again first (a rule saved earlier, or a name
    whose addresses changed since). Only the status is read from the answer."""
    target = webhook_target(url, local_receiver)
    conn = target.connection(TIMEOUT_SECONDS)
    try:
        conn.request("POST", target.path, body=json.dumps(message.payload).encode(),
                     headers={"Content-Type": "application/json"})
        status = conn.getresponse().status
    finally:
        conn.close()
    if not 200 <= status < 300:
        raise WebhookAnswered(f"the webhook answered HTTP {status}")


def _describe(channel: str, exc: Exception) -> str:
    """The error kept on the notification and shown on the Alerts page. For a webhook our own
    sentence or the kind of failure only: a manager chose the address, and the text of a remote's
    answer or of its connection error is not theirs to read through us."""
    if channel == "webhook":
        if isinstance(exc, WebhookRefused | WebhookAnswered):
            return str(exc)
        if isinstance(exc, TimeoutError):
            return f"the webhook did not answer within {TIMEOUT_SECONDS} seconds"
        return f"the webhook could not be reached ({type(exc).__name__})"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


def deliver_pending(engine: Engine, now: datetime, smtp_url: str = "", *,
                    budget_seconds: float = 30.0, local_receiver: str = "") -> dict[str, int]:
    """Send what is due; returns counts {"sent": n, "retry": n, "failed": n}. Never raises for a send.
    ``local_receiver``: the one local webhook receiver allowed (development and tests; see above).

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
                send_webhook(target, message, local_receiver=local_receiver)
        except Exception as exc:  # any failure is recorded and retried, never raised into evaluation
            error = _describe(channel, exc)
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
