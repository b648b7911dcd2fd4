from datetime import timedelta

import pytest
from sqlalchemy import select

from core import staff
from core.models import AuditEntry
from core.permissions import Actor
from tests.support.factories import at


def _create(session, username="sam", roles="support"):
    return staff.create(session, actor=Actor.of("test", "admin"), username=username, name="Sam", email="sam@example.com",
                        roles=roles, password="long-enough-pw", bcrypt_rounds=4)


class TestAccounts:
    def test_create_normalises_and_audits(self, session):
        account = _create(session, username="Sam", roles="support, admin")
        session.commit()
        assert account.username == "sam" and account.roles == "admin,support"
        assert staff.verify_password("long-enough-pw", account.password_hash)
        assert session.scalar(select(AuditEntry.action)) == "staff.create"

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("roles", "boss", "Unknown role boss"),
            ("roles", "", "at least one role"),
            ("username", "a b", "A username has"),
            ("password", "short", "at least 10"),
            ("password", "x" * 73, "at most 72 bytes"),
        ],
    )
    def test_bad_input_is_a_sentence(self, session, field, value, message):
        kwargs = dict(actor=Actor.of("t", "admin"), username="sam", name="Sam", email="s@example.com", roles="support",
                      password="long-enough-pw", bcrypt_rounds=4)
        kwargs[field] = value
        with pytest.raises(staff.StaffError, match=message):
            staff.create(session, **kwargs)

    def test_duplicate_refused(self, session):
        _create(session)
        with pytest.raises(staff.StaffError, match="already exists"):
            _create(session)

    def test_cannot_disable_yourself(self, session):
        _create(session, roles="admin")
        with pytest.raises(staff.StaffError, match="your own account"):
            staff.set_active(session, actor=Actor.of("sam", "admin"), username="sam", active=False)


class TestLockout:
    def test_five_failures_in_fifteen_minutes_lock(self, session):
        account = _create(session)
        t0 = at("2026-11-01 10:00")
        locked = [staff.record_login_attempt(session, "sam", False, now=t0 + timedelta(minutes=i)) for i in range(5)]
        assert locked == [False, False, False, False, True]
        assert staff.is_locked(account, t0 + timedelta(minutes=10))
        assert not staff.is_locked(account, t0 + timedelta(minutes=20))
        actions = session.scalars(select(AuditEntry.action)).all()
        assert actions.count("auth.login_failed") == 5 and "auth.lockout" in actions

    def test_failures_spread_out_do_not_lock(self, session):
        _create(session)
        t0 = at("2026-11-01 10:00")
        assert not any(staff.record_login_attempt(session, "sam", False, now=t0 + timedelta(minutes=5 * i))
                       for i in range(6))
