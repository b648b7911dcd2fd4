"""The main changes through a real browser: a real Streamlit server whose Stripe is the sandbox.

A support agent signs in, opens a member, cancels at period end and refunds part of a payment;
Stripe and our database both show the result. A stale form is refused with the fresh state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.db import make_engine, session_scope
from core.models import Payment, Subscription
from tests.support.browser import (
    choose,
    confirm_change,
    make_change,
    preview,
    refund_again,
    sign_in_as,
    wait_idle,
)
from tests.support.changes_world import World, build
from tests.support.db import migrated_sqlite
from tests.support.servers import start_server, stop_server
from tests.support.worlds import create_staff

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


@pytest.fixture
def served(tmp_path: Path, stripe_env: Any) -> Iterator[tuple[str, Any, World]]:
    database_url = migrated_sqlite(tmp_path / "memberdesk.db")
    engine = make_engine(database_url)
    create_staff(engine)
    world = build(engine, stripe_env.client)
    server = start_server(tmp_path, database_url=database_url, stripe_settings=stripe_env.server_settings())
    try:
        yield server.url, engine, world
    finally:
        stop_server(server.proc)
        server.engine.dispose()
        engine.dispose()


def test_support_cancels_refunds_and_meets_a_stale_form(page, served, stripe_env):
    from core.changes import Actor, ChangeInput, submit
    from core.models import Member

    url, engine, world = served
    page.goto(f"{url}/members?member={world.member_id}")
    sign_in_as(page, "support")
    page.get_by_text("Make a change").wait_for()
    wait_idle(page)

    make_change(page, "Cancel the membership", "Member asked to stop at the end of the month.")
    assert stripe_env.client.v1.subscriptions.retrieve(world.subscription).cancel_at_period_end is True
    with session_scope(engine) as s:
        assert s.scalar(select(Subscription.cancel_at_period_end)) is True

    make_change(page, "Refund a payment", "Goodwill for the app outage.", {"Amount (USD)": "2.00"})
    assert stripe_env.client.v1.charges.retrieve(world.charge).amount_refunded == 200
    with session_scope(engine) as s:
        assert s.get(Payment, world.payment_id).amount_refunded == 200

    # After "Done." the form starts empty; the same refund typed again asks first, naming the earlier one.
    assert page.get_by_label("Amount (USD)").input_value() == ""
    assert page.get_by_label("Comment (required)").input_value() == ""
    refund_again(page, "2.00", "Goodwill for the app outage.", earlier_by="support")
    assert stripe_env.client.v1.charges.retrieve(world.charge).amount_refunded == 200
    page.get_by_text("Yes, refund again").click()
    preview(page, page.get_by_role("button", name="Confirm change"))
    confirm_change(page)
    assert stripe_env.client.v1.charges.retrieve(world.charge).amount_refunded == 400

    # The amount changed after Preview: Confirm makes nothing and previews what the form says now.
    page.get_by_label("Amount (USD)").fill("1.00")
    page.get_by_label("Comment (required)").fill("Half the outage week.")
    preview(page, page.get_by_role("button", name="Confirm change"))
    page.get_by_label("Amount (USD)").fill("3.00")
    page.get_by_role("button", name="Confirm change").click()
    wait_idle(page)
    page.get_by_text("The form changed after its preview, so nothing was changed").wait_for()
    assert stripe_env.client.v1.charges.retrieve(world.charge).amount_refunded == 400
    page.get_by_text("$3.00").first.wait_for()
    confirm_change(page)
    assert stripe_env.client.v1.charges.retrieve(world.charge).amount_refunded == 700
    with session_scope(engine) as s:
        v = s.get(Member, world.member_id).version

    # another agent pauses collection after this form was loaded: the form is refused, fresh state shown
    submit(engine, ChangeInput("pause", world.member_id, v, "customer_request", "other agent", {"behavior": "void"}),
           Actor.of("kim", ["manager"]), stripe=stripe_env.client)
    choose(page, "Action", "Undo a scheduled cancellation")
    page.get_by_label("Comment (required)").fill("Changed their mind.")
    page.get_by_role("button", name="Preview").click()
    wait_idle(page)
    page.get_by_text("This member changed after you opened the form").wait_for()
    page.get_by_text("collection paused").wait_for()
    assert stripe_env.client.v1.subscriptions.retrieve(world.subscription).cancel_at_period_end is True
