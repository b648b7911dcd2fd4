"""The background pass that applies webhook events: the sync's own path, under the sync's lock.

In-process with the real ledger, a real database (SQLite and PostgreSQL) and the sandbox over
HTTP (for the parents a pass may fetch); events are recorded the way the receiver records them.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.models import Member
from core.models.stripe_sync import StripeEvent, SyncRun
from core.permissions import Actor
from core.stripe_gateway import make_client
from core.stripe_webhooks.apply_loop import ApplyLoop, apply_pending
from core.stripe_webhooks.receive import WebhookRejected, receive
from core.sync import locks, run_sync
from core.sync.run import LOCK_NAME
from tests.support.payloads import WEBHOOK_SECRET, sign
from tests.support.sandbox import SandboxProcess


def _customer_event(sb: SandboxProcess, name: str) -> dict[str, Any]:
    """A real ``customer.created`` event from the sandbox (created through the API)."""
    client = sb.client()
    customer = client.v1.customers.create(params={"email": f"{name.lower().replace(' ', '.')}@example.com",
                                                  "name": name})
    events = client.v1.events.list(params={"type": "customer.created", "limit": 10})
    return next(e.to_dict() for e in events.data if e.data.object.id == customer.id)


def _record(engine: Engine, event: dict[str, Any]) -> None:
    payload = json.dumps(event)
    receive(engine, payload.encode(), sign(payload, WEBHOOK_SECRET, int(time.time())), WEBHOOK_SECRET)


def _member_name(engine: Engine, customer_id: str) -> str | None:
    with Session(engine) as s:
        return s.scalar(select(Member.name).where(Member.stripe_customer_id == customer_id))


def test_a_pass_applies_recorded_events_like_the_sync(engine: Engine, sandbox: SandboxProcess) -> None:
    event = _customer_event(sandbox, "Pat Pass")
    _record(engine, event)
    assert _member_name(engine, event["data"]["object"]["id"]) is None  # recorded, not yet applied
    assert apply_pending(engine, make_client(sandbox.api_key, api_base=sandbox.url)) == 1
    assert _member_name(engine, event["data"]["object"]["id"]) == "Pat Pass"
    assert apply_pending(engine, make_client(sandbox.api_key, api_base=sandbox.url)) == 0  # nothing twice
    # The pull sync later fetches the same event: the ledger keeps one row, handled once.
    assert run_sync(engine, make_client(sandbox.api_key, api_base=sandbox.url), actor=Actor.system("test-sync")).ok
    with Session(engine) as s:
        rows = s.execute(select(StripeEvent.source, StripeEvent.attempts).where(StripeEvent.id == event["id"])).all()
    assert [(r.source, r.attempts) for r in rows] == [("webhook", 1)]


def test_a_pass_waits_for_a_running_sync_then_applies(engine: Engine, sandbox: SandboxProcess) -> None:
    event = _customer_event(sandbox, "Lou Locked")
    customer_id = event["data"]["object"]["id"]
    held = locks.acquire(engine, LOCK_NAME, holder="a-sync-run:1")
    loop = ApplyLoop(engine, lambda: make_client(sandbox.api_key, api_base=sandbox.url))
    loop.start()
    try:
        _record(engine, event)
        loop.wake()
        time.sleep(1.5)  # several retries while the "sync" holds the lock
        assert _member_name(engine, customer_id) is None
        held.release()
        deadline = time.monotonic() + 15
        while _member_name(engine, customer_id) is None:
            assert time.monotonic() < deadline, "the pass did not apply the event after the lock was freed"
            time.sleep(0.05)
    finally:
        loop.stop()
    with Session(engine) as s:  # the pass is not a sync run: it records none
        assert s.scalar(select(SyncRun.id)) is None


def test_a_sync_started_during_a_pass_is_skipped_not_doubled(engine: Engine) -> None:
    # While a pass holds the lock (as it does for its few milliseconds), a sync run records a
    # skipped run naming the holder and writes nothing else.
    held = locks.acquire(engine, LOCK_NAME)
    try:
        result = run_sync(engine, make_client("sk_test_unused", api_base="http://127.0.0.1:9"), actor=Actor.system("test-sync"))
    finally:
        held.release()
    assert result.status == "skipped"


@pytest.mark.parametrize("header", [None, "t=1,v1=00", "garbage"])
def test_receive_refuses_without_writing(engine: Engine, header: str | None) -> None:
    payload = json.dumps({"id": "evt_refused", "object": "event", "type": "customer.created", "created": 1,
                          "data": {"object": {"id": "cus_x", "object": "customer"}}})
    with pytest.raises(WebhookRejected):
        receive(engine, payload.encode(), header, WEBHOOK_SECRET)
    with Session(engine) as s:
        assert s.scalar(select(StripeEvent.id)) is None


def test_a_signed_body_that_is_not_an_event_is_refused(engine: Engine) -> None:
    for body in ('{"object": "customer", "id": "cus_1"}', "[1, 2]", '{"object": "event", "id": "evt_1"}'):
        with pytest.raises(WebhookRejected):
            receive(engine, body.encode(), sign(body, WEBHOOK_SECRET, int(time.time())), WEBHOOK_SECRET)
    with Session(engine) as s:
        assert s.scalar(select(StripeEvent.id)) is None


def test_a_missing_stripe_key_is_said_once_not_at_every_retry(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    from core.settings import SettingsError

    asked: list[int] = []

    def no_key() -> Any:  # what the server's client factory does when no key is configured
        asked.append(1)
        raise SettingsError("No Stripe API key is configured.")

    loop = ApplyLoop(engine, no_key)
    with caplog.at_level("WARNING", logger="core.stripe_webhooks.apply_loop"):
        loop.start()
        try:
            deadline = time.monotonic() + 30
            while len(asked) < 3:  # three tries: at the start, 0.5 s and 1.5 s later
                assert time.monotonic() < deadline, "the loop stopped retrying"
                time.sleep(0.05)
        finally:
            loop.stop()
    said = [r.getMessage() for r in caplog.records if "not applied" in r.getMessage()]
    assert said == ["webhook events recorded but not applied: No Stripe API key is configured."]
