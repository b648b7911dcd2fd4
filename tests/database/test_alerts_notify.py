"""Notifications against a real local SMTP server and a real local HTTP receiver: delivered once,
failures recorded and retried with backoff on later evaluations, never lost and never blocking.

Webhooks go only to public https servers; the local receiver here is allowed as the deployment's
one named local receiver (``local_receiver``, the setting MEMBERDESK_ALERT_WEBHOOK_LOCAL_RECEIVER),
and the tests below show what is refused without it, when saved and when sent."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from core.alerts import configure_rule, evaluate, list_alerts
from core.alerts.notify import MAX_ATTEMPTS, WebhookRefused, webhook_target
from core.db import session_scope
from core.models import AlertRule, Notification
from core.permissions import Actor
from tests.support.factories import at, make_sync_run

NOW = at("2026-03-10 23:00")
MINUTE = timedelta(minutes=1)


class _SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) for smtplib: greet, accept every command, collect DATA."""

    def handle(self) -> None:
        self.wfile.write(b"220 localhost test SMTP\r\n")
        lines: list[bytes] = []
        in_data = False
        while line := self.rfile.readline():
            if in_data:
                if line in (b".\r\n", b".\n"):
                    self.server.messages.append(b"".join(lines).decode())
                    lines, in_data = [], False
                    self.wfile.write(b"250 queued\r\n")
                else:
                    lines.append(line[1:] if line.startswith(b"..") else line)
                continue
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.wfile.write(b"250-localhost\r\n250 OK\r\n")
            elif verb == b"DATA":
                in_data = True
                self.wfile.write(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 OK\r\n")


@pytest.fixture
def smtp_server() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SMTPHandler)
    server.daemon_threads = True
    server.messages = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def webhook() -> Iterator[ThreadingHTTPServer]:
    """Records JSON bodies; answers with the next code in ``server.codes`` (200 when empty)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(self.server.delay)
            code = self.server.codes.pop(0) if self.server.codes else 200
            if code == 200:
                self.server.received.append(json.loads(body))
            self.send_response(code)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.received, server.codes, server.delay = [], [], 0.0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def firing_world(session, engine, local_receiver: str = "", **notify) -> None:
    make_sync_run(session, started_at=NOW - timedelta(hours=10), finished_at=NOW - timedelta(hours=10))
    session.commit()
    configure_rule(engine, "stripe_stale", actor=Actor.of("ann", ["admin"]), notify_to=notify,
                   local_receiver=local_receiver)


def receiver(server: ThreadingHTTPServer) -> str:
    """The test receiver as the local receiver setting names it."""
    return f"http://127.0.0.1:{server.server_port}"


def notes(session) -> list[Notification]:
    session.expire_all()
    return session.scalars(select(Notification).order_by(Notification.id)).all()


def test_email_and_webhook_are_delivered_once(engine, session, smtp_server, webhook):
    url = f"{receiver(webhook)}/hook"
    firing_world(session, engine, receiver(webhook), email=["ops@example.com"], webhook=[url])
    smtp = f"smtp://127.0.0.1:{smtp_server.server_address[1]}?from=alerts@memberdesk.test"
    result = evaluate(engine, NOW, smtp_url=smtp, local_receiver=receiver(webhook))
    assert result.notifications == {"sent": 2, "retry": 0, "failed": 0}
    evaluate(engine, NOW + MINUTE, smtp_url=smtp, local_receiver=receiver(webhook))  # the alert repeats: no second message
    assert [(n.channel, n.status, n.attempts) for n in notes(session)] == [("email", "sent", 1), ("webhook", "sent", 1)]
    assert len(smtp_server.messages) == 1
    mail = smtp_server.messages[0]
    assert "To: ops@example.com" in mail and "Subject: [Memberdesk medium] stripe_stale sync" in mail
    assert "No successful Stripe sync" in mail
    assert len(webhook.received) == 1
    body = webhook.received[0]
    assert body["alert"]["rule"] == "stripe_stale" and body["alert"]["scope"] == "sync"
    assert body["text"].startswith("[Memberdesk medium] stripe_stale sync: No successful Stripe sync")


def test_a_failed_webhook_is_recorded_and_retried_with_backoff(engine, session, webhook):
    webhook.codes = [500]
    firing_world(session, engine, receiver(webhook), webhook=f"{receiver(webhook)}/hook")
    evaluate(engine, NOW, local_receiver=receiver(webhook))
    assert len(list_alerts(engine, status="open")) == 1  # the alert itself is not held back
    [n] = notes(session)
    assert (n.status, n.attempts, n.last_error) == ("pending", 1, "the webhook answered HTTP 500")
    assert n.next_attempt_at == NOW + 5 * MINUTE
    evaluate(engine, NOW + MINUTE, local_receiver=receiver(webhook))  # not due yet
    assert notes(session)[0].attempts == 1
    evaluate(engine, NOW + 6 * MINUTE, local_receiver=receiver(webhook))
    [n] = notes(session)
    assert (n.status, n.attempts, n.last_error, n.sent_at) == ("sent", 2, None, NOW + 6 * MINUTE)
    assert len(webhook.received) == 1


def test_an_unreachable_mail_server_gives_up_visibly(engine, session):
    firing_world(session, engine, email="ops@example.com")
    when = NOW
    for _ in range(MAX_ATTEMPTS):
        evaluate(engine, when, only=["stripe_stale"])  # no SMTP server configured at all
        when += timedelta(hours=7)  # past the longest backoff
    [n] = notes(session)
    assert (n.status, n.attempts) == ("failed", MAX_ATTEMPTS)
    assert n.last_error == "RuntimeError: no SMTP server is configured (set MEMBERDESK_SMTP_URL)"
    evaluate(engine, when)
    assert notes(session)[0].attempts == MAX_ATTEMPTS  # given up: no more tries


def test_a_refused_connection_is_recorded(engine, session):
    free = socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler)
    port = free.server_address[1]
    free.server_close()  # nothing listens there now
    firing_world(session, engine, email="ops@example.com")
    evaluate(engine, NOW, smtp_url=f"smtp://127.0.0.1:{port}")
    [n] = notes(session)
    assert n.status == "pending" and n.last_error.startswith("ConnectionRefusedError")


def test_a_slow_receiver_does_not_hold_the_evaluation(engine, session, webhook):
    webhook.delay = 0.6
    url = f"{receiver(webhook)}/hook"
    firing_world(session, engine, receiver(webhook), webhook=[f"{url}/a", f"{url}/b", f"{url}/c"])
    result = evaluate(engine, NOW, delivery_budget_seconds=0.3, local_receiver=receiver(webhook))
    assert len(result.opened) == 1 and result.notifications["sent"] == 1  # then the budget was spent
    assert [n.status for n in notes(session)] == ["sent", "pending", "pending"]
    evaluate(engine, NOW + MINUTE, local_receiver=receiver(webhook))  # the rest go out on the next run
    assert [n.status for n in notes(session)] == ["sent", "sent", "sent"]


REFUSED_SENTENCE = "is not a public internet server; alert webhooks go only to https servers whose every address is public."


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/hook", "https://localhost:8443/hook", "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.5/hook", "https://172.16.0.1/hook", "https://192.168.1.1/hook", "https://100.64.0.1/hook",
    "https://[::1]/hook", "https://[::ffff:127.0.0.1]/hook", "https://[fe80::1]/hook", "https://[fd00::1]/hook",
    "https://0.0.0.0/hook", "https://224.0.0.1/hook", "https://240.0.0.1/hook", "https://2130706433/hook",
])
def test_a_webhook_to_a_local_private_or_reserved_address_is_refused_when_saved(engine, url):
    with pytest.raises(ValueError) as refused:
        configure_rule(engine, "stripe_stale", actor=Actor.of("mia", ["manager"]), notify_to={"webhook": [url]})
    assert str(refused.value).endswith(REFUSED_SENTENCE)
    assert _stored_notify(engine) == {}


@pytest.mark.parametrize("url", ["http://example.com/hook", "ftp://example.com/hook", "example.com/hook"])
def test_a_webhook_that_is_not_https_is_refused_when_saved(engine, url):
    with pytest.raises(ValueError) as refused:
        configure_rule(engine, "stripe_stale", actor=Actor.of("mia", ["manager"]), notify_to={"webhook": [url]})
    assert str(refused.value) == f"“{url}” is not an https address; alert webhooks go only to https servers."
    assert _stored_notify(engine) == {}


def test_a_local_receiver_is_refused_unless_the_setting_names_it(engine, webhook):
    url = f"{receiver(webhook)}/hook"
    with pytest.raises(ValueError):
        configure_rule(engine, "stripe_stale", actor=Actor.of("mia", ["manager"]), notify_to={"webhook": [url]})
    # another port on the same host is another server: not the one named
    with pytest.raises(ValueError):
        configure_rule(engine, "stripe_stale", actor=Actor.of("mia", ["manager"]), notify_to={"webhook": [url]},
                       local_receiver=f"http://127.0.0.1:{webhook.server_port + 1}")
    configure_rule(engine, "stripe_stale", actor=Actor.of("mia", ["manager"]), notify_to={"webhook": [url]},
                   local_receiver=receiver(webhook))
    assert _stored_notify(engine) == {"email": [], "webhook": [url]}


def test_every_address_a_name_resolves_to_must_be_public():
    """A name with one public and one private address is refused: a client may connect to either."""
    def resolver(*addresses: str):
        return lambda host, port: list(addresses)

    with pytest.raises(WebhookRefused):
        webhook_target("https://hooks.example.com/x", resolve=resolver("93.184.216.34", "10.0.0.7"))
    with pytest.raises(WebhookRefused):
        webhook_target("https://hooks.example.com/x", resolve=resolver("2606:2800:220:1::1", "::1"))
    with pytest.raises(WebhookRefused):
        webhook_target("https://unknown.example.com/x", resolve=resolver())  # does not resolve
    target = webhook_target("https://hooks.example.com:8443/x?a=1", resolve=resolver("93.184.216.34"))
    # the request goes to the address that was checked, under the name (TLS, Host header)
    assert (target.host, target.port, target.path, target.address) == ("hooks.example.com", 8443, "/x?a=1",
                                                                       "93.184.216.34")


def test_a_webhook_saved_before_is_checked_again_when_sent(engine, session, webhook):
    """A rule saved with a local address (before this check existed, or while the local receiver
    setting allowed it) sends nothing to it: the notification says why and the receiver gets nothing."""
    make_sync_run(session, started_at=NOW - timedelta(hours=10), finished_at=NOW - timedelta(hours=10))
    session.commit()
    configure_rule(engine, "stripe_stale", actor=Actor.of("ann", ["admin"]))  # the rule's row exists
    with session_scope(engine) as s:
        s.get(AlertRule, "stripe_stale").notify = {"email": [], "webhook": [f"{receiver(webhook)}/hook"]}
    evaluate(engine, NOW)
    [n] = notes(session)
    assert n.status == "pending" and n.last_error == (
        f"“{receiver(webhook)}/hook” is not an https address; alert webhooks go only to https servers.")
    assert webhook.received == []


def test_what_a_receiver_answers_is_not_stored_or_shown(engine, session):
    """Not an HTTP server (a banner instead of a status line): the error names the kind of failure,
    not the bytes the receiver sent."""
    banner = socketserver.TCPServer(("127.0.0.1", 0), _Banner)
    threading.Thread(target=banner.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{banner.server_address[1]}"
    try:
        firing_world(session, engine, url, webhook=f"{url}/hook")
        evaluate(engine, NOW, local_receiver=url)
    finally:
        banner.shutdown()
        banner.server_close()
    [n] = notes(session)
    assert n.status == "pending" and n.last_error == "the webhook could not be reached (BadStatusLine)"


class _Banner(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.rfile.readline()
        self.wfile.write(b"SSH-2.0-internal-secret-banner\r\n")


def _stored_notify(engine) -> dict:
    with session_scope(engine) as s:
        rule = s.get(AlertRule, "stripe_stale")
        return dict(rule.notify or {}) if rule is not None else {}
