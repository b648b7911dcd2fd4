"""Stripe lets customers share an e-mail; our members may not. Against the sandbox over HTTP with
the real ``stripe`` client: a customer updated to another member's address keeps it tagged with its
own id, the rest of the update applies and the event succeeds; an event that still fails leaves no
member's e-mail in ``stripe_events.last_error``, in the sync's message or in the logs."""

from __future__ import annotations

import logging
import secrets

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.db import session_scope
from core.models import Member
from core.models.stripe_sync import StripeEvent, SyncRun
from core.permissions import Actor
from core.sync import run_sync
from tests.support.factories import make_member
from tests.support.sandbox import SandboxProcess, gateway_client

OPERATOR = Actor.operator("test")


def _member(engine: Engine, customer_id: str) -> Member:
    with Session(engine) as s:
        member = s.scalar(select(Member).where(Member.stripe_customer_id == customer_id))
        assert member is not None
        return member


def _events_of(engine: Engine, customer_id: str) -> list[StripeEvent]:
    with Session(engine) as s:
        return list(s.scalars(select(StripeEvent).where(StripeEvent.object_id == customer_id,
                                                        StripeEvent.type == "customer.updated")))


def test_a_customer_updated_to_another_member_s_email_keeps_it_tagged_and_the_rest_applies(
        engine: Engine, sandbox: SandboxProcess) -> None:
    c = gateway_client(sandbox)
    tag = secrets.token_hex(4)
    ann = c.v1.customers.create(params={"email": f"ann-{tag}@example.com", "name": "Ann Able"})
    bea = c.v1.customers.create(params={"email": f"bea-{tag}@example.com", "name": "Bea Bell"})
    assert run_sync(engine, c, actor=OPERATOR).ok

    c.v1.customers.update(ann.id, params={"email": f"bea-{tag}@example.com", "name": "Ann Bell",
                                          "phone": "+15550100"})
    second = run_sync(engine, c, actor=OPERATOR)

    assert second.status == "succeeded", second.message
    moved = _member(engine, ann.id)
    assert (moved.email, moved.name, moved.phone) == (f"bea-{tag}+{ann.id}@example.com", "Ann Bell", "+15550100")
    assert _member(engine, bea.id).email == f"bea-{tag}@example.com"
    [event] = _events_of(engine, ann.id)
    assert event.processed_at is not None and event.last_error is None


def test_an_event_that_still_fails_records_no_member_email(engine: Engine, sandbox: SandboxProcess,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """Even the tagged address is taken (a free member of the app holds it): the event fails, and
    what it leaves names the rule that failed, not the address."""
    c = gateway_client(sandbox)
    tag = secrets.token_hex(4)
    ann = c.v1.customers.create(params={"email": f"ann-{tag}@example.com", "name": "Ann Able"})
    c.v1.customers.create(params={"email": f"bea-{tag}@example.com", "name": "Bea Bell"})
    assert run_sync(engine, c, actor=OPERATOR).ok
    with session_scope(engine) as s:
        make_member(s, email=f"bea-{tag}+{ann.id}@example.com", name="Cy Clash")

    c.v1.customers.update(ann.id, params={"email": f"bea-{tag}@example.com"})
    with caplog.at_level(logging.DEBUG):
        failed = run_sync(engine, c, actor=OPERATOR)

    assert failed.status == "failed"
    [event] = _events_of(engine, ann.id)
    assert event.processed_at is None and event.last_error
    assert "email" in event.last_error  # it still says which rule failed
    with Session(engine) as s:
        run = s.scalars(select(SyncRun).order_by(SyncRun.id.desc()).limit(1)).one()
    for text in (event.last_error, failed.message, run.error or "", str(run.counts), caplog.text):
        assert f"bea-{tag}" not in text and f"ann-{tag}" not in text
    assert _member(engine, ann.id).email == f"ann-{tag}@example.com"  # nothing of the failed event stayed
