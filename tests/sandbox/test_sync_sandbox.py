"""The sync against the local sandbox over HTTP with the real ``stripe`` client: backfill,
incremental events, reconciliation, member resync, a test clock through failed renewals, and a
replay of thousands of events in shuffled order converging on the same database."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session

from core.models import (
    Base,
    Dispute,
    Invoice,
    InvoiceLine,
    InvoicePaymentRef,
    Member,
    Payment,
    PaymentMethod,
    Price,
    Refund,
    Subscription,
    SubscriptionItem,
    Tier,
)
from core.models.stripe_sync import StripeEvent, SyncRun, SyncState
from core.permissions import Actor
from core.sync import ledger, reconcile_member, reconcile_totals, resync_member, run_sync, status
from core.sync.apply import Applier
from core.sync.process import process_pending
from core.timeutil import from_epoch, utc_now
from demo import iter_events, iter_stripe_objects
from demo.world import World as DemoWorld
from stripe_sandbox.store import SandboxStore
from tests.support.sandbox import SandboxProcess, gateway_client
from tests.support.worlds import build_stripe_world

OPERATOR = Actor.operator("test")  # syncs act as a named operator

MIRRORED = (Tier, Price, Member, PaymentMethod, Subscription, SubscriptionItem, Invoice, InvoiceLine,
            InvoicePaymentRef, Payment, Refund, Dispute)


def _natural_key(table: Any) -> str | None:
    """The column that names a row across databases: its Stripe id (or the tier code); None for a
    table no other row points at by id (an invoice's payment refs)."""
    for col in table.columns:
        if col.name.startswith("stripe_") and col.name.endswith("_id") and col.name != "stripe_event_id":
            return col.name
    return "code" if "code" in table.columns else None


def mirrored(engine: Engine) -> dict[str, list[tuple]]:
    """Our mirror of Stripe, comparable across databases: surrogate keys replaced by the Stripe id
    of the row they point at; bookkeeping (versions, state times) left out."""
    skip = {"id", "version", "stripe_state_at", "updated_at", "created_at"}
    out: dict[str, list[tuple]] = {}
    with Session(engine) as s:
        names: dict[str, dict[int, str]] = {}
        for model in MIRRORED:
            t = model.__table__
            if (key := _natural_key(t)) is not None:
                names[t.name] = {i: str(k) for i, k in s.execute(select(t.c.id, t.c[key]))}
        for model in MIRRORED:
            t = model.__table__
            cols = [c for c in t.columns if c.name not in skip]
            rows = []
            for r in s.execute(select(*cols)):
                values = []
                for col, v in zip(cols, r, strict=True):
                    fk = next(iter(col.foreign_keys), None)
                    values.append(names.get(fk.column.table.name, {}).get(v, str(v)) if fk and v is not None else str(v))
                rows.append(tuple(values))
            out[t.name] = sorted(rows)
    return out


def _counts(engine: Engine) -> dict[str, int]:
    with Session(engine) as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) or 0
                for m in (Member, Subscription, Invoice, Payment, Refund)}


class TestBackfillAndEvents:
    def test_first_run_backfills_then_events_keep_it_current(self, engine: Engine, sandbox: SandboxProcess) -> None:
        c = gateway_client(sandbox)
        world = build_stripe_world(c, 6)
        first = run_sync(engine, c, actor=OPERATOR)
        assert first.status == "succeeded", first.message
        assert first.kind == "full" and "full backfill first" in first.counts["notice"]
        assert all(r.matches for r in reconcile_totals(engine, c)), "backfill must agree with Stripe"
        assert _counts(engine)["members"] == 6
        with Session(engine) as s:  # every subscription payment is linked to its invoice
            assert s.scalar(select(func.count()).where(Payment.invoice_id.is_(None))) == 0

        # Changes after the backfill arrive as events.
        active = [s for s in world.subscriptions if c.v1.subscriptions.retrieve(s).status == "active"]
        c.v1.subscriptions.cancel(active[0])
        new = c.v1.customers.create(params={"email": "late@example.com", "payment_method": "pm_card_visa",
                                            "invoice_settings": {"default_payment_method": "pm_card_visa"}})
        c.v1.subscriptions.create(params={"customer": new.id, "items": [{"price": world.prices["premium_usd"]}]})
        second = run_sync(engine, c, actor=OPERATOR)
        assert second.status == "succeeded" and second.kind == "incremental", second.message
        assert second.counts["events_new"] > 0
        with Session(engine) as s:
            assert s.scalar(select(Subscription.status).where(Subscription.stripe_subscription_id == active[0])) == "canceled"
            assert s.scalar(select(Member.id).where(Member.stripe_customer_id == new.id)) is not None
        assert all(r.matches for r in reconcile_totals(engine, c))
        snap = status(engine)
        assert snap.data_through is not None and snap.last_success is not None
        assert snap.events["pending"] == 0 and snap.newest_event_id

    def test_change_in_the_same_second_as_the_backfill_read_is_kept(self, engine: Engine, sandbox: SandboxProcess) -> None:
        c = gateway_client(sandbox)
        world = build_stripe_world(c, 2)
        assert run_sync(engine, c, actor=OPERATOR).ok
        customer = world.customers[0]
        c.v1.customers.update(customer, params={"name": "Renamed after the read"})
        created = c.v1.events.list(params={"limit": 1}).data[0].created
        # Stripe stamps the event to the whole second; make our backfill's read of this customer
        # fall later in that same second (but before now), as when the read and the change share a second.
        read_at = min(utc_now() - timedelta(milliseconds=1), from_epoch(created) + timedelta(milliseconds=900))
        with Session(engine) as s:
            s.execute(update(Member).where(Member.stripe_customer_id == customer).values(stripe_state_at=read_at))
            s.commit()
        assert run_sync(engine, c, actor=OPERATOR).ok
        with Session(engine) as s:
            assert s.scalar(select(Member.name).where(Member.stripe_customer_id == customer)) == "Renamed after the read"

    def test_member_reconcile_finds_drift_and_resync_repairs_it(self, engine: Engine, sandbox: SandboxProcess) -> None:
        c = gateway_client(sandbox)
        build_stripe_world(c, 4)
        assert run_sync(engine, c, actor=OPERATOR).ok
        with Session(engine) as s:
            member = s.scalars(select(Member).join(Subscription, Subscription.member_id == Member.id)).first()
            member_id = member.id
            # Drift: a row changed behind the sync's back.
            sub = s.scalars(select(Subscription).where(Subscription.member_id == member_id)).first()
            sub.status = "unpaid"
            s.commit()
        diffs = reconcile_member(engine, c, member_id)
        assert [(d.object_type, d.problem) for d in diffs] == [("subscription", "status differs")]
        result = resync_member(engine, c, member_id, actor=OPERATOR)
        assert result.ok, result.message
        assert reconcile_member(engine, c, member_id) == []
        with Session(engine) as s:
            assert s.scalars(select(SyncRun.kind).order_by(SyncRun.id.desc())).first() == "member"


    def test_cursor_older_than_stripes_30_days_falls_back_to_a_backfill(
        self, engine: Engine, sandbox: SandboxProcess
    ) -> None:
        c = gateway_client(sandbox)
        build_stripe_world(c, 2)
        assert run_sync(engine, c, actor=OPERATOR).ok
        with Session(engine) as s:
            s.get(SyncState, "events").last_synced_at = utc_now() - timedelta(days=31)
            # A run that died without finishing (killed process) is left "running".
            s.add(SyncRun(kind="incremental", status="running", started_at=utc_now() - timedelta(hours=2)))
            s.commit()
        result = run_sync(engine, c, actor=OPERATOR)
        assert result.ok and result.kind == "full"
        assert "older than the 30 days Stripe keeps events" in result.counts["notice"]
        # said on the outcome line too, after the fact
        assert result.message.endswith("It was a full backfill, because the last sync was longer ago than the 30 "
                                       "days Stripe keeps events.")
        with Session(engine) as s:
            statuses = [r.status for r in s.scalars(select(SyncRun).order_by(SyncRun.id))]
            assert statuses == ["succeeded", "failed", "succeeded"]  # the dead run is marked failed
            assert s.get(SyncState, "events").last_synced_at > utc_now() - timedelta(minutes=10)


class TestTestClock:
    def test_failed_renewal_retries_and_cancellation(self, engine: Engine, sandbox: SandboxProcess) -> None:
        c = gateway_client(sandbox)
        clock = c.v1.test_helpers.test_clocks.create(params={"frozen_time": 1798761600})  # 2027-01-01
        world = build_stripe_world(c, 0)
        cus = c.v1.customers.create(params={"email": "clock@example.com", "test_clock": clock.id,
                                            "payment_method": "pm_card_visa",
                                            "invoice_settings": {"default_payment_method": "pm_card_visa"}})
        sub = c.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": world.prices["premium_usd"]}]})
        assert sub.status == "active"
        assert run_sync(engine, c, actor=OPERATOR).ok
        # The card starts failing: insufficient funds on every renewal attempt.
        pm = c.v1.payment_methods.attach("pm_card_chargeDeclinedInsufficientFunds", params={"customer": cus.id})
        c.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": pm.id}})
        c.v1.subscriptions.update(sub.id, params={"default_payment_method": pm.id})
        day = 86400
        c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": 1798761600 + 32 * day})
        assert run_sync(engine, c, actor=OPERATOR).ok
        with Session(engine) as s:
            assert s.scalar(select(Subscription.status).where(Subscription.stripe_subscription_id == sub.id)) == "past_due"
        # Through the retries (3, 5, 7 days after the first failure) to the end of dunning.
        for days in (36, 38, 41):
            c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": 1798761600 + days * day})
        result = run_sync(engine, c, actor=OPERATOR)
        assert result.ok, result.message
        with Session(engine) as s:
            row = s.scalar(select(Subscription).where(Subscription.stripe_subscription_id == sub.id))
            assert row.status == "canceled"
            payments = s.scalars(select(Payment).where(Payment.member_id == row.member_id)
                                 .order_by(Payment.created_at)).all()
            assert [p.status for p in payments][0] == "succeeded"
            failed = [p for p in payments if p.status == "failed"]
            assert len(failed) == 4
            assert {(p.failure_code, p.decline_code) for p in failed} == {("card_declined", "insufficient_funds")}
            assert [p.attempt_number for p in failed] == [1, 2, 3, 4]
            renewal = s.scalar(select(Invoice).where(Invoice.id == failed[0].invoice_id))
            assert renewal is not None and renewal.status in ("open", "uncollectible", "void")
        stripe_sub = c.v1.subscriptions.retrieve(sub.id)
        assert stripe_sub.status == "canceled"


MIRROR_TABLES = {"stripe_events", "membership_changes", "subscription_items", "invoice_lines", "invoice_payment_refs",
                 "refunds", "disputes", "payments", "invoices", "subscriptions", "payment_methods", "members", "prices",
                 "tiers"}


def _forget(engine: Engine, also: set[str] = frozenset()) -> None:
    with Session(engine) as s:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name in MIRROR_TABLES | also:
                s.execute(delete(table))
        s.commit()


# Worlds for the replay: five fixed seeds and three fixed dates (never today): a month's first day,
# a month's middle and a month's last day, across the years the demo spans. Each database takes
# each seed once, on a date of its own: ten of the fifteen pairs, every date on both databases.
# (All fifteen on SQLite took 222 s of a run's test time, a third of the suite's critical path,
# and each pair still on one database keeps what the dates vary: the world's and the replay's.)
REPLAY_SEEDS = (5, 17, 23, 41, 58)
REPLAY_DATES = (datetime(2025, 3, 1, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC),
                datetime(2027, 7, 31, tzinfo=UTC))
REPLAY_WORLDS = [
    pytest.param(db, seed, day, marks=marks, id=f"{db}-seed{seed}-{day:%Y%m%d}")
    for shift, (db, marks) in enumerate((("sqlite", ()), ("postgresql", pytest.mark.postgresql)))
    for i, seed in enumerate(REPLAY_SEEDS)
    for day in [REPLAY_DATES[(i + shift) % len(REPLAY_DATES)]]
]


@pytest.mark.slow
class TestReplay:
    @pytest.mark.parametrize(("database_url", "seed", "now"), REPLAY_WORLDS, indirect=["database_url"])
    def test_shuffled_double_delivery_gives_the_same_database(self, engine: Engine, sandbox: SandboxProcess,
                                                              seed: int, now: datetime) -> None:
        c = gateway_client(sandbox)
        # The demo generator's world (three years of 30 members), imported into the sandbox.
        world = DemoWorld(seed=seed, members=30, now=now)
        store = SandboxStore(sandbox.state_path)
        store.import_objects(iter_stripe_objects(world))
        store.import_events(iter_events(world))
        store.close()
        events = [e.to_dict() for e in c.v1.events.list(params={"limit": 100}).auto_paging_iter()]
        assert len(events) >= 400
        ordered = sorted(events, key=lambda e: (e["created"], e["id"]))

        def deliver(batches: list[list[dict]]) -> None:
            for batch in batches:
                with Session(engine) as s:
                    ledger.record(s, batch)
                    s.commit()
                assert process_pending(engine, Applier(c)).failed == 0

        deliver([ordered])
        expected = mirrored(engine)
        assert len(expected["subscriptions"]) > 10
        with Session(engine) as s:
            assert s.scalar(select(func.count()).where(Payment.invoice_id.is_(None))) == 0

        # Forget everything, then receive every event twice, in random order, in random batches.
        _forget(engine)
        rng = random.Random(11)
        for _ in range(2):
            shuffled = events[:]
            rng.shuffle(shuffled)
            cuts = sorted(rng.sample(range(1, len(shuffled)), 7))
            deliver([shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(shuffled)], strict=True)])
        with Session(engine) as s:
            assert s.scalar(select(func.count()).select_from(StripeEvent)) == len(events)
        # Every object ends in its newest state, and every column derived from several objects (a
        # payment's invoice, renewal flag and attempt number, a card's default flag, a subscription's
        # past-due start, a dispute's close) agrees too.
        assert mirrored(engine) == expected

        # A backfill of the same account, with no event applied, gives the same rows, dates included.
        _forget(engine, also={"sync_state", "sync_runs", "run_locks"})
        result = run_sync(engine, c, actor=OPERATOR, full=True)
        assert result.status == "succeeded", result.message
        got = mirrored(engine)
        assert {t: (sorted(set(expected[t]) - set(got[t]))[:3], sorted(set(got[t]) - set(expected[t]))[:3])
                for t in expected if got[t] != expected[t]} == {}
