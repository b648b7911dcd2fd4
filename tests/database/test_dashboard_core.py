"""The shell's core read models: member search, the member page's data, staff notes, the audit
log query and the Overview counts, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from core import audit
from core import members as core_members
from core.audit import query as audit_query
from core.metrics import overview_counts
from core.models import AuditEntry, Member, StaffNote
from core.permissions import Actor, PermissionDenied
from tests.support.factories import at
from tests.support.worlds import build_small_world


@pytest.fixture
def world(session):
    w = build_small_world(session, now=at("2026-11-20 12:00"))
    session.commit()
    return w


@pytest.mark.parametrize(("text", "expected", "matched"), [
    ("ann.lee@example.com", "ann", "email"),
    ("ann.l", "ann", "email starts with"),
    ("example.org", "bob", "name or email"),
    ("DIAZ", "cara", "name"),
    ("cus_BOB0002", "bob", "Stripe customer id"),
    ("4242", "ann", "card last four"),
    ("in_ANN0001", "ann", "Stripe invoice id"),
    ("ch_ANN_OK", "ann", "Stripe charge id"),
    ("re_BOB1", "bob", "Stripe refund id"),
    ("ANN-0001", "ann", "invoice number"),
])
def test_search_finds_by_every_key(engine, world, text, expected, matched):
    found = core_members.search(engine, text)
    wanted = {"ann": world.ann_id, "bob": world.bob_id, "cara": world.cara_id}[expected]
    assert found.iloc[0]["member_id"] == wanted
    assert found.iloc[0]["matched_on"] == matched


def test_search_by_our_ids(engine, world, session):
    assert list(core_members.search(engine, str(world.bob_id))["member_id"])[0] == world.bob_id
    from core.models import Invoice, Payment

    inv = session.scalar(select(Invoice.id).where(Invoice.stripe_invoice_id == "in_ANN0001"))
    pay = session.scalar(select(Payment.id).where(Payment.stripe_charge_id == "ch_ANN_OK"))
    assert core_members.search(engine, f"invoice {inv}").iloc[0]["member_id"] == world.ann_id
    assert core_members.search(engine, f"payment #{pay}").iloc[0]["member_id"] == world.ann_id


@pytest.mark.parametrize("text", ["", "   ", "%", "_", "no-such-person", "cus_nobody", "0000", "'; drop table x"])
def test_search_odd_text_is_empty_not_an_error(engine, world, text):
    assert core_members.search(engine, text).empty


def test_search_shows_status_and_tier(engine, world):
    row = core_members.search(engine, "bob.stone@example.org").iloc[0]
    assert (row["tier"], row["status"]) == ("platinum", "past_due")
    dan = core_members.search(engine, "dan@example.com").iloc[0]
    assert (dan["tier"], dan["status"]) == ("free", "no membership")


def test_recent_changes_newest_first_each_member_once(engine, world, session):
    from core.models import MembershipChange

    assert core_members.recent_changes(engine).empty is False
    for when, kind in (("2026-11-19 08:00", "upgrade"), ("2026-11-20 09:30", "canceled")):
        session.add(MembershipChange(member_id=world.bob_id, effective_at=at(when), kind=kind, currency="EUR",
                                     mrr_before_minor=1658, mrr_after_minor=0, source="stripe"))
    session.commit()
    recent = core_members.recent_changes(engine, tz="Europe/Berlin")
    assert list(recent["member_id"]) == [world.bob_id, world.ann_id]
    assert recent.iloc[0]["matched_on"] == "canceled 2026-11-20 10:30 CET"  # Berlin time, zone shown
    assert recent.iloc[1]["matched_on"] == "created 2025-01-01 01:00 CET"
    assert recent.iloc[0]["status"] and recent.iloc[0]["tier"]


def test_recent_changes_on_empty_database(engine):
    assert core_members.recent_changes(engine).empty


def test_member_view_in_business_time_zone(engine, world):
    view = core_members.member_view(engine, world.ann_id, tz="Asia/Tokyo")
    assert view is not None
    assert (view.status, view.tier, view.interval, view.mrr_minor, view.currency) == ("active", "premium", "month",
                                                                                       999, "USD")
    assert view.period_end.utcoffset().total_seconds() == 9 * 3600
    assert view.phone == "+1 555 0100"
    assert list(view.payment_methods[["brand", "last4", "expiry"]].iloc[0]) == ["visa", "4242", "08/2028"]
    assert set(view.payments["decline_code"].dropna()) == {"insufficient_funds"}
    assert list(view.notes["note"]) == ["Called about a double charge."]
    assert len(view.changes) == 1 and len(view.invoices) == 1
    bob = core_members.member_view(engine, world.bob_id)
    assert len(bob.refunds) == 1 and len(bob.disputes) == 1
    assert core_members.member_view(engine, 999_999) is None


def test_add_note_is_encrypted_audited_and_bumps_version(engine, world, session):
    before = session.get(Member, world.bob_id).version
    core_members.add_note(engine, actor=Actor.of("sam", ["support"]), member_id=world.bob_id, body="  Asked for a refund ")
    session.commit()
    session.expire_all()
    assert session.get(Member, world.bob_id).version == before + 1
    note = session.scalar(select(StaffNote).where(StaffNote.member_id == world.bob_id))
    assert note.body == "Asked for a refund"
    raw = session.connection().exec_driver_sql(f"SELECT body FROM staff_notes WHERE id = {note.id}").scalar()
    assert "refund" not in raw  # encrypted at rest
    entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "member.note_added"))
    assert (entry.actor, entry.member_id) == ("sam", world.bob_id)
    # The member page's Audit tab says what changed, not only who and why.
    shown = core_members.member_view(engine, world.bob_id).audit.iloc[0]
    assert (shown["action"], shown["before"]) == ("member.note_added", f'{{"version": {before}}}')
    assert '"note": "Asked for a refund"' in shown["after"]


@pytest.mark.parametrize(("roles", "body", "error"), [
    (["finance"], "hello", PermissionDenied),
    (["support"], "   ", core_members.MemberError),
    (["support"], "x" * (core_members.NOTE_MAX_CHARS + 1), core_members.MemberError),
])
def test_add_note_refuses_bad_input_and_writes_nothing(engine, world, session, roles, body, error):
    with pytest.raises(error):
        core_members.add_note(engine, actor=Actor.of("x", roles), member_id=world.bob_id, body=body)
    session.rollback()
    assert session.scalar(select(StaffNote).where(StaffNote.member_id == world.bob_id)) is None


def test_a_note_sent_twice_is_saved_once(engine, world, session):
    # A double click on "Save note", or a reload that submits the form again, sends it twice.
    sam = Actor.of("sam", ["support"])
    version = session.get(Member, world.bob_id).version
    first = core_members.add_note(engine, actor=sam, member_id=world.bob_id, body="Called about the app",
                                  expected_version=version)
    again = core_members.add_note(engine, actor=sam, member_id=world.bob_id, body=" Called about the app ",
                                  expected_version=version)
    core_members.add_note(engine, actor=Actor.of("ivy", ["support"]), member_id=world.bob_id,
                          body="Called about the app")  # somebody else's note is their own
    assert again.id == first.id
    notes = session.execute(select(StaffNote.author, StaffNote.body).where(StaffNote.member_id == world.bob_id)
                            .order_by(StaffNote.id)).all()
    assert [tuple(n) for n in notes] == [("sam", "Called about the app"), ("ivy", "Called about the app")]
    assert session.scalar(select(func.count()).select_from(AuditEntry)
                          .where(AuditEntry.action == "member.note_added")) == 2


def test_add_note_refuses_stale_version(engine, world, session):
    with pytest.raises(core_members.MemberError, match="changed while you were writing"):
        core_members.add_note(engine, actor=Actor.of("x", ["admin"]), member_id=world.bob_id, body="hi",
                              expected_version=-1)


def test_stripe_links():
    assert core_members.stripe_dashboard_url("cus_1", test_mode=True) == "https://dashboard.stripe.com/test/customers/cus_1"
    assert core_members.stripe_dashboard_url("in_1", test_mode=False) == "https://dashboard.stripe.com/invoices/in_1"
    assert core_members.stripe_dashboard_url(None, test_mode=True) is None
    assert core_members.is_test_mode("sk_test_x", "") and not core_members.is_test_mode("sk_live_x", "")


def test_audit_query_filters(engine, session):
    for actor, action, member in [("sam", "member.note_added", 1), ("sam", "auth.login", None),
                                  ("ada", "staff.create", None), ("ada", "member.refund", 2)]:
        audit.record(session, actor=actor, action=action, member_id=member, after={"k": actor})
    session.commit()
    assert len(audit_query.entries(engine).rows) == 4
    assert set(audit_query.entries(engine, actor="sam").rows["action"]) == {"member.note_added", "auth.login"}
    assert list(audit_query.entries(engine, member_id=2).rows["actor"]) == ["ada"]
    assert len(audit_query.entries(engine, action="member.").rows) == 2
    assert audit_query.entries(engine, start=date(2000, 1, 1), end=date(2000, 1, 2)).rows.empty
    page = audit_query.entries(engine, limit=3)
    assert page.truncated and len(page.rows) == 3
    assert '"k": "ada"' in page.rows.iloc[0]["after"] or '"k": "sam"' in page.rows.iloc[0]["after"]
    with pytest.raises(audit_query.AuditQueryError):
        audit_query.entries(engine, start=date(2026, 2, 1), end=date(2026, 1, 1))
    actors, actions = audit_query.facets(engine)
    assert actors == ["ada", "sam"] and "staff.create" in actions


def test_audit_entries_say_what_changed(engine, session):
    # Two snapshots of a dozen fields each: the entry names the two that moved.
    snapshot = {"member_id": 7, "email": "a@example.com", "version": 3,
                "subscription": {"tier": "premium", "status": "active", "cancel_at_period_end": False, "discount": None}}
    after = {**snapshot, "version": 4, "subscription": {**snapshot["subscription"], "tier": "platinum",
                                                        "cancel_at_period_end": True}}
    audit.record(session, actor="ada", action="change.change_tier", member_id=7, before=snapshot, after=after)
    audit.record(session, actor="ada", action="staff.create", target_type="staff", target_id="kim",
                 after={"roles": ["support"], "active": True})
    audit.record(session, actor="sam", action="auth.login")
    audit.record(session, actor="sam", action="change.extend", member_id=7, outcome="refused",
                 comment="Your role may add at most 30 days; ask a manager for more.")
    session.commit()
    rows = audit_query.entries(engine).rows.set_index("action")["what_changed"]
    # (The log stores each snapshot with its keys sorted.)
    assert rows["change.change_tier"] == ("subscription.cancel_at_period_end: no → yes; "
                                          "subscription.tier: premium → platinum; version: 3 → 4")
    assert rows["staff.create"] == 'active: yes; roles: ["support"]'
    assert rows["auth.login"] == ""
    assert rows["change.extend"] == "Nothing: refused"  # not an empty cell beside the changes made
    # Amounts as money, each in the currency beside it (or of the object around it).
    refund = audit_query.what_changed(
        {"subscription": {"currency": "JPY", "mrr_minor": 1200, "price_amount": 1200}},
        {"subscription": {"currency": "JPY", "mrr_minor": 0, "price_amount": 1200},
         "detail": {"amount": 250, "currency": "EUR", "payment_amount_refunded": 899, "note_count": 2}})
    assert refund == ("subscription.mrr_minor: ¥1,200 → ¥0; detail.amount: — → €2.50; "
                      "detail.currency: — → EUR; detail.payment_amount_refunded: — → €8.99; detail.note_count: — → 2")
    assert audit_query.what_changed(None, {"amount": 500}) == "amount: 500"  # no currency: the number kept
    # Elsewhere in the record, when it has one currency only.
    assert audit_query.what_changed({"subscription": {"currency": "USD"}},
                                    {"subscription": {"currency": "USD"}, "detail": {"amount_paid": 1999}}) == (
        "detail.amount_paid: — → $19.99")
    many = audit_query.what_changed({f"f{i}": 0 for i in range(20)}, {f"f{i}": 1 for i in range(20)})
    assert many.endswith("; and 8 more") and many.count("→") == audit_query.CHANGED_FIELDS


def test_overview_counts(engine, world):
    tiers = overview_counts.members_by_tier_status(engine)
    got = {(r.tier, r.status): r.members for r in tiers.itertuples()}
    assert got == {("premium", "active"): 1, ("platinum", "past_due"): 1, ("premium", "canceled"): 1,
                   ("free", "no membership"): 1}
    mrr = overview_counts.mrr_by_currency(engine).set_index("currency")
    assert mrr.loc["USD", "mrr_minor"] == world.paying_usd_mrr and mrr.loc["EUR", "mrr_minor"] == world.paying_eur_mrr
    month = overview_counts.payments_in_month(engine, now=at("2026-11-25 00:00"), tz="UTC").set_index("currency")
    assert (month.loc["USD", "attempts"], month.loc["USD", "succeeded"], month.loc["USD", "failed"]) == (2, 1, 1)
    assert month.loc["USD", "collected_minor"] == 999 and month.loc["EUR", "collected_minor"] == 0
    assert overview_counts.open_alerts(engine) == 0
    moment, source = overview_counts.data_through(engine)
    assert moment == at("2026-11-20 12:00") and "newest payment" in source


def test_overview_counts_on_empty_database(engine):
    assert overview_counts.members_by_tier_status(engine).empty
    assert overview_counts.mrr_by_currency(engine).empty
    assert overview_counts.payments_in_month(engine, now=at("2026-11-25 00:00")).empty
    assert overview_counts.data_through(engine)[0] is None
