"""A day in the life of each role, in Chromium against a fresh server whose Stripe is the sandbox.

Each day runs once, on one database: support's and finance's (the days that move and read money)
on PostgreSQL when TEST_DATABASE_URL is set, the manager's and the admin's on SQLite, so both
databases meet a whole day. (Every day on both took a quarter of the browser tests' time, which
run one after another; what differs between the databases is what the database tests cover.)

Each journey does that role's real work and asserts what the person sees: the answer of every
action, numbers equal to the command line's, no stored code shown raw, nothing done twice (in
Stripe and in our tables), and no traceback in the server's log.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from core.changes.reasons import LABELS as CHANGE_REASONS
from core.db import session_scope
from core.labels import CANCELLATION, DECLINE, REFUND
from core.models import ChangeRequest, StaffNote
from core.money import decimals
from tests.support.browser import (
    choose,
    fill_new_account,
    make_change,
    pick_option,
    refund_again,
    sign_in,
    sign_in_as,
    wait_idle,
)
from tests.support.changes_world import World, build
from tests.support.db import PG_URL, TEST_KEY
from tests.support.servers import ROOT, Server, start_server, stop_server
from tests.support.worlds import build_small_world, create_staff, refresh_rollups

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

# Every stored code with an underscore that a person could meet (Stripe's and our own): none may be
# shown as it is stored.
RAW_CODES = sorted({c for table in (CANCELLATION, REFUND, DECLINE, CHANGE_REASONS) for c in table if "_" in c})
RAW = re.compile(r"(?<![\w/#=?&.-])(" + "|".join(map(re.escape, RAW_CODES)) + r")(?![\w])")


# The database a day runs on (see the docstring): PostgreSQL for the money days when there is one.
ON_POSTGRESQL = pytest.mark.parametrize("database_url", ["postgresql" if PG_URL else "sqlite"], indirect=True)
ON_SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@dataclass
class Day:
    server: Server
    engine: Engine
    stripe: Any
    world: World


@pytest.fixture
def day(tmp_path: Path, database_url: str, engine: Engine, stripe_env: Any) -> Iterator[Day]:
    create_staff(engine, extra={"lockme": "support"})
    world = build(engine, stripe_env.client, email="jo.member@example.com")
    with session_scope(engine) as s:  # Ann Lee, Bob Stone (past due), ...: members with a history
        build_small_world(s)
    refresh_rollups(engine)  # as the sync does after writing
    server = start_server(tmp_path, database_url=database_url, stripe_settings=stripe_env.server_settings())
    try:
        yield Day(server, engine, stripe_env, world)
    finally:
        stop_server(server.proc)
        server.engine.dispose()
    log = server.log_path.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log, log[-4000:]


def as_read(text: str) -> re.Pattern[str]:
    """``text`` as a pattern that also matches it with the invisible word joiners ``md()`` puts
    into addresses (so they are not turned into links)."""
    return re.compile("\u2060?".join(re.escape(ch) for ch in text))


def seen(page: Any) -> str:
    """Everything on screen (and in the grids' accessible cells), for what-a-person-reads checks.
    The invisible word joiner that keeps names and addresses from becoming links is not read."""
    return page.inner_text("body").replace("\u2060", "")


def no_raw_codes(page: Any) -> None:
    found = sorted(set(RAW.findall(seen(page))))
    assert not found, f"stored codes shown raw: {found}"


def staff_account(engine: Engine, username: str) -> Any:
    from core import staff

    with session_scope(engine) as s:
        return staff.get(s, username)


def requests(engine: Engine, action: str) -> list[str]:
    with session_scope(engine) as s:
        return list(s.scalars(select(ChangeRequest.status).where(ChangeRequest.action == action)))


# ----------------------------------------------------------------------------------------- support

@ON_POSTGRESQL
def test_support_day(page: Any, day: Day) -> None:
    w, client = day.world, day.stripe.client
    page.goto(f"{day.server.url}/members")
    sign_in_as(page, "support")
    page.get_by_role("textbox", name="Find a member").wait_for()
    # Find the member by each key a caller may give.
    for key in ("jo.member@example.com", "jo.member", "Ann Lee", w.customer, str(w.member_id)):
        page.get_by_role("textbox", name="Find a member").fill(key)
        page.get_by_role("textbox", name="Find a member").press("Enter")
        wait_idle(page)
        page.get_by_role("link", name=as_read("jo.member@example.com")).first.wait_for()
        no_raw_codes(page)
    page.get_by_role("link", name=as_read("jo.member@example.com")).first.click()
    page.get_by_text("Make a change").wait_for()
    wait_idle(page)

    # The refund form explains itself before anything is done.
    choose(page, "Action", "Refund a payment")
    page.get_by_text("Stripe refunds the amount to the card").wait_for()
    assert page.get_by_role("link", name="Runbook: Refund a payment").count() == 1

    # Refund 1.00; the same refund again is stopped with the first one named; nothing twice.
    make_change(page, "Refund a payment", "Charged for a day of outage.", {"Amount (USD)": "1.00"})
    assert client.v1.charges.retrieve(w.charge).amount_refunded == 100
    refund_again(page, "1.00", "Charged for a day of outage.", earlier_by="support")
    assert client.v1.charges.retrieve(w.charge).amount_refunded == 100
    no_raw_codes(page)

    # Cancel at the end of the period, then undo it.
    make_change(page, "Cancel the membership", "Moving abroad next month.")
    assert client.v1.subscriptions.retrieve(w.subscription).cancel_at_period_end is True
    make_change(page, "Undo a scheduled cancellation", "Changed their mind on the phone.")
    assert client.v1.subscriptions.retrieve(w.subscription).cancel_at_period_end is False

    # A note, and the refund as the member's record shows it.
    page.get_by_role("tab", name="Refunds and disputes").click()
    wait_idle(page)
    page.locator("[role=gridcell]", has_text="$1.00").first.wait_for(state="attached")
    no_raw_codes(page)
    page.get_by_role("tab", name="Notes").click()
    page.get_by_label("Add a note", exact=True).fill("Called twice about the outage; refund made, cancellation undone.")
    page.get_by_role("button", name="Save note").click()
    wait_idle(page)
    page.get_by_text("Note saved.").wait_for()
    no_raw_codes(page)

    assert requests(day.engine, "refund") == ["applied"]
    assert requests(day.engine, "cancel") == ["applied"] and requests(day.engine, "uncancel") == ["applied"]
    assert len(client.v1.refunds.list({"charge": w.charge}).data) == 1
    with session_scope(day.engine) as s:
        assert s.scalar(select(func.count()).select_from(StaffNote).where(StaffNote.member_id == w.member_id)) == 1


# ------------------------------------------------------------------------------------------- admin

@ON_SQLITE
def test_admin_day(page: Any, day: Day) -> None:
    page.goto(f"{day.server.url}/admin")
    sign_in_as(page, "admin")
    page.get_by_text("Staff accounts").first.wait_for()
    wait_idle(page)
    # Create an account, right after signing in.
    fill_new_account(page, "newagent", "New Agent", "support", "a-long-first-password")
    wait_idle(page)
    page.get_by_text("Account newagent created.").wait_for()
    assert staff_account(day.engine, "newagent") is not None
    wait_idle(page)
    # Not offered on their own account.
    choose(page, "Account", "admin")
    assert page.get_by_role("button", name="Disable account").count() == 0

    # The new agent is locked out after five wrong passwords (in another browser)...
    other = page.context.browser.new_context(viewport={"width": 1280, "height": 900})
    agent = other.new_page()
    agent.goto(day.server.url)
    for _ in range(5):
        sign_in(agent, "newagent", "wrong-password-x")
    agent.get_by_text("This account is locked").wait_for()

    # ... the admin sees it and unlocks the account ...
    page.reload()
    wait_idle(page)
    choose(page, "Account", "newagent")
    page.get_by_role("button", name="Unlock", exact=True).click()
    wait_idle(page)
    page.get_by_text("newagent is unlocked.").wait_for()
    no_raw_codes(page)

    # ... and the agent signs in.
    agent.reload()
    sign_in(agent, "newagent", "a-long-first-password")
    agent.get_by_role("button", name=re.compile("Sign out|Log out")).first.wait_for()
    other.close()


# ----------------------------------------------------------------------------------------- manager

@ON_SQLITE
def test_manager_day(page: Any, day: Day) -> None:
    from datetime import timedelta

    from core.changes import Actor, ChangeInput, load_limits, save_limits, submit
    from core.models import AlertTransition
    from core.timeutil import utc_now
    from tests.support.changes_world import version
    from tests.support.factories import make_sync_run

    w, client = day.world, day.stripe.client
    with session_scope(day.engine) as s:
        limits = load_limits(s)
    limits.approval_refund_above["USD"] = 300
    save_limits(day.engine, actor=Actor.of("admin", ["admin"]), limits=limits)
    with session_scope(day.engine) as s:
        make_sync_run(s, started_at=utc_now() - timedelta(hours=10), finished_at=utc_now() - timedelta(hours=10))
    asked = submit(day.engine, ChangeInput("refund", w.member_id, version(day.engine, w.member_id), "duplicate",
                                           "Charged twice on the 3rd.", {"payment_id": w.payment_id, "amount": "4.00"}),
                   Actor.of("support", ["support"]), stripe=client)
    assert asked.status == "pending_approval"

    # The failed-payment worklists.
    page.goto(f"{day.server.url}/failed_payments")
    sign_in_as(page, "manager")
    page.get_by_text("Past-due worklist").wait_for()
    wait_idle(page)
    page.locator("[data-testid=stExpander]", has_text="1 member(s)").first.wait_for()
    page.locator("[role=gridcell]", has_text="bob.stone@example.org").first.wait_for(state="attached")
    no_raw_codes(page)

    # Approve the queued refund: the queue says who asks, for what, how much and why.
    page.goto(f"{day.server.url}/changes")
    page.get_by_text("Waiting for approval", exact=True).wait_for()
    wait_idle(page)
    page.locator("[data-testid=stSelectbox]").filter(has_text="Request to decide").first.wait_for()
    shown = seen(page)
    for part in ("Refund a payment of $4.00", "jo.member@example.com", "asked by support", "Duplicate charge",
                 "Charged twice"):
        assert part in shown, shown
    page.get_by_label("Note for your decision (required)").fill("Checked the two charges: a duplicate.")
    page.get_by_role("button", name="Approve and apply").click()
    wait_idle(page)
    page.get_by_text("Done.").first.wait_for()
    assert client.v1.charges.retrieve(w.charge).amount_refunded == 400
    assert requests(day.engine, "refund") == ["applied"]
    no_raw_codes(page)

    # The stale-sync alert: acknowledge, snooze, resolve.
    page.goto(f"{day.server.url}/alerts")
    page.get_by_role("tab", name="Open alerts").wait_for()
    wait_idle(page)
    card = page.locator("[data-testid=stExpander]", has_text="Stripe").first
    card.wait_for()
    card.get_by_role("button", name="Acknowledge").click()
    wait_idle(page)
    page.get_by_text("acknowledged.").first.wait_for()
    card = page.locator("[data-testid=stExpander]", has_text="Stripe").first
    card.get_by_label("Note (required to snooze or resolve)").fill("Sync job restarting.")
    card.get_by_role("button", name="Snooze").click()
    wait_idle(page)
    page.get_by_text("snoozed.").first.wait_for()
    page.get_by_role("tab", name="Snoozed").click()
    card = page.locator("[data-testid=stExpander]", has_text="Stripe").first
    card.wait_for()
    assert card.get_by_role("button", name="Acknowledge").is_disabled()
    card.get_by_label("Note (required to snooze or resolve)").fill("The sync runs again.")
    card.get_by_role("button", name="Resolve").click()
    wait_idle(page)
    page.get_by_text("resolved.").first.wait_for()
    no_raw_codes(page)
    with session_scope(day.engine) as s:
        steps = [(t.from_status, t.to_status) for t in s.scalars(select(AlertTransition).order_by(AlertTransition.id))]
    assert steps == [(None, "open"), ("open", "acknowledged"), ("acknowledged", "snoozed"), ("snoozed", "resolved")]

    # A rule's thresholds, in each currency's own amounts. After "Back to the default thresholds"
    # the form kept showing the values typed before it, and the next save stored them again.
    from core.models import AlertRule

    def amount(currency: str) -> Any:
        return page.locator(f'input[aria-label="Refunds above ({currency})"]')

    def save_rule() -> None:
        page.get_by_role("button", name="Save rule").click()
        wait_idle(page)

    page.get_by_role("tab", name="Rules").click()
    choose(page, "Rule", "A single large refund")
    amount("USD").wait_for()
    assert (amount("USD").input_value(), amount("JPY").input_value()) == ("250.00", "40000")
    amount("USD").fill("333.00")
    save_rule()
    page.get_by_text("Rule “A single large refund” saved.").wait_for()
    amount("EUR").fill("275.00")
    page.get_by_text("Back to the default thresholds").click()
    save_rule()
    assert amount("USD").input_value() == "250.00" and amount("EUR").input_value() == "275.00"
    page.locator('input[aria-label="Looks back (hours)"]').fill("48")
    save_rule()
    with session_scope(day.engine) as s:
        stored = s.get(AlertRule, "large_refund").params
    assert stored["lookback_hours"] == 48
    assert {c: int(v) for c, v in stored["max_amount"].items()} == {"USD": 25000, "EUR": 27500, "GBP": 20000,
                                                                     "JPY": 40000}
    # A refusal right after a save: the refusal alone, not under the save's "saved".
    amount("GBP").fill("0")
    save_rule()
    page.get_by_text("“Refunds above (GBP)” takes a number above zero").wait_for()
    assert "saved." not in seen(page)
    no_raw_codes(page)


# ----------------------------------------------------------------------------------------- finance

def cli(day: Day, *args: str) -> str:
    env = {"DATABASE_URL": day.server.database_url, "MEMBERDESK_ENCRYPTION_KEYS": TEST_KEY,
           "PATH": "/usr/bin:/bin", "HOME": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def card_value(page: Any, label: str) -> str:
    metric = page.locator("[data-testid=stMetric]", has_text=label).first
    return metric.locator("[data-testid=stMetricValue]").inner_text().strip()


@ON_POSTGRESQL
def test_finance_day(page: Any, day: Day, tmp_path: Path) -> None:
    from datetime import timedelta

    from core.money import format_money
    from core.timeutil import utc_now

    today = utc_now().date()
    start = (today.replace(day=1) - timedelta(days=70)).replace(day=1)
    page.goto(f"{day.server.url}/revenue?from={start}&to={today}")
    sign_in_as(page, "finance")
    page.get_by_text("Net revenue").first.wait_for()
    wait_idle(page)
    for grain in ("month", "week", "day"):
        page.get_by_role("radiogroup", name="Granularity").get_by_text(grain.title(), exact=True).click()
        wait_idle(page)
        doc = json.loads(cli(day, "metrics", "--from", str(start), "--to", str(today + timedelta(days=1)),
                             "--granularity", grain, "--metric", "net_revenue", "--metric", "mrr"))
        for m in doc["metrics"]:
            title = {"net_revenue": "Net revenue", "mrr": "MRR"}[m["slug"]]
            assert card_value(page, title) == format_money(int(m["value"]), m["currency"]), (grain, title)
        no_raw_codes(page)

    # Drill into the money collected, download the rows and read them back.
    pick_option(page, page.locator(".st-key-revenue_cash_drill [data-testid=stSelectbox]"), "Cash: Collected")
    wait_idle(page)
    page.get_by_text("row(s) behind Cash: Collected").wait_for()
    with page.expect_download() as info:
        page.locator(".st-key-revenue_cash_csv button").click()
    saved = tmp_path / "collected.csv"
    info.value.save_as(saved)
    rows = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8"))))
    expected = list(csv.DictReader(io.StringIO(cli(
        day, "metrics", "--from", str(start), "--to", str(today + timedelta(days=1)), "--granularity", "day",
        "--drill", "gross_revenue", "--format", "csv"))))
    assert len(rows) == len(expected) > 0
    # The command line's rows for scripts (codes, minor units); the page's for people (words, each
    # amount a plain number in major units beside its currency): the same payments and amounts.
    assert sorted(r["Payment id"] for r in rows) == sorted(r["payment_id"] for r in expected)
    by_id = {r["payment_id"]: r for r in expected}
    for r in rows:
        cli_row = by_id[r["Payment id"]]
        assert r["Currency"] == cli_row["currency"]
        assert Decimal(r["Amount"]) * 10 ** decimals(r["Currency"]) == int(cli_row["amount_minor"]), (r, cli_row)
    no_raw_codes(page)
