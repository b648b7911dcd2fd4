"""A real account gives the database the demo gives: the demo world is loaded once by the demo
loader, and once imported into the sandbox, which answers the way Stripe documents (invoices
without their includable ``payments``, charges naming their balance transaction by id, events
never expanded), and synced from it over HTTP with the real ``stripe`` client, by a full backfill
and by incremental event processing. What depends on asking Stripe for more than its default
answer must agree: each payment's invoice, renewal flag, attempt number and fee, and the dates
derived from several objects (a subscription's ``past_due_since``, a dispute's ``closed_at``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.models import Dispute, Invoice, Payment, Subscription
from core.permissions import Actor
from core.sync import ledger, run_sync
from core.sync.apply import Applier
from core.sync.process import process_pending
from demo import clear_demo_tables, iter_events, iter_stripe_objects, load_demo
from demo.world import World
from stripe_sandbox.store import SandboxStore
from tests.support.sandbox import SandboxProcess, gateway_client

SEED, MEMBERS, NOW = 16, 60, datetime(2026, 11, 20, 12, tzinfo=UTC)


def facts(engine: Engine) -> dict[str, Any]:
    """Per Stripe id: what the demo and a sync must agree on."""
    with Session(engine) as s:
        payments = {
            r.stripe_charge_id: (r.stripe_invoice_id, r.is_renewal, r.attempt_number, r.fee)
            for r in s.execute(select(Payment.stripe_charge_id, Invoice.stripe_invoice_id, Payment.is_renewal,
                                      Payment.attempt_number, Payment.fee)
                               .outerjoin(Invoice, Invoice.id == Payment.invoice_id))}
        past_due = dict(s.execute(select(Subscription.stripe_subscription_id, Subscription.past_due_since)).all())
        closed = dict(s.execute(select(Dispute.stripe_dispute_id, Dispute.closed_at)).all())
    return {"payments": payments, "past_due_since": past_due, "closed_at": closed}


def _import_world(sb: SandboxProcess) -> None:
    world = World(seed=SEED, members=MEMBERS, now=NOW)
    store = SandboxStore(sb.state_path)
    store.import_objects(iter_stripe_objects(world))
    store.import_events(iter_events(world))
    store.close()


def _demo(engine: Engine) -> dict[str, Any]:
    load_demo(engine, members=MEMBERS, seed=SEED, now=NOW)
    expected = facts(engine)
    clear_demo_tables(engine)
    pays = expected["payments"].values()
    # The world has what the comparison is about: renewals, retried invoices, fees, dunning, disputes.
    assert sum(1 for inv, *_ in pays if inv is None) == 0
    assert sum(1 for _, renewal, *_ in pays if renewal) > 100
    assert any(n and n > 1 for _, _, n, _ in pays)
    assert sum(1 for *_, fee in pays if fee) > 100
    assert any(expected["past_due_since"].values()) and any(expected["closed_at"].values())
    return expected


def _differences(expected: dict[str, Any], got: dict[str, Any]) -> dict[str, list]:
    out: dict[str, list] = {}
    for part in expected:
        keys = expected[part].keys() | got[part].keys()
        bad = sorted((k, expected[part].get(k, "missing"), got[part].get(k, "missing")) for k in keys
                     if expected[part].get(k, "missing") != got[part].get(k, "missing"))
        if bad:
            out[part] = bad[:5] + ([f"... {len(bad)} in all"] if len(bad) > 5 else [])
    return out


@pytest.mark.slow
class TestSameDatabaseAsTheDemo:
    def test_full_backfill(self, engine: Engine, sandbox: SandboxProcess) -> None:
        expected = _demo(engine)
        _import_world(sandbox)
        result = run_sync(engine, gateway_client(sandbox), actor=Actor.system("test-sync"), full=True, now=NOW)
        assert result.status == "succeeded", result.message
        assert _differences(expected, facts(engine)) == {}

    def test_incremental_events(self, engine: Engine, sandbox: SandboxProcess) -> None:
        expected = _demo(engine)
        _import_world(sandbox)
        c = gateway_client(sandbox)
        events = [e.to_dict() for e in c.v1.events.list(params={"limit": 100}).auto_paging_iter()]
        # Stripe's payloads, as delivered: never expanded, so no invoice payments and no fees in them.
        assert all("payments" not in e["data"]["object"] for e in events if e["type"].startswith("invoice."))
        assert all(not isinstance(e["data"]["object"].get("balance_transaction"), dict) for e in events)
        with Session(engine) as s:
            ledger.record(s, sorted(events, key=lambda e: (e["created"], e["id"])))
            s.commit()
        assert process_pending(engine, Applier(c)).failed == 0
        assert _differences(expected, facts(engine)) == {}
