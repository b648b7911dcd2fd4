"""Shared helpers for dashboard tests: a small world, staff accounts, AppTest runs, and a real
Streamlit server driven by Debian's Chromium through Playwright.

- ``build_small_world(session)``: a hand-built world (tiers, prices, members with subscriptions,
  payments with decline codes, a refund, a dispute, cards, invoices, membership changes) whose
  numbers tests can state exactly. ``load_world(engine)`` loads a small demo world first
  (``core.demo.load_demo``, 300 members) when ``prefer_demo`` and adds this world to it.
- ``create_staff(session)``: the four demo sign-ins (one per role) with cheap bcrypt hashes.
- ``app_test(database_url, role=...)``: an ``AppTest`` of ``dashboard/app.py`` signed in as that
  demo account (session state seeded; the account must exist in the database).
- Fixtures ``dashboard_server`` (session scope: one server for every browser test on a worker)
  and ``browser``/``page``; import them into a test module with
  ``from tests.browser_helpers import dashboard_server, browser, page  # noqa: F401``.
  Browser tests are marked ``@pytest.mark.browser`` and ``@pytest.mark.xdist_group("browser")``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "dashboard" / "app.py")
TEST_KEY = "dGVzdC1rZXktZm9yLW1lbWJlcmRlc2stdGVzdHMtMDA="
COOKIE_KEY = "test-cookie-key-" + "x" * 48
ROLE_ACCOUNTS = {"support": ("support", "support-demo-pass"), "finance": ("finance", "finance-demo-pass"),
                 "manager": ("manager", "manager-demo-pass"), "admin": ("admin", "admin-demo-pass")}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IDLE = "[data-testid=stApp][data-test-script-state=notRunning]"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# ------------------------------------------------------------------ the world

@dataclass(frozen=True)
class World:
    """Ids and expected figures of ``build_small_world``."""

    ann_id: int  # premium monthly USD, active, card visa 4242, a failed then succeeded renewal
    bob_id: int  # platinum yearly EUR, past due, insufficient_funds declines, a refund and a dispute
    cara_id: int  # canceled premium
    dan_id: int  # free member, no Stripe customer
    paying_usd_mrr: int  # sum of mrr_minor of active/past-due USD subscriptions
    paying_eur_mrr: int


def build_small_world(session: Session, *, now: Any = None) -> World:
    """Insert the small world; ``now`` (aware UTC) places this month's payments (default: now)."""
    from sqlalchemy import select

    from core.models import Dispute, Invoice, MembershipChange, PaymentMethod, Refund, StaffNote, Tier
    from core.timeutil import utc_now
    from tests.factories import at, make_member, make_payment, make_price, make_subscription, make_tier

    now = now or utc_now()
    # reuse the tiers when the demo catalogue is already loaded
    premium = session.scalar(select(Tier).where(Tier.code == "premium")) or make_tier(session, code="premium", rank=1)
    platinum = (session.scalar(select(Tier).where(Tier.code == "platinum"))
                or make_tier(session, code="platinum", rank=2))
    p_usd = make_price(session, tier=premium, currency="USD", unit_amount=999)
    pl_eur = make_price(session, tier=platinum, currency="EUR", unit_amount=19900, interval="year")

    ann = make_member(session, email="ann.lee@example.com", name="Ann Lee", stripe_customer_id="cus_ANN0001")
    bob = make_member(session, email="bob.stone@example.org", name="Bob Stone", country="DE",
                      stripe_customer_id="cus_BOB0002")
    cara = make_member(session, email="cara@example.net", name="Cara Diaz", stripe_customer_id="cus_CARA003")
    dan = make_member(session, email="dan@example.com", name="Dan Free", stripe_customer_id=None)
    ann.phone = "+1 555 0100"

    ann_sub = make_subscription(session, member=ann, price=p_usd, status="active", mrr_minor=999,
                                current_period_start=at("2026-11-01 00:00"), current_period_end=at("2026-12-01 00:00"))
    make_subscription(session, member=bob, price=pl_eur, status="past_due", mrr_minor=1658,
                      past_due_since=at("2026-11-10 00:00"))
    make_subscription(session, member=cara, price=p_usd, status="canceled", mrr_minor=0,
                      canceled_at=at("2026-06-01 00:00"), ended_at=at("2026-06-01 00:00"),
                      cancellation_reason="cancellation_requested", churn_kind="voluntary")

    pm = PaymentMethod(member_id=ann.id, stripe_payment_method_id="pm_ANN", brand="visa", last4="4242",
                       exp_month=8, exp_year=2028, is_default=True, created_at=at("2025-01-01 00:00"))
    session.add_all([pm, PaymentMethod(member_id=bob.id, stripe_payment_method_id="pm_BOB", brand="mastercard",
                                       last4="5555", exp_month=1, exp_year=2027, is_default=True,
                                       created_at=at("2025-01-01 00:00"))])
    inv = Invoice(stripe_invoice_id="in_ANN0001", member_id=ann.id, subscription_id=ann_sub.id, number="ANN-0001",
                  status="paid", billing_reason="subscription_cycle", currency="USD", subtotal=999, total=999,
                  amount_due=999, amount_paid=999, created_at=now, paid_at=now, attempt_count=2)
    session.add(inv)
    session.flush()
    make_payment(session, member=ann, amount=999, status="failed", created_at=now, invoice_id=inv.id,
                 decline_code="insufficient_funds", failure_code="card_declined", card_brand="visa",
                 card_last4="4242", attempt_number=1, is_renewal=True)
    ok = make_payment(session, member=ann, amount=999, status="succeeded", created_at=now, invoice_id=inv.id,
                      card_brand="visa", card_last4="4242", attempt_number=2, is_renewal=True)
    ok.stripe_charge_id = "ch_ANN_OK"
    bob_paid = make_payment(session, member=bob, amount=19900, currency="EUR", status="succeeded",
                            created_at=at("2025-11-10 00:00"), card_brand="mastercard", card_last4="5555",
                            amount_refunded=5000, disputed=True)
    make_payment(session, member=bob, amount=19900, currency="EUR", status="failed", created_at=now,
                 decline_code="insufficient_funds", failure_code="card_declined", card_brand="mastercard",
                 card_last4="5555", is_renewal=True)
    session.add_all([
        Refund(stripe_refund_id="re_BOB1", payment_id=bob_paid.id, member_id=bob.id, amount=5000, currency="EUR",
               status="succeeded", reason="requested_by_customer", created_at=at("2025-12-01 00:00")),
        Dispute(stripe_dispute_id="dp_BOB1", payment_id=bob_paid.id, member_id=bob.id, amount=14900,
                currency="EUR", status="needs_response", reason="fraudulent", created_at=at("2026-01-05 00:00")),
        MembershipChange(member_id=ann.id, subscription_id=ann_sub.id, effective_at=at("2025-01-01 00:00"),
                         kind="created", to_status="active", to_tier_id=premium.id, currency="USD",
                         mrr_before_minor=0, mrr_after_minor=999, source="demo"),
        StaffNote(member_id=ann.id, author="support", body="Called about a double charge.",
                  created_at=at("2026-02-01 10:00")),
    ])
    session.flush()
    return World(ann_id=ann.id, bob_id=bob.id, cara_id=cara.id, dan_id=dan.id, paying_usd_mrr=999,
                 paying_eur_mrr=1658)


def create_staff(session: Session, *, extra: dict[str, str] | None = None) -> None:
    """The four demo accounts (username = role) and ``extra`` {username: roles} with password
    ``<username>-demo-pass``; bcrypt cost 4 keeps tests fast."""
    from core import staff
    from core.demo_accounts import DEMO_ACCOUNTS

    for username, name, roles, password in DEMO_ACCOUNTS:
        staff.create(session, actor="test", username=username, name=name, email=f"{username}@example.com",
                     roles=roles, password=password, bcrypt_rounds=4)
    for username, roles in (extra or {}).items():
        staff.create(session, actor="test", username=username, name=username.title(),
                     email=f"{username}@example.com", roles=roles, password=f"{username}-demo-pass",
                     bcrypt_rounds=4)


def load_world(engine: Engine, *, prefer_demo: bool = True, demo_members: int = 300) -> World:
    """The demo world (when the demo loader exists and ``prefer_demo``) plus, always, the small
    hand-built world whose members tests name (Ann Lee, Bob Stone, ...)."""
    if prefer_demo:
        with contextlib.suppress(ImportError):
            from core.demo import load_demo

            load_demo(engine, members=demo_members, seed=7)
    with Session(engine, expire_on_commit=False) as s:
        world = build_small_world(s)
        s.commit()
    return world


# ------------------------------------------------------------------ AppTest

def secrets_for(database_url: str) -> dict[str, dict[str, Any]]:
    return {"memberdesk": {"database_url": database_url, "encryption_keys": [TEST_KEY]},
            "authenticator": {"cookie_key": COOKIE_KEY, "cookie_name": "memberdesk_test",
                              "session_idle_minutes": 30},
            "stripe": {"api_key": "sk_test_dummy", "api_base": ""}}


def app_test(database_url: str, *, role: str | None = None, username: str | None = None,
             roles: list[str] | None = None, clear_cache: bool = True) -> Any:
    """An AppTest of the entrypoint; signed in as ``username`` (default: the demo account of
    ``role``) when a role or username is given. Caches are cleared unless ``clear_cache=False``
    (the function-scoped PostgreSQL databases of one worker share one URL)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    if clear_cache:
        st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=15)
    for section, values in secrets_for(database_url).items():
        at.secrets[section] = values
    if role or username:
        user = username or role
        at.session_state["authentication_status"] = True
        at.session_state["username"] = user
        at.session_state["name"] = str(user).title()
        at.session_state["roles"] = roles or [role]
        at.session_state["logout"] = None
    return at


def page_app_test(database_url: str, page_file: str, *, role: str, clear_cache: bool = True) -> Any:
    """An AppTest of one page module run directly (without the entrypoint): what a bypass would
    reach, so the page's own guard must refuse."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    if clear_cache:
        st.cache_data.clear()
    at = AppTest.from_file(str(ROOT / "pages" / page_file), default_timeout=15)
    for section, values in secrets_for(database_url).items():
        at.secrets[section] = values
    at.session_state["authentication_status"] = True
    at.session_state["username"] = role
    at.session_state["name"] = role.title()
    at.session_state["roles"] = [role]
    return at


def texts(at: Any) -> str:
    """Everything a person reads on an AppTest page, as one string (for `in` assertions)."""
    parts: list[str] = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error", "success",
                 "metric"):
        for el in getattr(at, kind, []):
            value = getattr(el, "value", "")
            parts.append(str(value))
            if kind == "metric":
                parts.append(str(getattr(el, "label", "")))
    return "\n".join(parts)


# ------------------------------------------------------------------ real server + Chromium

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    database_url: str
    engine: Engine
    world: World | None
    proc: subprocess.Popen[bytes]
    log_path: Path


def start_server(tmp: Path, *, database_url: str, port: int | None = None,
                 stripe: tuple[str, str] | None = None) -> Server:
    """``streamlit run dashboard/app.py`` on a free port with a test secrets file, in its own
    process group; returns when ``/_stcore/health`` answers. ``stripe``: (api key, api base) of
    a sandbox, for pages that change memberships."""
    from core.db import make_engine

    port = port or free_port()
    secrets = tmp / "secrets.toml"
    s = secrets_for(database_url)
    secrets.write_text(
        "[memberdesk]\n"
        f'database_url = "{database_url}"\n'
        f'encryption_keys = ["{TEST_KEY}"]\n'
        "[authenticator]\n"
        f'cookie_key = "{COOKIE_KEY}"\n'
        f'cookie_name = "{s["authenticator"]["cookie_name"]}"\n'
        "session_idle_minutes = 30\n"
        "[stripe]\n"
        + (f'api_key = "{stripe[0]}"\napi_base = "{stripe[1]}"\n' if stripe else 'api_key = "sk_test_dummy"\n'),
        encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MEMBERDESK_", "STRIPE_", "DATABASE_URL", "STREAMLIT_"))}
    env["MEMBERDESK_SECRETS_FILE"] = str(secrets)
    env["PYTHONUNBUFFERED"] = "1"
    log_path = tmp / "streamlit.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--secrets.files", str(secrets),
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited: {log_path.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
            if r.status == 200:
                return Server(url=url, database_url=database_url, engine=make_engine(database_url), world=None,
                              proc=proc, log_path=log_path)
        time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError("streamlit did not become healthy within 30 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=3)  # a test server has nothing worth a long graceful shutdown
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def prepare_database(path: Path, *, prefer_demo: bool = True) -> tuple[str, World]:
    """A migrated SQLite file with the world and staff (plus ``lockme``, ``gone`` for lockout and
    disabled-account tests)."""
    from core import crypto
    from core.db import make_engine, session_scope
    from core.db.migrate import upgrade

    crypto.set_keyring(crypto.KeyRing([TEST_KEY]))
    url = f"sqlite:///{path}"
    eng = make_engine(url)
    upgrade(eng)
    world = load_world(eng, prefer_demo=prefer_demo)
    with session_scope(eng) as s:
        create_staff(s, extra={"lockme": "support", "gone": "support"})
    with session_scope(eng) as s:
        from core import staff

        staff.set_active(s, actor="test", username="gone", active=False)
    eng.dispose()
    return url, world


@pytest.fixture(scope="session")
def dashboard_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server for all browser tests of this worker, on a small demo world plus the
    hand-built members the tests name."""
    tmp = tmp_path_factory.mktemp("dashboard_server")
    url, world = prepare_database(tmp / "memberdesk.db")
    server = start_server(tmp, database_url=url)
    server.world = world
    try:
        yield server
    finally:
        stop_server(server.proc)
        server.engine.dispose()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page, 1280 px wide."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(30_000)  # generous: the suite shares two cores with other work
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()


def wait_idle(page: Any, timeout: float = 30_000) -> None:
    """Wait until the script has finished running (a click during a rerun can be dropped)."""
    page.wait_for_selector(IDLE, timeout=timeout)
    page.wait_for_timeout(300)
    page.wait_for_selector(IDLE, timeout=timeout)


def sign_in(page: Any, username: str, password: str) -> None:
    page.get_by_role("textbox", name="Username").wait_for()
    wait_idle(page)
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_timeout(300)
    wait_idle(page)


def sign_in_as(page: Any, role: str) -> None:
    username, password = ROLE_ACCOUNTS[role]
    sign_in(page, username, password)
