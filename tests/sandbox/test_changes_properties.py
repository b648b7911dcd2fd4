"""Random bad input to every action (hypothesis): never a traceback, never a partial write.

Each example submits one random change. The answer is an ``Outcome`` or a ``ChangeRefused``
sentence; anything else fails. When the change is refused, the member's data in our database
and in Stripe is exactly what it was before.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from core.changes import ACTIONS, REASONS, Actor, ChangeInput, ChangeRefused, Outcome, preview, submit
from core.db import session_scope
from core.models import Member, MembershipChange, Payment, Refund, StaffNote, Subscription
from tests.support.changes_world import build
from tests.support.factories import make_member, make_tier

PARAM_NAMES = ["days", "tier", "amount", "full", "currency", "payment_id", "invoice_id", "price_id", "when",
               "behavior", "resumes_at", "email", "name", "phone", "address", "proration_date"]
ALL_REASONS = sorted({r for rs in REASONS.values() for r in rs})
ACTORS = [Actor.of("mia", ["manager"]), Actor.of("sam", ["support"]), Actor.of("ada", ["admin"]),
          Actor.of("fin", ["finance"]), Actor.of("nobody", [])]

raw_values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**15, max_value=10**15),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["", "0", "-5", "1e9", "12.345", "NaN", "inf", "2020-01-01", "9999-12-31", "now", "usd",
                     "EUR", "¥1,000", "  7 ", "0x10", "premium", "void", "period_end", "a@b.c", "\x00"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _fingerprint(engine: Any, stripe: Any = None, world: Any = None) -> str:
    """Everything a change could touch, in our database and (when given) in Stripe."""
    with session_scope(engine) as s:
        rows: list[Any] = []
        for model in (Member, Subscription, Refund, StaffNote, MembershipChange, Payment):
            for obj in s.scalars(select(model).order_by(model.id)):
                rows.append({c.key: str(getattr(obj, c.key)) for c in model.__table__.columns
                             if c.key not in ("version", "updated_at")})
    if stripe is not None and world is not None:
        sub = stripe.v1.subscriptions.retrieve(world.subscription).to_dict()
        cus = stripe.v1.customers.retrieve(world.customer).to_dict()
        rows.append([sub.get("status"), sub.get("pause_collection"), sub.get("cancel_at_period_end"),
                     sub.get("trial_end"), [i["price"]["id"] for i in sub["items"]["data"]],
                     len(stripe.v1.refunds.list({"charge": world.charge}).data),
                     len(stripe.v1.subscriptions.list({"customer": world.customer, "status": "all"}).data),
                     cus.get("email"), cus.get("phone"), cus.get("address")])
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


def _current_version(engine: Any, member_id: int) -> int:
    with session_scope(engine) as s:
        m = s.get(Member, member_id)
        return m.version if m else 1


@st.composite
def changes(draw: st.DrawFn, member_id: int, known: dict[str, list[int]] | None = None) -> dict[str, Any]:
    """Mostly a well-formed envelope (known action, this member, current version, a valid reason and
    comment, a role that may act) around random values, so most examples reach each action's own
    validation; sometimes the envelope itself is broken."""
    # integers(0, 9) shrinks towards 0, so 0..8 mean "well formed" and only 9 breaks the envelope
    action = draw(st.one_of(st.sampled_from(sorted(ACTIONS)), st.text(max_size=8))
                  if draw(st.integers(0, 9)) == 9 else st.sampled_from(sorted(ACTIONS)))
    good = draw(st.integers(0, 9)) < 9
    reason_ok = st.sampled_from(REASONS.get(action, ("other",)))
    params = draw(st.dictionaries(st.sampled_from(PARAM_NAMES), raw_values, min_size=1, max_size=4)
                  if draw(st.integers(0, 9)) < 8 else
                  st.one_of(st.dictionaries(st.text(max_size=4), raw_values, max_size=5), raw_values))
    for name, ids in (known or {}).items():  # real ids sometimes, so the deeper checks run too
        if isinstance(params, dict) and name in params and draw(st.booleans()):
            params[name] = draw(st.sampled_from(ids))
    return {
        "action": action,
        "member_id": member_id if good else draw(st.one_of(st.integers(-3, 10**6), st.none(), st.text(max_size=3))),
        "version_shift": 0 if draw(st.integers(0, 9)) < 9 else draw(st.integers(-3, 3)),
        "reason": draw(reason_ok) if draw(st.integers(0, 9)) < 9 else draw(st.one_of(st.text(max_size=10),
                                                                                      st.none())),
        "comment": draw(st.text(min_size=1, max_size=40).filter(str.strip)) if draw(st.integers(0, 9)) < 9
        else draw(st.one_of(st.just(""), st.just("   "), st.none(), st.integers(), st.text(max_size=3000))),
        "params": params,
        "actor": draw(st.sampled_from(ACTORS[:4] * 3 + ACTORS)),
        "preview_only": draw(st.booleans()),
    }


def _run(engine: Any, spec: dict[str, Any], member_id: int, stripe: Any) -> Outcome | ChangeRefused | None:
    version = _current_version(engine, member_id) + spec["version_shift"]
    change = ChangeInput(spec["action"], spec["member_id"], version, spec["reason"], spec["comment"],
                         spec["params"])
    try:
        if spec["preview_only"]:
            preview(engine, change, spec["actor"], stripe=stripe)
            return None
        return submit(engine, change, spec["actor"], stripe=stripe)
    except ChangeRefused as exc:
        assert str(exc) and str(exc)[0].isupper() and str(exc).rstrip()[-1] in ".)”", str(exc)
        return exc


PROPERTY = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def test_random_input_without_stripe(engine, session):
    member = make_member(session, email="ann@example.com")
    make_tier(session, code="premium")
    session.commit()

    @PROPERTY
    @given(spec=changes(member.id))
    def check(spec: dict[str, Any]) -> None:
        before = _fingerprint(engine)
        out = _run(engine, spec, member.id, None)
        if not isinstance(out, Outcome):
            assert _fingerprint(engine) == before, f"refused but written: {out}"

    check()


@pytest.mark.slow
def test_random_input_against_stripe(engine, stripe_env):
    world = build(engine, stripe_env.client)

    @settings(PROPERTY, max_examples=15)
    @given(spec=changes(world.member_id, {"payment_id": [world.payment_id], "price_id": list(world.prices.values())}))
    def check(spec: dict[str, Any]) -> None:
        before = _fingerprint(engine, stripe_env.client, world)
        out = _run(engine, spec, world.member_id, stripe_env.client)
        if not isinstance(out, Outcome):
            assert _fingerprint(engine, stripe_env.client, world) == before, f"refused but written: {out}"

    check()
