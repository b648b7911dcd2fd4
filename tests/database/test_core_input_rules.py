"""Smaller holes the security review found in core, each closed with a sentence and nothing written:
self-approval by a differently capitalised name, a NUL byte in a note, a 10,000-character name,
and amounts written as ``1e3`` or in full-width digits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import members as core_members
from core import staff
from core.changes import Actor, ChangeRefused, decide
from core.changes import parse as change_parse
from core.models import AuditEntry, ChangeRequest, StaffAccount, StaffNote
from core.money import MoneyError, parse_major
from tests.support.factories import at, make_member


def _pending_request(session: Session, requested_by: str) -> int:
    member = make_member(session)
    req = ChangeRequest(idempotency_key=f"chg-test-{requested_by}", action="refund", member_id=member.id,
                        params={"payment_id": 1, "amount": 30000, "currency": "USD"}, reason="duplicate",
                        comment="charged twice", member_version=member.version, status="pending_approval",
                        requested_by=requested_by, requested_at=at("2026-03-01 10:00"))
    session.add(req)
    session.commit()
    return req.id


@pytest.mark.parametrize(("requested_by", "approver"), [("manager", "Manager"), ("Manager", "manager"),
                                                        ("manager", " MANAGER ")])
def test_nobody_approves_their_own_request_whatever_the_capitals(engine, session, requested_by, approver):
    request_id = _pending_request(session, requested_by)
    with pytest.raises(ChangeRefused, match="You asked for this change; a second person must approve"):
        decide(engine, request_id, Actor.of(approver, ["manager"]), approve=True, note="looks fine")
    session.expire_all()
    assert session.get(ChangeRequest, request_id).status == "pending_approval"


def test_a_note_with_a_nul_byte_is_refused_and_not_stored(engine, session):
    member = make_member(session)
    session.commit()
    with pytest.raises(core_members.MemberError) as refused:
        core_members.add_note(engine, actor=Actor.of("sam", "support"), member_id=member.id,
                              body="called back\x00 about the refund")
    assert str(refused.value) == ("The note contains a NUL character, which cannot be stored; remove it and "
                                  "save again.")
    session.rollback()
    assert session.scalar(select(func.count()).select_from(StaffNote)) == 0


def test_a_10000_character_name_is_refused_not_cut(engine, session):
    with pytest.raises(staff.StaffError) as refused:
        staff.add_account(engine, actor=Actor.of("root", "admin"), username="longname", name="A" * 10_000,
                          email="l@example.com", roles="support", password="a-long-password", bcrypt_rounds=4)
    assert str(refused.value) == "The name can have at most 120 characters; this one has 10000."
    assert session.scalar(select(func.count()).select_from(StaffAccount)) == 0
    # a member's name: tests/test_member_names.py


@pytest.mark.parametrize("typed", ["1e3", "1E3", "１２", "１２.５０", "1_000", "Infinity", "0x10", "1,2", "12.5.1",
                                   "٣", "1 000"])
def test_the_amount_parser_takes_plain_digits_only(typed):
    with pytest.raises(MoneyError, match="is not an amount: write plain digits"):
        parse_major(typed, "USD")
    with pytest.raises(ChangeRefused, match="is not an amount"):
        change_parse.amount(typed, "USD", "refund amount")


@pytest.mark.parametrize(("typed", "minor"), [("12.50", 1250), ("1,200", 120000), ("$5", 500), ("0.99", 99),
                                              ("7", 700), ("12.", 1200)])
def test_plain_amounts_still_parse(typed, minor):
    assert parse_major(typed, "USD") == minor


def test_an_approver_whose_role_may_not_make_the_change_is_refused_and_audited(engine, session):
    member = make_member(session)
    req = ChangeRequest(idempotency_key="chg-test-extend", action="extend", member_id=member.id,
                        params={"days": 10}, reason="goodwill", comment="outage", member_version=member.version,
                        status="pending_approval", requested_by="sam", requested_at=at("2026-03-01 10:00"))
    session.add(req)
    session.commit()
    with pytest.raises(ChangeRefused, match="Your role may not make this change") as refused:
        decide(engine, req.id, Actor.of("fin", ["finance"]), approve=True, note="fine")
    assert refused.value.code == "permission"
    session.expire_all()
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "auth.permission_refused")).one()
    assert (entry.actor, entry.target_id, entry.outcome) == ("fin", "change_membership", "refused")
    assert session.get(ChangeRequest, req.id).status == "pending_approval"


def test_an_alert_note_with_a_nul_byte_is_refused(engine, session):
    from core.alerts import AlertError, acknowledge
    from core.models import Alert

    alert = Alert(rule="stripe_stale", scope="all", status="open", severity="high", value=30.0, details={},
                  opened_at=at("2026-03-01 00:00"))
    session.add(alert)
    session.commit()
    with pytest.raises(AlertError, match="NUL character"):
        acknowledge(engine, alert.id, actor=Actor.of("mia", "manager"), note="on it\x00")
    session.expire_all()
    assert session.get(Alert, alert.id).status == "open"


@pytest.mark.parametrize("typed", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+01:00"])
def test_a_moment_past_the_calendar_s_ends_is_a_sentence(typed):
    # The parsers promise a sentence for any input; these raised OverflowError (a traceback).
    with pytest.raises(ChangeRefused, match="The resume date is too far in the past or the future"):
        change_parse.future(typed, "resume date", datetime(2026, 3, 1, tzinfo=UTC))
