"""Faults between us and Stripe: a 500 after Stripe applied the write, dropped connections, and
the process dying between Stripe and our database. Every retry completes exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.changes import Actor, ChangeInput, ChangeRefused, resume, submit
from core.db import session_scope
from core.models import AuditEntry, ChangeRequest, Payment, Refund, Subscription
from tests.support.changes_world import build, version
from tests.support.db import TEST_KEY

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = Actor.of("sam", ["support"])


@pytest.fixture
def world(engine, stripe_env):
    return build(engine, stripe_env.client)


def _refund(engine, world, amount=300):
    return ChangeInput("refund", world.member_id, version(engine, world.member_id), "requested_by_customer",
                       "asked by phone", {"payment_id": world.payment_id, "amount": amount})


def _stripe_refunds(stripe_env, world):
    return stripe_env.client.v1.refunds.list({"charge": world.charge}).data


def _our_refunds(engine):
    with session_scope(engine) as s:
        return s.scalar(select(func.count()).select_from(Refund))


def test_500_after_apply_is_recognised_without_a_second_refund(engine, stripe_env, world):
    stripe_env.fault(path_prefix="/v1/refunds", method="POST", mode="apply_then_500")
    out = submit(engine, _refund(engine, world), SUPPORT, stripe=stripe_env.bare)  # no library retry
    assert out.status == "applied"
    assert len(_stripe_refunds(stripe_env, world)) == 1 and _our_refunds(engine) == 1
    with session_scope(engine) as s:
        assert s.get(Payment, world.payment_id).amount_refunded == 300


def test_library_retry_after_500_replays_the_same_refund(engine, stripe_env, world):
    stripe_env.fault(path_prefix="/v1/refunds", method="POST", mode="apply_then_500")
    out = submit(engine, _refund(engine, world), SUPPORT, stripe=stripe_env.client)  # retries with the same key
    assert out.status == "applied"
    assert len(_stripe_refunds(stripe_env, world)) == 1 and _our_refunds(engine) == 1


def test_dropped_connection_keeps_the_request_then_the_retry_finishes_once(engine, stripe_env, world):
    change = ChangeInput("pause", world.member_id, version(engine, world.member_id), "customer_request",
                         "travelling", {"behavior": "void"})
    stripe_env.fault(path_prefix="/v1/", mode="drop", times=2)  # the write and the check both lost
    with pytest.raises(ChangeRefused, match="submitting it again"):
        submit(engine, change, SUPPORT, stripe=stripe_env.bare)
    with session_scope(engine) as s:
        assert s.scalars(select(ChangeRequest)).one().status == "applying"
    # another change for this member waits until this one is finished
    with pytest.raises(ChangeRefused, match="still being applied"):
        submit(engine, _refund(engine, world), SUPPORT, stripe=stripe_env.client)
    again = submit(engine, change, SUPPORT, stripe=stripe_env.client)  # the same form, submitted again
    assert again.status == "applied" and again.replayed
    assert stripe_env.client.v1.subscriptions.retrieve(world.subscription).pause_collection.behavior == "void"
    with session_scope(engine) as s:
        assert s.scalar(select(Subscription.pause_behavior)) == "void"
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "change.pause")) == 1


def test_an_approval_waits_for_the_member_s_change_in_flight(engine, stripe_env, world):
    # "While a member has an applying request, new changes wait": an approval went ahead beside it.
    from core.changes import decide, load_limits, save_limits

    with session_scope(engine) as s:
        limits = load_limits(s)
    limits.approval_refund_above["USD"] = 100
    save_limits(engine, actor=Actor.of("root", ["admin"]), limits=limits)
    queued = submit(engine, _refund(engine, world, amount=400), SUPPORT, stripe=stripe_env.client)
    assert queued.status == "pending_approval"
    pause = ChangeInput("pause", world.member_id, version(engine, world.member_id), "customer_request",
                        "travelling", {"behavior": "void"})
    stripe_env.fault(path_prefix="/v1/", mode="drop", times=2)
    with pytest.raises(ChangeRefused, match="submitting it again"):
        submit(engine, pause, SUPPORT, stripe=stripe_env.bare)
    manager = Actor.of("mia", ["manager"])
    with pytest.raises(ChangeRefused, match="still being applied; finish it on the Membership changes page"):
        decide(engine, queued.request_id, manager, approve=True, note="checked", stripe=stripe_env.client)
    assert _our_refunds(engine) == 0 and _stripe_refunds(stripe_env, world) == []
    assert submit(engine, pause, SUPPORT, stripe=stripe_env.client).status == "applied"  # finished...
    done = decide(engine, queued.request_id, manager, approve=True, note="checked", stripe=stripe_env.client)
    assert done.status == "applied" and _our_refunds(engine) == 1  # ...then the approval goes through


def test_stripe_down_before_anything_writes_nothing(engine, stripe_env, world):
    stripe_env.fault(path_prefix="/v1/", status=503, times=None)
    with pytest.raises(ChangeRefused, match="Stripe had an internal error"):
        submit(engine, _refund(engine, world), SUPPORT, stripe=stripe_env.bare)
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(ChangeRequest)) == 0


def test_stripe_failing_the_write_then_back(engine, stripe_env, world):
    stripe_env.fault(path_prefix="/v1/refunds", method="POST", status=503, times=None)
    with pytest.raises(ChangeRefused, match="Stripe"):
        submit(engine, _refund(engine, world), SUPPORT, stripe=stripe_env.bare)
    assert _our_refunds(engine) == 0
    stripe_env.proc.clear_faults()
    assert len(_stripe_refunds(stripe_env, world)) == 0
    with session_scope(engine) as s:
        rid = s.scalars(select(ChangeRequest)).one().id
    out = resume(engine, rid, SUPPORT, stripe=stripe_env.client)
    assert out.status == "applied"
    assert len(_stripe_refunds(stripe_env, world)) == 1 and _our_refunds(engine) == 1


CRASH = """
import os, sys
sys.path.insert(0, {root!r})
from sqlalchemy import event
from core import crypto
from core.db import make_engine
from core.changes import Actor, ChangeInput, submit
from core.stripe_gateway import make_client

crypto.set_keyring(crypto.KeyRing([{key!r}]))
engine = make_engine({url!r})

@event.listens_for(engine, "before_cursor_execute")
def die(conn, cursor, statement, parameters, context, executemany):
    # Stripe has answered; the process dies before our rows are written.
    if statement.lstrip().upper().startswith("UPDATE CHANGE_REQUESTS") and "applied" in str(parameters):
        os._exit(3)

client = make_client({api_key!r}, api_base={api_base!r})
submit(engine, ChangeInput("refund", {member_id}, {version}, "requested_by_customer", "asked by phone",
                           {{"payment_id": {payment_id}, "amount": 300}}), Actor.of("sam", ["support"]), stripe=client)
os._exit(0)
"""


def test_process_dies_between_stripe_and_the_database(engine, database_url, stripe_env, world):
    v = version(engine, world.member_id)
    script = CRASH.format(root=str(ROOT), key=TEST_KEY, url=database_url, api_key=stripe_env.proc.api_key,
                          api_base=stripe_env.proc.url, member_id=world.member_id, version=v,
                          payment_id=world.payment_id)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, timeout=60,
                          env=os.environ | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert done.returncode == 3, done.stderr[-2000:]
    assert len(_stripe_refunds(stripe_env, world)) == 1  # Stripe refunded...
    assert _our_refunds(engine) == 0  # ...and we never wrote it
    with session_scope(engine) as s:
        assert s.scalars(select(ChangeRequest)).one().status == "applying"
    # the agent submits the same form again: it finishes the interrupted change, without a second refund
    change = ChangeInput("refund", world.member_id, v, "requested_by_customer", "asked by phone",
                         {"payment_id": world.payment_id, "amount": 300})
    out = submit(engine, change, SUPPORT, stripe=stripe_env.client)
    assert out.status == "applied" and out.replayed
    assert len(_stripe_refunds(stripe_env, world)) == 1 and _our_refunds(engine) == 1
    with session_scope(engine) as s:
        assert s.get(Payment, world.payment_id).amount_refunded == 300
        assert s.scalars(select(ChangeRequest)).one().status == "applied"


def test_an_answer_we_cannot_read_keeps_the_request_and_says_how_it_is_finished(engine, stripe_env, world):
    # Stripe applied the write, and its answer could not be used: the page said only that the forms
    # "hit an error", and the request sat "being applied" with no trace of why.
    change = ChangeInput("pause", world.member_id, version(engine, world.member_id), "customer_request",
                         "travelling", {"behavior": "void"})
    stripe_env.fault(path_prefix=f"/v1/subscriptions/{world.subscription}", method="POST", mode="apply_then_garble")
    with pytest.raises(ChangeRefused, match="stopped part-way.*Resume on the Membership changes page"):
        submit(engine, change, SUPPORT, stripe=stripe_env.client)
    with session_scope(engine) as s:
        request = s.scalars(select(ChangeRequest)).one()
        assert request.status == "applying" and request.error  # why it stopped, for whoever resumes it
        request_id = request.id
    assert resume(engine, request_id, SUPPORT, stripe=stripe_env.client).status == "applied"
    with session_scope(engine) as s:
        assert s.scalar(select(Subscription.pause_behavior)) == "void"
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "change.pause")) == 1
        assert s.get(ChangeRequest, request_id).error is None
