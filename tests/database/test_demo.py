"""The demo loader: deterministic, encrypted where it must be, and identical to the sync path."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from core.db import session_scope
from core.models import Base, Member, MembershipChange, Payment, StaffAccount, Subscription
from core.stripe_store import apply
from core.timeutil import from_epoch
from demo import clear_demo_tables, create_demo_staff, iter_events, load_demo
from demo.rows import TABLES
from demo.simulate import simulate_member
from demo.stream import EVENT_RETENTION
from demo.world import World
from tests.support.factories import make_member

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def dump(engine: Engine) -> dict[str, list[tuple]]:
    """Every demo table's rows, decrypted through the column types, in id order."""
    out = {}
    with engine.connect() as conn:
        for name in TABLES:
            table = Base.metadata.tables[name]
            out[name] = [tuple(r) for r in conn.execute(select(table).order_by(table.c.id))]
    return out


class TestDeterminism:
    def test_same_seed_same_day_same_database(self, engine: Engine) -> None:
        stats = load_demo(engine, members=250, seed=7, now=NOW)
        first = dump(engine)
        assert stats.rows["payments"] > 500 and stats.rows["members"] == 250
        clear_demo_tables(engine)
        load_demo(engine, members=250, seed=7, now=NOW, chunk=60)  # other chunking, same world
        assert dump(engine) == first
        clear_demo_tables(engine)
        load_demo(engine, members=250, seed=8, now=NOW)
        assert dump(engine)["payments"] != first["payments"]

    def test_workers_give_the_same_ids(self, engine: Engine) -> None:
        load_demo(engine, members=120, seed=3, now=NOW, chunk=40)
        single = dump(engine)
        clear_demo_tables(engine)
        load_demo(engine, members=120, seed=3, now=NOW, chunk=40, workers=2)
        assert dump(engine) == single


def schema_objects(engine: Engine) -> set[tuple]:
    """Every index, foreign key and trigger the database reports, as it describes them (with
    PostgreSQL's enabled flag: a load disables them)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return {tuple(r) for r in conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type IN ('index', 'trigger')")}
        indexes = conn.exec_driver_sql("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()")
        fks = conn.exec_driver_sql("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'f'")
        triggers = conn.exec_driver_sql("SELECT tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal")
        return {tuple(r) for r in indexes} | {tuple(r) for r in fks} | {tuple(r) for r in triggers}


class TestFreshBulkLoad:
    def test_indexes_built_at_the_end_give_the_same_database(self, engine: Engine) -> None:
        before = schema_objects(engine)
        load_demo(engine, members=150, seed=4, now=NOW, chunk=50, defer_indexes=False)
        rows = dump(engine)
        clear_demo_tables(engine)
        load_demo(engine, members=150, seed=4, now=NOW, chunk=50, defer_indexes=True, workers=2)
        assert dump(engine) == rows  # card_valid_until too: worked out at the end as the triggers would
        assert schema_objects(engine) == before
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(card_valid_until) FROM subscriptions").scalar() > 0
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL again

    def test_a_failed_load_still_gets_its_indexes_back(self, engine: Engine) -> None:
        before = schema_objects(engine)

        def boom(stories: list) -> None:
            raise RuntimeError("the sandbox went away")

        with pytest.raises(RuntimeError):
            load_demo(engine, members=60, seed=4, now=NOW, chunk=20, defer_indexes=True, on_chunk=boom)
        assert schema_objects(engine) == before


class TestLoaded:
    def test_sensitive_columns_are_encrypted_and_times_read_back(self, engine: Engine) -> None:
        load_demo(engine, members=80, seed=2, now=NOW)
        with engine.connect() as conn:
            raw = conn.execute(text("SELECT address, phone FROM members WHERE address IS NOT NULL")).first()
            raw_billing = conn.execute(text("SELECT billing_details FROM payment_methods")).scalar()
        assert raw is not None and "country" not in raw.address and raw.address.startswith("gAAAA")
        assert raw_billing.startswith("gAAAA")
        with Session(engine) as s:
            member = s.scalar(select(Member).where(Member.address.is_not(None)))
            assert json.loads(member.address)["country"] == member.country
            sub = s.scalar(select(Subscription).order_by(Subscription.id))
            assert sub.created_at.tzinfo is not None and sub.created_at <= NOW
            free = s.scalar(select(Member).where(Member.stripe_customer_id.is_(None)))
            assert free is not None and free.version == 1

    def test_rows_added_after_the_load_get_fresh_ids(self, engine: Engine) -> None:
        load_demo(engine, members=30, seed=1, now=NOW)
        with Session(engine) as s:
            top = s.scalar(select(Member.id).order_by(Member.id.desc()))
            member = make_member(s, email="after-the-demo@example.com")
            s.commit()
            assert member.id > top

    def test_replace_then_load_gives_the_same_ids(self, engine: Engine) -> None:
        load_demo(engine, members=30, seed=1, now=NOW)
        with Session(engine) as s:
            top = s.scalar(select(Member.id).order_by(Member.id.desc()))
        clear_demo_tables(engine)
        load_demo(engine, members=30, seed=1, now=NOW)
        with Session(engine) as s:
            assert s.scalar(select(Member.id).order_by(Member.id.desc())) == top


class TestSamePathAsTheSync:
    def test_store_apply_of_the_stream_gives_the_same_rows(self, engine: Engine) -> None:
        """Apply the demo's Stripe objects one by one through the sync's store and compare with
        the bulk loader: the shapes can never differ."""
        world = World(seed=5, members=25, now=NOW)
        stories = [simulate_member(world, i) for i in range(world.members)]
        load_demo(engine, members=0, seed=5, now=NOW)  # the catalogue only
        with session_scope(engine) as s:
            for story in stories:
                if story.customer is None:
                    continue
                apply(s, story.customer, state_at=NOW, source="demo")
                for pm in story.payment_methods:
                    apply(s, pm, state_at=NOW, source="demo")
                apply(s, story.customer, state_at=NOW, source="demo")
                for states in story.subscriptions:
                    for st in states:
                        apply(s, st.obj, state_at=from_epoch(st.at), event_id=st.event_id, source="demo")
                for ch in story.charges:
                    apply(s, ch, state_at=NOW)
                for obj in story.invoices + story.refunds + story.disputes:
                    apply(s, obj, state_at=NOW)
        with Session(engine) as s:
            synced = _summary(s)
        clear_demo_tables(engine)
        load_demo(engine, members=25, seed=5, now=NOW)
        with Session(engine) as s:
            assert _summary(s) == synced

    def test_events_stream(self) -> None:
        world = World(seed=5, members=30, now=NOW)
        events = list(iter_events(world))
        kinds = {e["type"] for e in events}
        assert {"customer.created", "customer.subscription.created", "invoice.paid", "charge.succeeded"} <= kinds
        assert len({e["id"] for e in events}) == len(events)
        updated = next(e for e in events if e["type"] == "customer.subscription.updated")
        assert "previous_attributes" in updated["data"]
        assert all(e["created"] <= NOW.timestamp() for e in events)
        since = NOW - EVENT_RETENTION
        recent = list(iter_events(world, since=since))
        assert recent and len(recent) < len(events) / 10
        assert all(e["created"] >= since.timestamp() for e in recent)


def _summary(s: Session) -> dict[str, object]:
    subs = {r.stripe_subscription_id: (r.status, r.mrr_minor, r.current_period_end, r.cancel_at_period_end,
                                       r.churn_kind, r.cancellation_reason, r.past_due_since, r.trial_end)
            for r in s.scalars(select(Subscription))}
    pays = {r.stripe_charge_id: (r.status, r.amount, r.decline_code, r.attempt_number, r.is_renewal,
                                 r.invoice_id is not None, r.amount_refunded, r.fee, r.card_brand)
            for r in s.scalars(select(Payment))}
    changes = sorted((r.stripe_event_id, r.kind, r.mrr_before_minor, r.mrr_after_minor, r.churn_kind, r.reason)
                     for r in s.scalars(select(MembershipChange)))
    members = {r.stripe_customer_id: (r.email, r.country, r.phone, r.address)
               for r in s.scalars(select(Member)) if r.stripe_customer_id}
    return {"subs": subs, "pays": pays, "changes": changes, "members": members}


def test_demo_staff_accounts(engine, session: Session) -> None:
    assert create_demo_staff(engine, bcrypt_rounds=4) == ["support", "finance", "manager", "admin"]
    assert create_demo_staff(engine, bcrypt_rounds=4) == []
    assert session.scalar(select(StaffAccount.roles).where(StaffAccount.username == "finance")) == "finance"
