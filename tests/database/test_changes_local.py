"""Manual changes that need no Stripe: notes, contact details, complimentary grants; and the
service's rules every action shares (permission, reason, version, idempotency, audit)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from core.changes import Actor, ChangeInput, ChangeRefused, Limits, StaleMember, load_limits, save_limits, submit
from core.changes import preview as preview_change
from core.models import AuditEntry, ChangeRequest, Member, MembershipChange, StaffNote, Subscription
from tests.support.factories import at, make_member, make_price, make_subscription, make_tier

NOW = at("2026-03-01 12:00")
SUPPORT = Actor.of("sam", ["support"])
MANAGER = Actor.of("mia", ["manager"])
FINANCE = Actor.of("fin", ["finance"])


def _count(session, model) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def member(session):
    m = make_member(session, email="ann@example.com", name="Ann Lee")
    make_tier(session, code="free", rank=0)
    make_tier(session, code="premium", rank=1)
    session.commit()
    return m


def change(member, action, params=None, *, version=None, reason=None, comment="Customer called"):
    from core.changes import REASONS

    return ChangeInput(action=action, member_id=member.id, member_version=version or member.version,
                       reason=reason or REASONS[action][0], comment=comment, params=params or {})


class TestNote:
    def test_note_is_stored_encrypted_and_audited(self, engine, session, member):
        v0 = member.version
        out = submit(engine, change(member, "add_note", comment="Asked about family plans"), SUPPORT, now=NOW)
        assert out.status == "applied"
        session.expire_all()
        note = session.scalars(select(StaffNote)).one()
        stored = session.connection().exec_driver_sql("SELECT params, comment FROM change_requests").one()
        assert "family" not in str(stored[0]) + str(stored[1])
        assert note.body == "Asked about family plans" and note.author == "sam"
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "change.add_note")).one()
        assert entry.actor == "sam" and entry.reason == "call_summary" and entry.request_id == out.idempotency_key
        assert session.get(Member, member.id).version == v0 + 1  # claimed and written in one transaction: one step

    def test_double_click_writes_one_note(self, engine, session, member):
        first = submit(engine, change(member, "add_note"), SUPPORT, now=NOW)
        again = submit(engine, change(member, "add_note"), SUPPORT, now=NOW)
        assert again.replayed and again.request_id == first.request_id
        assert _count(session, StaffNote) == 1

    def test_comment_and_reason_required(self, engine, session, member):
        with pytest.raises(ChangeRefused, match="comment"):
            submit(engine, change(member, "add_note", comment="  "), SUPPORT, now=NOW)
        with pytest.raises(ChangeRefused, match="reason"):
            submit(engine, change(member, "add_note", reason="because"), SUPPORT, now=NOW)
        assert _count(session, StaffNote) == 0 and _count(session, ChangeRequest) == 0

    def test_finance_may_not_add_notes_and_the_refusal_is_audited(self, engine, session, member):
        with pytest.raises(ChangeRefused, match="role"):
            submit(engine, change(member, "add_note"), FINANCE, now=NOW)
        assert _count(session, StaffNote) == 0
        entry = session.scalars(select(AuditEntry)).one()
        assert entry.outcome == "refused" and entry.actor == "fin"


class TestContact:
    def test_edit_phone_address_email(self, engine, session, member):
        params = {"email": "Ann.New@Example.com", "phone": "+1 555 0100",
                  "address": {"line1": "1 Main St", "city": "Springfield", "country": "us"}}
        out = submit(engine, change(member, "edit_contact", params), SUPPORT, now=NOW)
        assert out.status == "applied"
        session.expire_all()
        m = session.get(Member, member.id)
        assert m.email == "ann.new@example.com" and m.phone == "+1 555 0100"
        assert json.loads(m.address)["country"] == "US"
        raw = session.connection().exec_driver_sql("SELECT phone, address FROM members").one()
        assert "555" not in raw[0] and "Main" not in raw[1]  # encrypted at rest
        stored = session.connection().exec_driver_sql("SELECT params, comment FROM change_requests").one()
        assert "555" not in str(stored[0]) and "Main" not in str(stored[0])  # the queue too

    def test_bad_contact_details_change_nothing(self, engine, session, member):
        make_member(session, email="bob@example.com")
        session.commit()
        version = session.get(Member, member.id).version
        cases = [({"email": "not-an-email"}, "not an email"), ({"phone": "call me maybe"}, "not a phone"),
                 ({"address": {"city": "Paris"}}, "first line"),
                 # A first line alone was sent to Stripe as the whole address.
                 ({"address": {"line1": "1 rue de la Paix"}}, "An address needs a city and a country"),
                 ({"address": {"line1": "x", "country": "FRA"}},
                                                                  "two-letter"),
                 ({"email": "ann@example.com"}, "Nothing to change"), ({"email": "bob@example.com"}, "already uses")]
        for params, sentence in cases:
            with pytest.raises(ChangeRefused, match=sentence):
                submit(engine, change(member, "edit_contact", params, version=version), SUPPORT, now=NOW)
        session.expire_all()
        assert session.get(Member, member.id).version == version and _count(session, ChangeRequest) == 0


class TestComplimentary:
    def test_grant_to_a_free_member_without_stripe(self, engine, session, member):
        out = submit(engine, change(member, "grant_comp", {"days": "14", "tier": "premium"}), SUPPORT, now=NOW)
        assert out.status == "applied"
        sub = session.scalars(select(Subscription)).one()
        assert sub.complimentary and sub.stripe_subscription_id is None and sub.status == "active"
        assert sub.current_period_end == at("2026-03-15 12:00") and sub.mrr_minor == 0
        mc = session.scalars(select(MembershipChange)).one()
        assert mc.kind == "comp_granted" and mc.source == "staff" and mc.actor == "sam"

    def test_it_ends_by_itself_when_its_days_are_over(self, engine, session, member):
        # "No charge; it ends by itself.": nothing ever ended it. Three months on it was still active
        # at the granted tier, a new grant was refused ("extend it instead") and an extension ended
        # in the past.
        from datetime import timedelta

        from core import comp_ends

        submit(engine, change(member, "grant_comp", {"days": 10, "tier": "premium"}), SUPPORT, now=NOW)
        session.expire_all()
        v = session.get(Member, member.id).version
        submit(engine, change(member, "extend", {"days": 5}, version=v), SUPPORT, now=NOW)  # ends 2026-03-16 12:00
        assert comp_ends.end_due(engine, now=at("2026-03-16 11:59")) == 0
        session.expire_all()
        v = session.get(Member, member.id).version  # as a form opened now holds it
        assert comp_ends.end_due(engine, now=at("2026-06-01 09:00")) == 1
        assert comp_ends.end_due(engine, now=at("2026-06-01 09:01")) == 0  # once
        session.expire_all()
        sub = session.scalars(select(Subscription)).one()
        assert (sub.status, sub.ended_at) == ("canceled", at("2026-03-16 12:00"))
        ended = session.scalars(select(MembershipChange).where(MembershipChange.source == "system")).one()
        assert (ended.kind, ended.from_status, ended.to_status, ended.effective_at) == (
            "canceled", "active", "canceled", at("2026-03-16 12:00"))
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "membership.comp_ended")).one()
        assert entry.actor == "system" and entry.member_id == member.id
        # The member's version moved (a form opened before is out of date), and a new grant is possible.
        later = at("2026-06-01 09:05")
        with pytest.raises(StaleMember):
            submit(engine, change(member, "grant_comp", {"days": 7, "tier": "premium"}, version=v), SUPPORT, now=later)
        session.expire_all()
        fresh = session.get(Member, member.id).version
        assert submit(engine, change(member, "grant_comp", {"days": 7, "tier": "premium"}, version=fresh), SUPPORT,
                      now=later).status == "applied"
        assert later + timedelta(days=7) == session.scalars(
            select(Subscription).where(Subscription.status == "active")).one().current_period_end

    def test_a_refusal_by_the_limits_is_audited_at_preview_and_at_submit(self, engine, session, member):
        # The service promised an audited refusal for the limits as for roles; only roles were.
        for ask in (preview_change, submit):
            with pytest.raises(ChangeRefused, match="at most 30 days"):
                ask(engine, change(member, "grant_comp", {"days": 60, "tier": "premium"}), SUPPORT, now=NOW)
        session.expire_all()
        refused = session.scalars(select(AuditEntry).where(AuditEntry.outcome == "refused")).all()
        assert [(e.actor, e.action, e.member_id) for e in refused] == [("sam", "change.grant_comp", member.id)] * 2
        assert all("at most 30 days" in e.comment for e in refused)
        assert _count(session, Subscription) == 0 and _count(session, ChangeRequest) == 0

    def test_support_limit_on_days_and_admin_can_raise_it(self, engine, session, member):
        with pytest.raises(ChangeRefused, match="at most 30 days; ask a manager for a longer grant"):
            submit(engine, change(member, "grant_comp", {"days": 45, "tier": "premium"}), SUPPORT, now=NOW)
        # A manager's limit is 365 days; the next role up is an admin's (it said "ask a manager").
        with pytest.raises(ChangeRefused, match="at most 365 days; ask an admin for a longer grant"):
            preview_change(engine, change(member, "grant_comp", {"days": 366, "tier": "premium"}), MANAGER, now=NOW)
        assert _count(session, Subscription) == 0
        limits = load_limits(session)
        limits.extend_max_days["support"] = 60
        save_limits(engine, actor=Actor.of("root", ["admin"]), limits=limits)
        assert submit(engine, change(member, "grant_comp", {"days": 45, "tier": "premium"}), SUPPORT,
                      now=NOW).status == "applied"

    def test_the_days_limit_counts_the_days_given_in_the_window(self, engine, session, member):
        # Three grants of 30 days within a minute gave 90 days under support's 30-day limit.
        submit(engine, change(member, "grant_comp", {"days": 20, "tier": "premium"}), SUPPORT, now=NOW)
        session.expire_all()
        v = session.get(Member, member.id).version
        with pytest.raises(ChangeRefused, match="20 days were already given to this member in the last 24 hours, "
                                                "so at most 10 more"):
            submit(engine, change(member, "extend", {"days": 15}, version=v), SUPPORT, now=NOW)
        assert submit(engine, change(member, "extend", {"days": 10}, version=v), SUPPORT, now=NOW).status == "applied"
        session.expire_all()
        v = session.get(Member, member.id).version
        assert submit(engine, change(member, "extend", {"days": 100}, version=v), MANAGER, now=NOW).status == "applied"
        session.expire_all()
        assert session.scalars(select(Subscription)).one().current_period_end == at("2026-07-09 12:00")

    def test_extend_then_cancel_a_complimentary_membership_without_stripe(self, engine, session, member):
        submit(engine, change(member, "grant_comp", {"days": 10, "tier": "premium"}), SUPPORT, now=NOW)
        session.expire_all()
        v = session.get(Member, member.id).version
        submit(engine, change(member, "extend", {"days": 5}, version=v), SUPPORT, now=NOW)
        session.expire_all()
        sub = session.scalars(select(Subscription)).one()
        assert sub.current_period_end == at("2026-03-16 12:00")
        v = session.get(Member, member.id).version
        with pytest.raises(ChangeRefused, match="complimentary"):
            submit(engine, change(member, "pause", {}, version=v), SUPPORT, now=NOW)
        submit(engine, change(member, "cancel", {"when": "now"}, version=v), SUPPORT, now=NOW)
        session.expire_all()
        assert session.scalars(select(Subscription)).one().status == "canceled"
        kinds = [c.kind for c in session.scalars(select(MembershipChange).order_by(MembershipChange.id))]
        assert kinds == ["comp_granted", "extended", "canceled"]

    def test_only_admins_edit_limits(self, engine):
        with pytest.raises(PermissionError):
            save_limits(engine, actor=Actor.of("sam", ["support", "manager"]), limits=Limits.from_value(None))

    def test_refused_for_a_paying_member(self, engine, session, member):
        price = make_price(session, tier=make_tier(session, code="platinum", rank=2))
        make_subscription(session, member=member, price=price, status="active")
        session.commit()
        with pytest.raises(ChangeRefused, match="extend it"):
            submit(engine, change(member, "grant_comp", {"days": 5, "tier": "premium"}), SUPPORT, now=NOW)


class TestVersion:
    def test_stale_form_is_refused_with_the_fresh_state(self, engine, session, member):
        v0 = member.version
        submit(engine, change(member, "add_note", comment="first"), SUPPORT, now=NOW)
        with pytest.raises(StaleMember) as info:
            submit(engine, change(member, "grant_comp", {"days": 3, "tier": "premium"}, version=v0), MANAGER,
                   now=NOW)
        assert info.value.fresh_version == v0 + 1
        assert info.value.fresh_state["email"] == "ann@example.com"
        assert _count(session, Subscription) == 0

    def test_preview_writes_nothing(self, engine, session, member):
        p = preview_change(engine, change(member, "grant_comp", {"days": 3, "tier": "premium"}), SUPPORT, now=NOW)
        assert p.new_period_end == at("2026-03-04 12:00")
        assert _count(session, ChangeRequest) == 0 and _count(session, AuditEntry) == 0

    def test_unknown_member_and_action(self, engine, member):
        with pytest.raises(ChangeRefused, match="does not exist"):
            submit(engine, ChangeInput("grant_comp", 999, 1, "goodwill", "x", {"days": 1}), SUPPORT, now=NOW)
        with pytest.raises(ChangeRefused, match="does not exist"):
            submit(engine, ChangeInput("explode", member.id, 1, "goodwill", "x", {}), SUPPORT, now=NOW)

