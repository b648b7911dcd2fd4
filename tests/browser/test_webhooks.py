"""Stripe webhooks on the dashboard's own server, over real HTTP.

One real server process (``streamlit run dashboard/serve.py``, as ``make run`` serves it) and one
real sandbox process that delivers its events there, signed with the shared secret. A change made
through the ``stripe`` client reaches our database through the webhook alone (no sync runs).
Deliveries that are not genuine are refused with 400 and leave no trace; a duplicate is recorded
once. Signatures in these tests are computed here with ``hmac`` as Stripe documents them, not with
our own signer.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import stripe
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.models import Member
from core.models.stripe_sync import StripeEvent, SyncRun
from tests.support.db import BACKENDS, PG_URL, migrated_sqlite, scratch_pg_database
from tests.support.payloads import WEBHOOK_SECRET, sign
from tests.support.sandbox import API_KEY, SandboxProcess
from tests.support.servers import free_port, start_server, stop_server

WEBHOOK_BUDGET = 2.0  # seconds from the stripe client's answer to the row in our database


@dataclass
class Stack:
    url: str  # the dashboard server
    engine: Engine
    client: stripe.StripeClient  # pointed at the sandbox


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("webhooks")
    if request.param == "sqlite":
        database_url = migrated_sqlite(tmp / "memberdesk.db")
        with _running(tmp, database_url) as s:
            yield s
    else:
        if not PG_URL:
            pytest.skip("TEST_DATABASE_URL is not set")
        with scratch_pg_database("webhooks") as database_url, _running(tmp, database_url) as s:
            yield s


class _running:
    """The sandbox (delivering to the server) and the server (reading the sandbox), both real."""

    def __init__(self, tmp: Path, database_url: str) -> None:
        self.tmp, self.database_url = tmp, database_url

    def __enter__(self) -> Stack:
        server_port = free_port()
        self.sandbox = SandboxProcess(self.tmp / "sandbox.db", webhook_url=f"http://127.0.0.1:{server_port}/stripe/webhook",
                                      webhook_secret=WEBHOOK_SECRET).start()
        self.server = start_server(self.tmp, database_url=self.database_url, port=server_port, stripe_settings={
            "api_key": API_KEY, "api_base": self.sandbox.url, "webhook_secret": WEBHOOK_SECRET})
        return Stack(self.server.url, self.server.engine, self.sandbox.client())

    def __exit__(self, *exc: object) -> None:
        stop_server(self.server.proc)
        self.server.engine.dispose()
        self.sandbox.stop()


# ------------------------------------------------------------------------------------------ helpers

def _post(url: str, payload: str, signature: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    req = urllib.request.Request(url + "/stripe/webhook", data=payload.encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _event(customer_id: str) -> dict[str, Any]:
    """A ``customer.updated`` event shaped like the sandbox's, with an id of its own."""
    return {"id": f"evt_test_{secrets.token_hex(12)}", "object": "event", "api_version": "2026-10-28.clover",
            "created": int(time.time()), "type": "customer.updated", "livemode": False, "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "data": {"object": {"id": customer_id, "object": "customer", "email": f"{customer_id}@example.com",
                                "name": "Hook Test", "created": int(time.time()), "metadata": {}}}}


def _ledger_row(engine: Engine, event_id: str) -> list[StripeEvent]:
    with Session(engine) as s:
        return list(s.scalars(select(StripeEvent).where(StripeEvent.id == event_id)))


def _wait_for(check: Any, *, limit: float = 15.0) -> float:
    """Seconds until ``check()`` is true (polled every 20 ms); fails after ``limit``."""
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < limit, "not within the time limit"
        time.sleep(0.02)
    return time.monotonic() - t0


def _member(engine: Engine, customer_id: str) -> tuple[str, str] | None:
    with Session(engine) as s:
        row = s.execute(select(Member.name, Member.email).where(Member.stripe_customer_id == customer_id)).first()
    return (row.name, row.email) if row else None


# ------------------------------------------------------------------------------------------ tests

def test_a_change_in_the_sandbox_reaches_the_database_through_the_webhook(stack: Stack) -> None:
    email = f"webhook-{secrets.token_hex(4)}@example.com"
    customer = stack.client.v1.customers.create(params={"email": email, "name": "Wanda Hook"})
    took = _wait_for(lambda: _member(stack.engine, customer.id) is not None)
    assert took <= WEBHOOK_BUDGET, f"the new customer reached the database after {took:.2f} s"
    assert _member(stack.engine, customer.id) == ("Wanda Hook", email)

    stack.client.v1.customers.update(customer.id, params={"name": "Wanda Hook-Renamed"})
    took = _wait_for(lambda: (_member(stack.engine, customer.id) or ("", ""))[0] == "Wanda Hook-Renamed")
    assert took <= WEBHOOK_BUDGET, f"the rename reached the database after {took:.2f} s"

    with Session(stack.engine) as s:
        rows = s.execute(select(StripeEvent.source, StripeEvent.processed_at)
                         .where(StripeEvent.object_id == customer.id)).all()
    assert rows and all(r.source == "webhook" and r.processed_at is not None for r in rows)


@pytest.mark.parametrize("how", ["other secret", "stale", "unsigned", "changed body"])
def test_a_delivery_that_is_not_genuine_gets_400_and_records_nothing(stack: Stack, how: str) -> None:
    event = _event("cus_not_genuine")
    payload = json.dumps(event)
    now = int(time.time())
    signature: str | None = {
        "other secret": sign(payload, "whsec_someone_else", now),
        "stale": sign(payload, WEBHOOK_SECRET, now - 301),  # just past Stripe's five-minute tolerance
        "unsigned": None,
        "changed body": sign(payload.replace("Hook Test", "Hook Tset"), WEBHOOK_SECRET, now),
    }[how]
    status, body = _post(stack.url, payload, signature)
    assert status == 400
    assert body["error"]
    assert WEBHOOK_SECRET not in json.dumps(body)
    assert _ledger_row(stack.engine, event["id"]) == []


def test_an_oversized_body_gets_400_before_it_is_read(stack: Stack) -> None:
    """A declared body over 1 MB is refused from the headers alone (the client here sends only
    the headers and then waits for the answer, as the server does not read the body)."""
    import http.client

    host, port = stack.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest("POST", "/stripe/webhook")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", "2000000")
        conn.putheader("Stripe-Signature", "t=1,v1=00")
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 400
        assert "larger than any Stripe event" in json.loads(response.read())["error"]
    finally:
        conn.close()


def test_a_signature_within_the_tolerance_is_accepted(stack: Stack) -> None:
    event = _event("cus_recent_enough")
    payload = json.dumps(event)
    status, body = _post(stack.url, payload, sign(payload, WEBHOOK_SECRET, int(time.time()) - 240))
    assert status == 200 and body == {"received": event["id"], "duplicate": False}
    assert len(_ledger_row(stack.engine, event["id"])) == 1


def test_a_duplicate_delivery_is_recorded_and_applied_once(stack: Stack) -> None:
    customer = stack.client.v1.customers.create(params={"email": f"dup-{secrets.token_hex(4)}@example.com"})
    _wait_for(lambda: _member(stack.engine, customer.id) is not None)
    event = _event(customer.id)
    payload = json.dumps(event)
    first = _post(stack.url, payload, sign(payload, WEBHOOK_SECRET, int(time.time())))
    second = _post(stack.url, payload, sign(payload, WEBHOOK_SECRET, int(time.time())))
    assert first == (200, {"received": event["id"], "duplicate": False})
    assert second == (200, {"received": event["id"], "duplicate": True})
    _wait_for(lambda: _ledger_row(stack.engine, event["id"])[0].processed_at is not None)
    rows = _ledger_row(stack.engine, event["id"])
    assert len(rows) == 1 and rows[0].source == "webhook" and rows[0].attempts == 1


def test_healthz_reports_the_database_the_sync_and_the_last_webhook(stack: Stack) -> None:
    event = _event("cus_health")
    payload = json.dumps(event)
    assert _post(stack.url, payload, sign(payload, WEBHOOK_SECRET, int(time.time())))[0] == 200
    status, text = _get(stack.url + "/healthz")
    assert status == 200
    report = json.loads(text)
    assert report["status"] == "ok" and report["database"] == {"reachable": True}
    assert report["webhooks"]["last_received"]["at"] is not None
    assert 0 <= report["webhooks"]["last_received"]["age_seconds"] < 60
    assert set(report["sync"]) == {"data_through", "last_success", "last_run_status", "events_pending",
                                   "events_failing"}
    assert report["sync"]["last_success"]["at"] is None  # no pull sync ran: the webhook did it all
    for secret in (WEBHOOK_SECRET, API_KEY, "sqlite:", "postgresql", "127.0.0.1"):
        assert secret not in text


def test_healthz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    """PostgreSQL down (nothing listens on its port): /healthz says so without naming the host,
    and a webhook is not acknowledged, so Stripe delivers it again later."""
    down = f"postgresql+psycopg://memberdesk:pw-not-shown@127.0.0.1:{free_port()}/memberdesk"
    server = start_server(tmp_path, database_url=down, stripe_settings={"api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET})
    try:
        status, text = _get(server.url + "/healthz")
        assert status == 503
        report = json.loads(text)
        assert report["status"] == "unavailable" and report["database"]["reachable"] is False
        for secret in ("pw-not-shown", "127.0.0.1", "memberdesk:", WEBHOOK_SECRET):
            assert secret not in text
        event = _event("cus_db_down")
        payload = json.dumps(event)
        assert _post(server.url, payload, sign(payload, WEBHOOK_SECRET, int(time.time())))[0] == 503
    finally:
        stop_server(server.proc)
        server.engine.dispose()


def test_healthz_is_503_when_the_database_has_no_schema(tmp_path: Path) -> None:
    server = start_server(tmp_path, database_url=f"sqlite:///{tmp_path / 'never-migrated.db'}",
                          stripe_settings={"api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET})
    try:
        status, text = _get(server.url + "/healthz")
        assert status == 503
        report = json.loads(text)
        assert report["database"]["reachable"] is True and report["database"]["readable"] is False
        assert "never-migrated" not in text
    finally:
        stop_server(server.proc)
        server.engine.dispose()


@pytest.mark.browser
def test_a_change_in_the_sandbox_shows_on_the_member_page_without_a_sync(stack: Stack, page: Any) -> None:
    """What staff see: a member renamed in Stripe (the sandbox) is renamed on the open member page
    after a reload, with no sync run: the webhook brought it (the member page caches its data
    for at most 10 s)."""
    import re

    from core.db import session_scope
    from tests.support.browser import sign_in_as, wait_idle
    from tests.support.worlds import create_staff

    with session_scope(stack.engine) as s:
        has_staff = _has_staff(s)
    if not has_staff:
        create_staff(stack.engine)
    customer = stack.client.v1.customers.create(params={"email": f"bea-{secrets.token_hex(4)}@example.com",
                                                        "name": "Bea Browser"})
    _wait_for(lambda: _member(stack.engine, customer.id) is not None)
    with Session(stack.engine) as s:
        member_id = s.scalar(select(Member.id).where(Member.stripe_customer_id == customer.id))
    page.goto(f"{stack.url}/members?member={member_id}")
    sign_in_as(page, "support")
    page.get_by_role("heading", name=re.compile("Bea Browser")).wait_for()

    stack.client.v1.customers.update(customer.id, params={"name": "Bea Renamed"})
    t0 = time.monotonic()
    while True:
        page.reload()
        wait_idle(page)
        if page.get_by_role("heading", name=re.compile("Bea Renamed")).count():
            break
        assert time.monotonic() - t0 < 30, "the rename did not reach the member page"
        page.wait_for_timeout(1000)
    with Session(stack.engine) as s:
        assert s.scalar(select(SyncRun.id)) is None  # no sync ran: the webhook brought it


def _has_staff(session: Session) -> bool:
    from core.models.staff import StaffAccount

    return session.scalar(select(StaffAccount.id).limit(1)) is not None
