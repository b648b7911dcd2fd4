"""The main changes through a real browser: a real Streamlit server whose Stripe is the sandbox.

A support agent signs in, opens a member, cancels at period end and refunds part of a payment;
Stripe and our database both show the result. A stale form is refused with the fresh state."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core import crypto
from core.db import make_engine, session_scope
from core.db.migrate import upgrade
from core.models import Payment, Subscription
from tests.support.browser import (
    COOKIE_KEY,
    ROLE_ACCOUNTS,
    ROOT,
    TEST_KEY,
    create_staff,
    free_port,
    stop_server,
    wait_idle,
)
from tests.support.changes_world import World, build, sandbox, stripe_env  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def _serve(tmp: Path, database_url: str, stripe_key: str, stripe_base: str) -> tuple[str, subprocess.Popen[bytes]]:
    secrets = tmp / "secrets.toml"
    secrets.write_text(
        f'[memberdesk]\ndatabase_url = "{database_url}"\nencryption_keys = ["{TEST_KEY}"]\n'
        f'[authenticator]\ncookie_key = "{COOKIE_KEY}"\ncookie_name = "md_changes_test"\n'
        f'[stripe]\napi_key = "{stripe_key}"\napi_base = "{stripe_base}"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MEMBERDESK_", "STRIPE_", "DATABASE_URL", "STREAMLIT_"))}
    env |= {"MEMBERDESK_SECRETS_FILE": str(secrets), "PYTHONUNBUFFERED": "1"}
    port = free_port()
    log = (tmp / "streamlit.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--secrets.files", str(secrets),
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with suppress(OSError), urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
            if r.status == 200:
                return url, proc
        time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError("streamlit did not start")


@pytest.fixture
def served(tmp_path: Path, stripe_env: Any) -> Iterator[tuple[str, Any, World]]:  # noqa: F811
    crypto.set_keyring(crypto.KeyRing([TEST_KEY]))
    database_url = f"sqlite:///{tmp_path / 'memberdesk.db'}"
    engine = make_engine(database_url)
    upgrade(engine)
    with session_scope(engine) as s:
        create_staff(s)
    world = build(engine, stripe_env.client)
    url, proc = _serve(tmp_path, database_url, stripe_env.proc.api_key, stripe_env.proc.url)
    try:
        yield url, engine, world
    finally:
        stop_server(proc)
        engine.dispose()


def _sign_in(pg: Any, role: str) -> None:
    username, password = ROLE_ACCOUNTS[role]
    pg.get_by_label("Username").wait_for()
    wait_idle(pg)
    pg.get_by_label("Username").fill(username)
    pg.get_by_label("Password", exact=True).fill(password)
    pg.get_by_role("button", name="Sign in").click()
    pg.wait_for_timeout(300)
    wait_idle(pg)


def _choose(pg: Any, label: str, option: str) -> None:
    pg.locator("[data-testid=stSelectbox]").filter(has_text=label).first.click()
    pg.get_by_role("option", name=option).first.click()
    wait_idle(pg)


def _make_change(pg: Any, action: str, comment: str, fill: dict[str, str] | None = None) -> None:
    _choose(pg, "Action", action)
    for label, value in (fill or {}).items():
        pg.get_by_label(label).fill(value)
    pg.get_by_label("Comment (required)").fill(comment)
    pg.get_by_role("button", name="Preview").click()
    wait_idle(pg)
    pg.get_by_role("button", name="Confirm change").click()
    wait_idle(pg)


def test_support_cancels_refunds_and_meets_a_stale_form(page, served, stripe_env):  # noqa: F811
    from core.changes import Actor, ChangeInput, submit
    from core.models import Member

    url, engine, world = served
    page.goto(f"{url}/members?member={world.member_id}")
    _sign_in(page, "support")
    page.get_by_text("Make a change").wait_for()
    wait_idle(page)

    _make_change(page, "Cancel the membership", "Member asked to stop at the end of the month.")
    page.get_by_text("Done.").wait_for()
    assert stripe_env.client.v1.subscriptions.retrieve(world.subscription).cancel_at_period_end is True
    with session_scope(engine) as s:
        assert s.scalar(select(Subscription.cancel_at_period_end)) is True

    _make_change(page, "Refund a payment", "Goodwill for the app outage.", {"Amount (USD)": "2.00"})
    page.get_by_text("Done.").wait_for()
    assert stripe_env.client.v1.charges.retrieve(world.charge).amount_refunded == 200
    with session_scope(engine) as s:
        assert s.get(Payment, world.payment_id).amount_refunded == 200

    # After "Done." the form starts empty; the same refund typed again asks first, naming the earlier one.
    assert page.get_by_label("Amount (USD)").input_value() == ""
    assert page.get_by_label("Comment (required)").input_value() == ""
    page.get_by_label("Amount (USD)").fill("2.00")
    page.get_by_label("Comment (required)").fill("Goodwill for the app outage.")
    page.get_by_role("button", name="Preview").click()
    wait_idle(page)
    page.get_by_text("A refund of $2.00 on this payment was made by support").wait_for()
    assert page.get_by_role("button", name="Confirm change").count() == 0
    assert stripe_env.client.v1.charges.retrieve(world.charge).amount_refunded == 200
    page.get_by_text("Yes, refund again").click()
    page.get_by_role("button", name="Preview").click()
    wait_idle(page)
    page.get_by_role("button", name="Confirm change").click()
    wait_idle(page)
    page.get_by_text("Done.").wait_for()
    assert stripe_env.client.v1.charges.retrieve(world.charge).amount_refunded == 400
    with session_scope(engine) as s:
        v = s.get(Member, world.member_id).version

    # another agent pauses collection after this form was loaded: the form is refused, fresh state shown
    submit(engine, ChangeInput("pause", world.member_id, v, "customer_request", "other agent", {"behavior": "void"}),
           Actor.of("kim", ["manager"]), stripe=stripe_env.client)
    _choose(page, "Action", "Undo a scheduled cancellation")
    page.get_by_label("Comment (required)").fill("Changed their mind.")
    page.get_by_role("button", name="Preview").click()
    wait_idle(page)
    page.get_by_text("This member changed after you opened the form").wait_for()
    page.get_by_text("collection paused").wait_for()
    assert stripe_env.client.v1.subscriptions.retrieve(world.subscription).cancel_at_period_end is True
