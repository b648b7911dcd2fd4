"""The change forms and the Membership changes page, run by Streamlit's AppTest on a real database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from core.changes import Actor, ChangeInput, decide, submit
from core.models import ChangeRequest, Subscription
from tests.support.db import TEST_KEY
from tests.support.factories import make_member, make_tier

ROOT = Path(__file__).resolve().parents[2]

MEMBER_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from dashboard.auth import StaffContext
from dashboard.change_forms import render_member_actions
render_member_actions(StaffContext("sam", "Sam", ("support",)), {member_id})
"""


def _app(at: AppTest, database_url: str, username: str, roles: list[str]) -> AppTest:
    at.secrets["memberdesk"] = {"database_url": database_url, "encryption_keys": TEST_KEY}
    at.session_state["authentication_status"] = True
    at.session_state["username"] = username
    at.session_state["name"] = username.title()
    at.session_state["roles"] = roles
    return at


def _grant_comp_form(database_url: str, member: Any) -> tuple[AppTest, str]:
    """The member's change form as support sees it, with "grant a complimentary membership"
    chosen and its guide shown; returns the run and the form's key prefix."""
    script = MEMBER_SCRIPT.format(root=str(ROOT), member_id=member.id)
    at = _app(AppTest.from_string(script, default_timeout=30), database_url, "sam", ["support"])
    at.run()
    assert not at.exception
    key = f"chg-{member.id}"
    at.selectbox(key=f"{key}-action").set_value("grant_comp").run()
    guide = " ".join(c.value for c in at.caption)
    assert "In Stripe:** Nothing happens in Stripe" in guide and "(/runbook#grant-a-complimentary-membership)" in guide
    return at, key


def _preview_grant(at: AppTest, key: str, days: int, comment: str) -> None:
    """Fill the grant form (days, comment) and press Preview."""
    at.number_input(key=f"{key}-grant_comp-days").set_value(days)
    at.text_area(key=f"{key}-grant_comp-comment").input(comment)
    at.button(key=f"FormSubmitter:{key}-grant_comp-Preview").click().run()


@pytest.fixture
def world(session):
    member = make_member(session, email="ann@example.com", name="Ann")
    make_tier(session, code="premium", rank=1)
    session.commit()
    return member


def test_changes_page_shows_queue_and_history(database_url, engine, world, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    submit(engine, ChangeInput("grant_comp", world.id, world.version, "goodwill", "outage last week",
                               {"days": 3, "tier": "premium"}), Actor.of("sam", ["support"]))
    at = _app(AppTest.from_file(str(ROOT / "pages" / "changes.py"), default_timeout=30), database_url, "mia",
              ["manager"])
    at.run()
    assert not at.exception
    assert any("Membership changes" in t.value for t in at.title)
    assert "Nothing waits for approval." in [i.value for i in at.info]
    history = at.dataframe[0].value
    assert list(history["Status"]) == ["Applied"] or "applied" in str(history["Status"].iloc[0]).lower()


def test_member_form_previews_then_grants(database_url, engine, session, world, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    at, key = _grant_comp_form(database_url, world)
    _preview_grant(at, key, 10, "Apology for the outage")
    assert not at.exception
    assert any("10 days" in i.value for i in at.info), [i.value for i in at.info]
    assert session.scalars(select(Subscription)).all() == []
    at.button(key=f"{key}-grant_comp-confirm").click().run()
    assert not at.exception
    session.expire_all()
    sub = session.scalars(select(Subscription)).one()
    assert sub.complimentary
    assert session.scalars(select(ChangeRequest)).one().requested_by == "sam"
    # "Done." names the change that went through, with what it did.
    done = [s.value for s in at.success if "Done" in s.value]
    assert done and "Grant a complimentary membership" in done[0] and "10 days" in done[0], done
    # After "Done." the form starts afresh (new, empty widgets), so nothing is confirmed twice by accident.
    assert not [
        b for b in at.button if b.key == f"{key}-grant_comp-confirm"]


def test_member_form_refuses_bad_input_with_a_sentence(database_url, session, world, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    at, key = _grant_comp_form(database_url, world)
    _preview_grant(at, key, 90, "long one")
    assert not at.exception
    assert any("at most 30 days" in e.value for e in at.error)
    # Below the widget's old bounds the browser blocked the form with a tooltip: now a sentence.
    at.number_input(key=f"{key}-grant_comp-days").set_value(-5)
    at.button(key=f"FormSubmitter:{key}-grant_comp-Preview").click().run()
    assert [e.value for e in at.error if "days" in e.value and "at most" not in e.value], [e.value for e in at.error]
    assert session.scalars(select(Subscription)).all() == []


def test_admin_sets_limits_on_the_changes_page(database_url, session, world, monkeypatch):
    from core.changes import load_limits

    monkeypatch.delenv("DATABASE_URL", raising=False)
    at = _app(AppTest.from_file(str(ROOT / "pages" / "changes.py"), default_timeout=30), database_url, "root",
              ["admin"])
    at.run()
    at.number_input[0].set_value(14)
    at.text_input[0].set_value("25.00")  # support's largest USD refund
    at.text_input[1].set_value("abc")  # a bad approval amount: nothing saved
    at.button(key="FormSubmitter:chg-limits-Save limits").click().run()
    assert any("not an amount" in e.value for e in at.error)
    assert load_limits(session).extend_max_days["support"] == 30
    at.text_input[1].set_value("150")
    at.button(key="FormSubmitter:chg-limits-Save limits").click().run()
    assert not at.exception
    session.expire_all()
    limits = load_limits(session)
    assert limits.extend_max_days["support"] == 14
    assert limits.refund_max["support"]["USD"] == 2500 and limits.approval_refund_above["USD"] == 15000


def test_support_sees_no_limits_form(database_url, world, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    at = _app(AppTest.from_file(str(ROOT / "pages" / "changes.py"), default_timeout=30), database_url, "sam",
              ["support"])
    at.run()
    assert not at.exception and len(at.text_input) == 0


def _a_refund_waiting_for_mia(database_url: str, engine: Any, stripe_env: Any) -> tuple[Any, Any, AppTest]:
    """A $4.00 refund support asked for, waiting for approval (above a $1.00 approval amount), and the
    Membership changes page as the manager mia opens it: (world, the queued outcome, the page)."""
    from core.changes import load_limits, save_limits
    from core.db import session_scope
    from tests.support.changes_world import build, version

    world = build(engine, stripe_env.client)
    with session_scope(engine) as s:
        limits = load_limits(s)
    limits.approval_refund_above["USD"] = 100
    save_limits(engine, actor=Actor.of("root", ["admin"]), limits=limits)
    queued = submit(engine, ChangeInput("refund", world.member_id, version(engine, world.member_id), "duplicate",
                                        "charged twice", {"payment_id": world.payment_id, "amount": 400}),
                    Actor.of("sam", ["support"]), stripe=stripe_env.client)
    assert queued.status == "pending_approval"
    at = _app(AppTest.from_file(str(ROOT / "pages" / "changes.py"), default_timeout=30), database_url, "mia",
              ["manager"])
    at.secrets["stripe"] = {"api_key": stripe_env.proc.api_key, "api_base": stripe_env.proc.url}
    at.run()
    return world, queued, at


def test_manager_approves_a_queued_refund_on_the_changes_page(database_url, engine, stripe_env,
                                                              monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    world, queued, at = _a_refund_waiting_for_mia(database_url, engine, stripe_env)
    assert not at.exception
    # The approver sees who asks, for what, how much and why, not a bare request number.
    option = at.selectbox(key="chg-decide-id").options[0]
    for part in ("Refund a payment of $4.00", "ann@example.com", "asked by sam", "Duplicate", "charged twice"):
        assert part in option, option
    at.text_area(key="chg-decide-note").input("Checked: the member was charged twice.")
    at.button(key="FormSubmitter:chg-decide-Approve and apply").click().run()
    assert not at.exception
    assert any("Done" in s.value for s in at.success), [e.value for e in at.error]
    assert stripe_env.client.v1.charges.retrieve(world.charge).amount_refunded == 400
    # The page is drawn again under "Done.": the request has left the list and the decision form.
    assert "Nothing waits for approval." in [i.value for i in at.info]
    assert not [b for b in at.get("selectbox") if b.key == "chg-decide-id"]


def test_the_support_agent_withdraws_their_own_waiting_refund(database_url, engine, stripe_env, monkeypatch):
    """The requester cannot approve or reject, and waited for someone else's Reject of a request
    they knew was wrong: their own waiting requests have a Withdraw of their own."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    world, queued, manager_page = _a_refund_waiting_for_mia(database_url, engine, stripe_env)
    assert not [b for b in manager_page.get("selectbox") if b.key == "chg-withdraw-id"]  # not mia's to withdraw
    at = _app(AppTest.from_file(str(ROOT / "pages" / "changes.py"), default_timeout=30), database_url, "sam",
              ["support"])
    at.run()
    assert not at.exception
    assert "Refund a payment of $4.00" in at.selectbox(key="chg-withdraw-id").options[0]
    at.text_input(key="chg-withdraw-note").input("Wrong payment.")
    at.button(key="FormSubmitter:chg-withdraw-Withdraw").click().run()
    assert not at.exception
    assert any("withdrawn; nothing was changed" in s.value for s in at.success), [e.value for e in at.error]
    assert "Nothing waits for approval." in [i.value for i in at.info]
    assert stripe_env.client.v1.charges.retrieve(world.charge).amount_refunded == 0


def test_a_change_made_impossible_elsewhere_is_said_on_confirm(database_url, engine, world, monkeypatch):
    # Two tabs: both previewed, the other tab confirmed first. Here the action had left the list, so
    # Confirm reset the form without a word.
    monkeypatch.delenv("DATABASE_URL", raising=False)
    at, key = _grant_comp_form(database_url, world)
    _preview_grant(at, key, 10, "Apology for the outage")
    submit(engine, ChangeInput("grant_comp", world.id, world.version, "goodwill", "the other tab",
                               {"days": 3, "tier": "premium"}), Actor.of("sam", ["support"]))
    at.button(key=f"{key}-grant_comp-confirm").click().run()
    assert not at.exception
    assert [w.value for w in at.warning if "changed after you previewed" in w.value] == [
        "This member changed after you previewed “Grant a complimentary membership”: it is no longer possible, "
        "and nothing was changed."]
    with Session(engine) as s:
        assert len(s.scalars(select(Subscription)).all()) == 1  # the other tab's, once


def test_a_request_decided_in_another_tab_is_said_so(database_url, engine, stripe_env, monkeypatch):
    # Approve in a second tab answered only "Nothing waits for approval.".
    monkeypatch.delenv("DATABASE_URL", raising=False)
    world, queued, at = _a_refund_waiting_for_mia(database_url, engine, stripe_env)
    decide(engine, queued.request_id, Actor.of("fin", ["finance"]), approve=True, note="the other tab",
           stripe=stripe_env.client)
    at.text_area(key="chg-decide-note").input("me too")
    at.button(key="FormSubmitter:chg-decide-Approve and apply").click().run()
    assert not at.exception
    assert any(f"Request {queued.request_id} was decided by fin a moment ago" in i.value for i in at.info), [
        i.value for i in at.info]
    assert stripe_env.client.v1.charges.retrieve(world.charge).amount_refunded == 400  # once


def test_a_tier_change_confirmed_later_is_prorated_at_its_preview(database_url, engine, stripe_env, monkeypatch):
    """The preview said what Stripe would charge now; Confirm, pressed a moment later, charged what
    Stripe worked out at that later moment: the form did not pass on the moment the preview fixed."""
    import time
    from datetime import UTC, datetime

    from tests.support.changes_world import build

    monkeypatch.delenv("DATABASE_URL", raising=False)
    world = build(engine, stripe_env.client)
    script = MEMBER_SCRIPT.format(root=str(ROOT), member_id=world.member_id).replace('("support",)', '("finance",)')
    at = _app(AppTest.from_string(script, default_timeout=30), database_url, "fin", ["finance"])
    at.secrets["stripe"] = {"api_key": stripe_env.proc.api_key, "api_base": stripe_env.proc.url}
    at.run()
    key = f"chg-{world.member_id}"
    at.selectbox(key=f"{key}-action").set_value("change_price").run()
    form = f"{key}-change_price"
    price = at.selectbox(key=f"{form}-price")
    # The member's own price (Premium, monthly) is not offered as a change: it was the default.
    assert not any("Premium" in o and "/month" in o for o in price.options), price.options
    assert any("Premium" in o and "/year" in o for o in price.options), price.options
    price.set_value(next(o for o in price.options if "Platinum" in o and "/month" in o))
    at.radio(key=f"{form}-when").set_value("now")
    at.text_area(key=f"{form}-comment").input("Upgrade asked for by phone")
    before = int(datetime.now(UTC).timestamp())
    at.button(key=f"FormSubmitter:{form}-Preview").click().run()
    after = int(datetime.now(UTC).timestamp())
    assert not at.exception, at.exception
    shown = " ".join(m.value for m in at.info)
    assert "Charged now" in shown, ([e.value for e in at.error], shown)
    time.sleep(2.5)  # the agent reads the preview, then confirms
    at.button(key=f"{form}-confirm").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    with Session(engine) as s:
        request = s.scalars(select(ChangeRequest).where(ChangeRequest.action == "change_price")).one()
    assert request.status == "applied"
    assert before <= request.params["proration_date"] <= after  # the preview's moment, not Confirm's


def test_a_change_that_needs_approval_is_sent_for_it(database_url, engine, stripe_env, monkeypatch):
    """The button under "Needs a second person's approval" said "Confirm change", as if the refund
    would be made now."""
    from core.changes import load_limits, save_limits
    from core.db import session_scope
    from tests.support.changes_world import build

    monkeypatch.delenv("DATABASE_URL", raising=False)
    world = build(engine, stripe_env.client)
    with session_scope(engine) as s:
        limits = load_limits(s)
    limits.approval_refund_above["USD"] = 100
    save_limits(engine, actor=Actor.of("root", ["admin"]), limits=limits)
    at = _app(AppTest.from_string(MEMBER_SCRIPT.format(root=str(ROOT), member_id=world.member_id),
                                  default_timeout=30), database_url, "sam", ["support"])
    at.secrets["stripe"] = {"api_key": stripe_env.proc.api_key, "api_base": stripe_env.proc.url}
    at.run()
    key = f"chg-{world.member_id}"
    at.selectbox(key=f"{key}-action").set_value("refund").run()
    form = f"{key}-refund"
    at.text_input(key=f"{form}-amount").input("4.00")
    at.text_area(key=f"{form}-comment").input("Charged twice")
    at.button(key=f"FormSubmitter:{form}-Preview").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.button(key=f"{form}-confirm").label == "Send for approval"
    at.button(key=f"{form}-confirm").click().run()
    with Session(engine) as s:
        assert s.scalars(select(ChangeRequest)).one().status == "pending_approval"
