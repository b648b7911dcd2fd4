"""Two agents at the same moment, each on their own database connection: exactly one wins.

Run on PostgreSQL (row locks: the loser's conditional ``UPDATE members ... WHERE version = v``
waits for the winner, then matches nothing) and on SQLite (one writer at a time)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from core.changes import Actor, ChangeInput, ChangeRefused, StaleMember, submit
from core.db import make_engine, session_scope
from core.models import ChangeRequest, StaffNote, Subscription
from tests.support.changes_world import build, version
from tests.support.factories import make_member, make_tier

SAM, KIM = Actor.of("sam", ["support"]), Actor.of("kim", ["support", "manager"])


def _race(database_url: str, jobs: list[tuple[ChangeInput, Actor, Any]]) -> list[Any]:
    """Run each job on its own engine (its own connection) in its own thread, released together."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)

    def run(i: int, change: ChangeInput, actor: Actor, stripe: Any) -> None:
        engine = make_engine(database_url)
        try:
            barrier.wait(timeout=10)
            results[i] = submit(engine, change, actor, stripe=stripe)
        except ChangeRefused as exc:
            results[i] = exc
        except Exception as exc:  # noqa: BLE001 - the test reports it
            results[i] = exc
        finally:
            engine.dispose()

    threads = [threading.Thread(target=run, args=(i, *job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_two_agents_same_member_exactly_one_wins(database_url, session):
    member = make_member(session)
    make_tier(session, code="premium")
    session.commit()
    v = member.version
    a = ChangeInput("grant_comp", member.id, v, "goodwill", "outage", {"days": 5, "tier": "premium"})
    b = ChangeInput("grant_comp", member.id, v, "goodwill", "outage, longer", {"days": 9, "tier": "premium"})
    results = _race(database_url, [(a, SAM, None), (b, KIM, None)])
    wins = [r for r in results if getattr(r, "status", None) == "applied"]
    losses = [r for r in results if isinstance(r, StaleMember)]
    assert len(wins) == 1 and len(losses) == 1, results
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Subscription)) == 1
    assert session.scalar(select(func.count()).select_from(ChangeRequest)) == 1


def test_double_click_from_two_connections_writes_once(database_url, session):
    member = make_member(session)
    session.commit()
    note = ChangeInput("add_note", member.id, member.version, "call_summary", "called about the app", {})
    results = _race(database_url, [(note, SAM, None), (note, SAM, None)])
    assert all(getattr(r, "status", None) == "applied" for r in results), results
    assert sorted(r.replayed for r in results) == [False, True]
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(StaffNote)) == 1


def test_two_refunds_racing_against_stripe_refund_once(engine, database_url, stripe_env):
    world = build(engine, stripe_env.client)
    v = version(engine, world.member_id)
    a = ChangeInput("refund", world.member_id, v, "duplicate", "charged twice", {"payment_id": world.payment_id,
                                                                                 "amount": 600})
    b = ChangeInput("refund", world.member_id, v, "goodwill", "sorry", {"payment_id": world.payment_id,
                                                                        "amount": 700})
    results = _race(database_url, [(a, SAM, stripe_env.client), (b, KIM, stripe_env.client)])
    assert sum(getattr(r, "status", None) == "applied" for r in results) == 1, results
    # the loser hears that the member changed, or (SQLite, one writer) that a change is in progress
    assert sum(isinstance(r, ChangeRefused) and r.code in ("stale", "busy") for r in results) == 1, results
    refunds = stripe_env.client.v1.refunds.list({"charge": world.charge}).data
    assert len(refunds) == 1
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(ChangeRequest)) == 1


@pytest.mark.parametrize("n", [3])
def test_same_refund_submitted_three_times_at_once_refunds_once(engine, database_url, stripe_env, n):
    world = build(engine, stripe_env.client)
    change = ChangeInput("refund", world.member_id, version(engine, world.member_id), "duplicate", "charged twice",
                         {"payment_id": world.payment_id, "amount": 500})
    results = _race(database_url, [(change, SAM, stripe_env.client)] * n)
    assert all(not isinstance(r, Exception) or isinstance(r, ChangeRefused) for r in results), results
    assert any(getattr(r, "status", None) == "applied" for r in results)
    assert len(stripe_env.client.v1.refunds.list({"charge": world.charge}).data) == 1
    with session_scope(engine) as s:
        from core.models import Payment, Refund

        assert s.scalar(select(func.count()).select_from(Refund)) == 1
        assert s.get(Payment, world.payment_id).amount_refunded == 500
