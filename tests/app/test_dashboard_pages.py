"""The page x role matrix (AppTest): every page renders without an exception for every role that
may open it, and for every role that may not it is absent from the navigation and its own guard
refuses (with an audit entry) even when the page module is run directly."""

from __future__ import annotations

import contextlib
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import crypto
from core.db import make_engine
from core.models import AuditEntry, Subscription
from core.permissions import allowed
from dashboard.navigation import PAGE_SPECS
from dashboard.text import shown
from tests.support.apptest import app_test as make_app
from tests.support.apptest import page_app_test, texts
from tests.support.db import BACKENDS, PG_URL, TEST_KEY, scratch_pg_database
from tests.support.worlds import build_small_world, create_staff, refresh_rollups

ROOT = Path(__file__).resolve().parents[2]
ROLES = ["support", "finance", "manager", "admin"]
EXISTING = [spec for spec in PAGE_SPECS if (ROOT / "pages" / spec[0]).exists()]
ALLOWED = [(spec[0], role) for spec in EXISTING for role in ROLES if allowed([role], spec[3])]
REFUSED = [(spec[0], role) for spec in EXISTING for role in ROLES if not allowed([role], spec[3])]


@pytest.fixture
def world_url(database_url, engine):
    """A private database with the small world, for tests that write."""
    with Session(engine, expire_on_commit=False) as s:
        world = build_small_world(s)
        s.commit()
    create_staff(engine)
    refresh_rollups(engine)
    return database_url, world


@pytest.fixture(scope="module", params=BACKENDS)
def shared_world(request, tmp_path_factory):
    """One database per backend for the read-only matrix, so the pages' caches stay warm across
    roles (each page's numbers are computed once per backend, not once per role)."""
    crypto.set_keyring(crypto.KeyRing([TEST_KEY]))  # module scope runs before the autouse fixture
    stack = contextlib.ExitStack()
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("matrix") / "matrix.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        if not PG_URL:
            pytest.skip("TEST_DATABASE_URL is not set")
        url = stack.enter_context(scratch_pg_database("matrix"))
    eng = make_engine(url)
    with Session(eng, expire_on_commit=False) as s:
        world = build_small_world(s)
        s.commit()
    create_staff(eng)
    refresh_rollups(eng)
    import streamlit as st

    st.cache_data.clear()
    yield url, world, eng
    eng.dispose()
    stack.close()


def _open(database_url: str, page_file: str, role: str, *, clear_cache: bool = True):
    at = make_app(database_url, role=role, clear_cache=clear_cache)
    at.run()
    if page_file != "overview.py":
        at.switch_page(f"../pages/{page_file}").run()
    return at


@pytest.mark.parametrize(("page_file", "role"), ALLOWED)
def test_allowed_role_sees_the_page(shared_world, page_file, role):
    database_url, _world, _engine = shared_world
    at = _open(database_url, page_file, role, clear_cache=False)
    assert not at.exception, at.exception
    assert at.title, "the page shows a title"
    shown = texts(at)
    assert "Traceback" not in shown
    assert "Your role does not allow" not in shown and "Only admins" not in shown


@pytest.mark.parametrize(("page_file", "role"), REFUSED)
def test_refused_role_is_refused_by_the_page_guard(shared_world, page_file, role):
    """Run the page module directly, as a bypass of the navigation would: its guard refuses."""
    database_url, _world, engine = shared_world
    direct = page_app_test(database_url, page_file, role=role, clear_cache=False)
    direct.run()
    assert not direct.exception
    assert direct.error, "the guard shows a sentence"
    assert "allow" in direct.error[0].value or "Only admins" in direct.error[0].value
    with Session(engine) as s:
        refusal = s.scalar(select(AuditEntry).where(AuditEntry.action == "auth.permission_refused",
                                                    AuditEntry.actor == role,
                                                    AuditEntry.target_id == dict(
                                                        (f, p.value) for f, _t, _i, p in EXISTING)[page_file]))
    assert refusal is not None and refusal.outcome == "refused"


@pytest.mark.parametrize("role", ROLES)
def test_navigation_offers_exactly_the_roles_pages(shared_world, role):
    database_url, _world, _engine = shared_world
    at = make_app(database_url, role=role, clear_cache=False)
    at.run()
    assert not at.exception
    for file, _title, _icon, permission in EXISTING:
        if file == "overview.py":
            continue
        if allowed([role], permission):
            at.switch_page(f"../pages/{file}")
        else:
            with pytest.raises(ValueError):
                at.switch_page(f"../pages/{file}")


def test_overview_numbers_and_support_sees_no_money(world_url):
    database_url, _world = world_url
    finance = _open(database_url, "overview.py", "finance")
    shown = texts(finance)
    assert "MRR by currency" in shown and "Data through" in shown
    frames = [df.value for df in finance.dataframe]
    mrr = next(f for f in frames if "MRR" in f.columns)
    assert set(mrr["MRR"]) == {"$9.99", "€16.58"}
    tiers = next(f for f in frames if "Tier" in f.columns)
    assert "platinum" in set(tiers["Tier"])
    support = _open(database_url, "overview.py", "support")
    shown = texts(support)
    assert "MRR by currency" not in shown and "Paying subscriptions by currency" in shown
    for frame in (df.value for df in support.dataframe):
        assert not any(str(c).startswith(("MRR", "Collected", "Refunded")) for c in frame.columns)
        assert not frame.astype(str).apply(lambda col: col.str.contains(r"[$€£¥]\d")).any().any()


def test_overview_cards_draw_no_change_without_an_arrow(world_url):
    from streamlit.proto.Metric_pb2 import Metric

    cards = {m.label: m for m in _open(world_url[0], "overview.py", "finance").metric}
    churn, net = cards["Member churn rate"], cards["Net revenue"]
    assert churn.delta == "+0.0 pts"  # nobody churned in either period of the small world
    assert (churn.proto.color, churn.proto.direction) == (Metric.MetricColor.GRAY, Metric.MetricDirection.NONE)
    assert (net.proto.color, net.proto.direction) == (Metric.MetricColor.GREEN, Metric.MetricDirection.UP)


def test_members_page_lists_the_latest_changes_before_a_search(world_url):
    database_url, world = world_url
    at = _open(database_url, "members.py", "support")
    assert not at.exception
    assert "Latest membership changes" in texts(at)
    links = [el for el in at.main if getattr(el, "proto", None) is not None and hasattr(el.proto, "page")
             and "created 2025-01-01" in str(getattr(el.proto, "label", ""))]
    assert links, "Ann's sign-up is the latest change in the small world"


def test_member_search_and_member_page(world_url):
    database_url, world = world_url
    at = _open(database_url, "members.py", "support")
    at.text_input(key="member_search").input("cus_BOB0002").run()
    assert not at.exception
    assert "Bob Stone" in at.dataframe[0].value["Name"].tolist()
    at.query_params["member"] = str(world.ann_id)
    at.run()
    assert not at.exception
    shown = texts(at)
    assert "Ann Lee" in shown and "<b>Premium · Monthly</b>" in shown and "Insufficient funds" in " ".join(
        df.value.to_csv() for df in at.dataframe)
    assert any("dashboard.stripe.com/test/customers/cus_ANN0001" in str(b.proto) for b in at.get("link_button"))


def test_member_page_add_note_and_bad_ids(world_url, engine):
    database_url, world = world_url
    at = _open(database_url, "members.py", "support")
    at.query_params["member"] = str(world.bob_id)
    at.run()
    at.text_area(key="note_body").input("Promised a call back")
    at.button(key="FormSubmitter:add_note-Save note").click().run()
    assert not at.exception
    assert "Note saved." in texts(at)
    assert at.text_area(key="note_body").value == ""  # the saved text leaves the box (kept until then)
    with Session(engine) as s:
        assert s.scalar(select(AuditEntry).where(AuditEntry.action == "member.note_added")).member_id == world.bob_id
    for bad, sentence in (("abc", "is not a member id"), ("999999", "There is no member")):
        at.query_params["member"] = bad
        at.run()
        assert not at.exception and sentence in texts(at)


def test_a_change_made_elsewhere_or_still_in_flight_shows_on_the_member_page(world_url, engine):
    """A refund confirmed a moment before a reload looked as if it never happened: the new session
    read the member from a cache filled before it, and nothing said a change was in progress."""
    from core.changes import REASONS, Actor, ChangeInput, submit
    from core.models import ChangeRequest, Member, StaffNote

    database_url, world = world_url
    at = _open(database_url, "members.py", "support")
    at.query_params["member"] = str(world.bob_id)
    at.run()
    assert "Asked to be called on Fridays" not in texts(at)
    with Session(engine) as s:
        version = s.get(Member, world.bob_id).version
    submit(engine, ChangeInput("add_note", world.bob_id, version, REASONS["add_note"][0],
                               "Asked to be called on Fridays", {}), Actor.of("sam", ["support"]))
    at.run()  # within the cache's ten seconds, in a session that did not write
    assert not at.exception
    with Session(engine) as s:
        assert s.scalars(select(StaffNote).where(StaffNote.member_id == world.bob_id)).first() is not None
    assert "Asked to be called on Fridays" in " ".join(df.value.to_csv() for df in at.dataframe) + texts(at)
    with Session(engine) as s:  # a refund claimed, Stripe's answer not yet written (a reload cut the run)
        s.add(ChangeRequest(idempotency_key="k-flight", action="refund", member_id=world.bob_id, params={},
                            reason="duplicate", comment="charged twice", member_version=version + 1,
                            requested_by="sam", status="applying"))
        s.commit()
    at.run()
    shown = [i.value.replace("\\", "") for i in at.info]  # as read: the markdown escapes go
    assert any(t.startswith("Being applied now: Refund a payment, asked by sam at ") and "Do not make it again" in t
               for t in shown), shown


def test_a_paused_membership_says_so_in_the_header(world_url, engine):
    # Scheduled cancellation had a banner; a pause had none (only "Resume" among the actions told).
    database_url, world = world_url
    with Session(engine) as s:
        sub = s.scalars(select(Subscription).where(Subscription.member_id == world.bob_id)).first()
        sub.pause_behavior, sub.pause_resumes_at = "void", datetime(2027, 1, 15, 9, tzinfo=UTC)
        s.commit()
    at = _open(database_url, "members.py", "support")
    at.query_params["member"] = str(world.bob_id)
    at.run()
    assert not at.exception
    assert [i.value for i in at.info if "paused" in i.value] == [
        "Payment collection is paused until 2027-01-15: its invoices are voided, and its MRR counts 0 meanwhile."]
    # Only what can be done is offered: "Add free days" was listed, then refused at Preview.
    offered = at.selectbox(key=f"chg-{world.bob_id}-action").options
    assert any("Resume" in o for o in offered) and not any("free days" in o for o in offered), offered


def test_a_canceled_membership_says_when_it_ended_not_a_current_period(world_url):
    # Canceled at once, the header still said "Current period 2026-12-07 → 2027-01-07" (Stripe's own
    # period), after a preview that said it ended that day.
    database_url, world = world_url
    at = _open(database_url, "members.py", "support")
    at.query_params["member"] = str(world.cara_id)
    at.run()
    assert not at.exception
    shown = " ".join(m.value for m in at.markdown)
    assert "<small>Ended</small><br><b>2026-06-01</b>" in shown and "Current period" not in shown
    assert "<b>Premium · Monthly</b>" in shown  # the tier and interval in words


def test_audit_page_filters(world_url):
    database_url, _world = world_url
    at = _open(database_url, "audit.py", "manager")
    assert not at.exception
    frame = at.dataframe[0].value
    # Actions in words; what changed in one line beside the whole record (the demo sign-ins' creation).
    assert "Staff account: create" in set(frame["Action"])
    created = frame[frame["Action"] == "Staff account: create"]
    assert created["What changed"].str.contains("roles: ").all(), created["What changed"].tolist()
    at.text_input(key="audit_member").input("abc")
    at.button(key="FormSubmitter:audit_filters-Apply filters").click().run()
    assert "is not a member id" in texts(at)


def test_admin_creates_an_account_and_sees_lockouts(world_url, engine):
    database_url, _world = world_url
    at = _open(database_url, "admin.py", "admin")
    assert not at.exception
    form = {w.label: w for w in at.text_input}
    form["Username"].input("newbie")
    form["Full name"].input("New Bie")
    form["E-mail"].input("newbie@example.com")
    form["First password"].input("long-enough-pass")
    at.multiselect[0].select("support")
    at.button(key="FormSubmitter:staff_create-Create account").click().run()
    assert not at.exception
    assert "Account newbie created." in texts(at)
    assert "newbie" in set(at.dataframe[0].value["Username"])
    # A created account's form starts empty; a refused one keeps what was typed, to correct (it was
    # wiped, and pressing again said "A username has 2 to 64 characters").
    form = {w.label: w for w in at.text_input}
    assert form["Username"].value == "" and form["First password"].value == ""
    form["Username"].input("dana")
    form["Full name"].input("Dana")
    form["E-mail"].input("dana@example.com")
    form["First password"].input("short")
    at.multiselect[0].select("support")
    at.button(key="FormSubmitter:staff_create-Create account").click().run()
    assert not at.exception and "The password must have at least 10 characters" in texts(at)
    form = {w.label: w for w in at.text_input}
    assert (form["Username"].value, form["E-mail"].value, at.multiselect[0].value) == (
        "dana", "dana@example.com", ["support"])
    form["First password"].input("a-long-enough-one")
    at.button(key="FormSubmitter:staff_create-Create account").click().run()
    assert "Account dana created." in texts(at)
    # a bad input is a sentence, not a traceback
    form = {w.label: w for w in at.text_input}
    form["Username"].input("x")
    at.button(key="FormSubmitter:staff_create-Create account").click().run()
    assert not at.exception and "A username has 2 to 64 characters" in texts(at)


def test_admin_is_not_offered_to_disable_their_own_account(world_url, engine):
    database_url, _world = world_url
    at = _open(database_url, "admin.py", "admin")
    at.selectbox(key="staff_pick").set_value("admin").run()
    assert not at.exception
    assert "Disable account" not in [b.label for b in at.button]
    assert "This is your own account" in texts(at)
    at.selectbox(key="staff_pick").set_value("support").run()
    assert "Disable account" in [b.label for b in at.button]


def test_admin_changes_business_settings_and_refuses_a_bad_rate(world_url, engine):
    from core.settings import business as business_settings

    database_url, _world = world_url
    at = _open(database_url, "admin.py", "admin")
    at.session_state["admin_tabs"] = "Business settings"
    at.run()
    zone_box = next(s for s in at.selectbox if s.label == "Time zone")
    zone_box.set_value("Europe/Berlin")
    at.button(key="FormSubmitter:business_settings-Save settings").click().run()
    assert not at.exception
    assert "Business settings saved." in texts(at)
    assert business_settings.load(engine).business_timezone == "Europe/Berlin"
    assert at.session_state["admin_tabs"] == "Business settings"  # still the tab the person used
    # Grace days: "until Stripe ends them" is none; "for grace days" takes the days typed, 0 too.
    counted = next(b for b in at.selectbox if b.label == "Past-due members count in MRR")
    assert counted.value == "Until Stripe ends them" and business_settings.load(engine).past_due_grace_days is None
    counted.set_value("For grace days")
    next(n for n in at.number_input if n.label.startswith("Grace days")).set_value(0)
    at.button(key="FormSubmitter:business_settings-Save settings").click().run()
    assert not at.exception and business_settings.load(engine).past_due_grace_days == 0
    next(b for b in at.selectbox if b.label == "Past-due members count in MRR").set_value("Until Stripe ends them")
    at.button(key="FormSubmitter:business_settings-Save settings").click().run()
    assert not at.exception and business_settings.load(engine).past_due_grace_days is None
    rate = next(w for w in at.text_input if w.label == "USD per unit")
    rate.input("-3")
    at.button(key="FormSubmitter:fx_rate-Save rate").click().run()
    assert not at.exception and "A rate must be a positive number" in texts(at)


def test_a_rate_typo_is_refused_in_words_and_the_earlier_saved_goes(world_url, engine):
    """EUR 116 (1.16 meant) and "1e3" were saved ("Rate for EUR saved."); after a refusal the
    previous save's green sentence stayed above the red one. A move over 25 % from the nearest
    known rate needs its tick; a refused rate stays in the form to correct."""
    from decimal import Decimal

    from core.settings import business as business_settings

    database_url, _world = world_url
    at = _open(database_url, "admin.py", "admin")
    at.session_state["admin_tabs"] = "Business settings"
    at.run()

    def save(rate: str) -> None:
        next(s for s in at.selectbox if s.label == "Currency").set_value("EUR")
        next(d for d in at.date_input if d.label == "Month").set_value(date(2026, 12, 1))
        next(w for w in at.text_input if w.label == "USD per unit").input(rate)
        at.button(key="FormSubmitter:fx_rate-Save rate").click().run()
        assert not at.exception, at.exception

    def december() -> Decimal:
        (rate,) = [r.usd_per_unit for r in business_settings.list_rates(engine, "EUR") if r.month == date(2026, 12, 1)]
        return rate

    save("1.30")
    assert [s.value for s in at.success] == ["Rate for EUR saved."]
    assert december() == Decimal("1.30")
    save("116")
    assert [s.value for s in at.success] == []  # the earlier "saved" is gone, not left above the refusal
    (refusal,) = [e.value for e in at.error]
    assert ("The EUR rate for 2026-12 would go from 1.3 (the nearest known rate, 2026-12) to 116, a move of +8,823%."
            in shown(refusal)), refusal
    assert december() == Decimal("1.30")
    save("1e3")
    assert [s.value for s in at.success] == [] and "is not a number written plainly" in shown(at.error[0].value)
    assert next(w for w in at.text_input if w.label == "USD per unit").value == "1e3"  # kept, to correct
    assert december() == Decimal("1.30")
    save("1.80")
    assert "would go from 1.3" in shown(at.error[0].value)
    next(c for c in at.checkbox if c.label.startswith("Confirm a move")).check()
    at.button(key="FormSubmitter:fx_rate-Save rate").click().run()
    assert [s.value for s in at.success] == ["Rate for EUR saved."] and not at.error
    assert december() == Decimal("1.80")
    assert next(w for w in at.text_input if w.label == "USD per unit").value == ""  # saved: the form starts afresh
