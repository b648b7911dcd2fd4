from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import lockout, staff, staff_sessions
from core.models import AuditEntry, LoginAttempt
from core.permissions import Actor
from tests.support.factories import at


def _create(engine, username="sam", roles="support"):
    return staff.add_account(engine, actor=Actor.of("test", "admin"), username=username, name="Sam",
                             email=f"{username.lower()}@example.com", roles=roles, password="long-enough-pw",
                             bcrypt_rounds=4)


class TestAccounts:
    def test_create_normalises_and_audits(self, engine, session):
        account = _create(engine, username="Sam", roles="support, admin")
        assert account.username == "sam" and account.roles == ("admin", "support")
        assert staff.verify_password("long-enough-pw", staff.get(session, "sam").password_hash)
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
    def test_bad_input_is_a_sentence(self, engine, field, value, message):
        kwargs = dict(actor=Actor.of("t", "admin"), username="sam", name="Sam", email="s@example.com", roles="support",
                      password="long-enough-pw", bcrypt_rounds=4)
        kwargs[field] = value
        with pytest.raises(staff.StaffError, match=message):
            staff.add_account(engine, **kwargs)

    def test_duplicate_refused(self, engine):
        _create(engine)
        with pytest.raises(staff.StaffError, match="already exists"):
            _create(engine)

    def test_one_account_per_e_mail_address(self, engine):
        # jane and jane2 on jane@example.com: one person with two identities (two approvers).
        staff.add_account(engine, actor=Actor.of("t", "admin"), username="jane", name="Jane", email="Jane@Example.com",
                          roles="support", password="long-enough-pw", bcrypt_rounds=4)
        with pytest.raises(staff.StaffError, match="The account “jane” already uses jane@example.com"):
            staff.add_account(engine, actor=Actor.of("t", "admin"), username="jane2", name="Jane", roles="manager",
                              email="jane@example.com ", password="long-enough-pw", bcrypt_rounds=4)

    def test_cannot_disable_yourself(self, engine):
        _create(engine, roles="admin")
        with pytest.raises(staff.StaffError, match="your own account"):
            staff.change_active(engine, actor=Actor.of("sam", "admin"), username="sam", active=False)

    def test_there_is_always_an_active_admin(self, engine, session):
        # The only admin removed their own admin role from the Admin page; only the command line
        # could give it back.
        _create(engine, roles="admin")
        _create(engine, username="ivy", roles="support")
        sam, other = Actor.of("sam", "admin"), Actor.of("ops", "admin")  # ops: the command line
        with pytest.raises(staff.StaffError, match="cannot remove your own admin role"):
            staff.change_roles(engine, actor=sam, username="sam", roles="support")
        with pytest.raises(staff.StaffError, match="sam is the only active admin"):
            staff.change_roles(engine, actor=other, username="sam", roles="support")
        with pytest.raises(staff.StaffError, match="sam is the only active admin"):
            staff.change_active(engine, actor=other, username="sam", active=False)
        assert staff.get(session, "sam").roles == "admin" and staff.get(session, "sam").active
        # With a second admin both are allowed, and roles other than admin change freely.
        staff.change_roles(engine, actor=sam, username="sam", roles="admin,finance")
        staff.change_roles(engine, actor=sam, username="ivy", roles="admin")
        staff.change_roles(engine, actor=Actor.of("ivy", "admin"), username="sam", roles="support")
        staff.change_active(engine, actor=sam, username="sam", active=True)
        with pytest.raises(staff.StaffError, match="ivy is the only active admin"):
            staff.change_active(engine, actor=other, username="ivy", active=False)
        session.expire_all()
        assert [staff.get(session, u).roles for u in ("sam", "ivy")] == ["support", "admin"]


class TestLockout:
    T0 = at("2026-11-01 10:00")

    def _fail(self, engine, minutes: float) -> str:
        return staff.sign_in(engine, "sam", lambda: False, lifetime=timedelta(minutes=30),
                             now=self.T0 + timedelta(minutes=minutes)).outcome

    def test_five_failures_in_fifteen_minutes_lock(self, engine, session):
        _create(engine)
        assert [self._fail(engine, i) for i in range(5)] == [staff.REFUSED] * 4 + [staff.LOCKED_NOW]
        account = staff.get(session, "sam")
        assert staff.is_locked(account, self.T0 + timedelta(minutes=10))
        assert not staff.is_locked(account, self.T0 + timedelta(minutes=20))
        actions = session.scalars(select(AuditEntry.action)).all()
        assert actions.count("auth.login_failed") == 5 and "auth.lockout" in actions

    def test_failures_spread_out_do_not_lock(self, engine):
        _create(engine)
        assert {self._fail(engine, 5 * i) for i in range(6)} == {staff.REFUSED}


class TestLockoutByPlace:
    """Failures counted by address: five wrong guesses from one address kept the account's owner
    out everywhere, so anyone who knew a username could keep it locked."""

    T0 = at("2026-11-01 10:00")
    LIFE = timedelta(minutes=30)

    def _try(self, engine, minutes: float, address: str | None, *, right: bool = False, name: str = "sam"):
        asked: list[int] = []
        result = staff.sign_in(engine, name, lambda: asked.append(1) or right, lifetime=self.LIFE,
                               now=self.T0 + timedelta(minutes=minutes), address=address)
        return result, bool(asked)

    def test_guesses_from_one_address_pause_only_that_address(self, engine, session):
        _create(engine)
        outcomes = [self._try(engine, i, "203.0.113.9")[0] for i in range(5)]
        assert [o.outcome for o in outcomes] == [staff.REFUSED] * 4 + [staff.LOCKED_NOW]
        assert outcomes[-1].scope == lockout.PLACE
        assert outcomes[-1].locked_until.replace(tzinfo=None) == (self.T0 + timedelta(minutes=19)).replace(tzinfo=None)
        paused, asked = self._try(engine, 6, "203.0.113.9", right=True)
        assert (paused.outcome, paused.scope, paused.token, asked) == (staff.LOCKED, lockout.PLACE, None, False)
        owner, _ = self._try(engine, 7, "198.51.100.4", right=True)
        assert owner.outcome == staff.SIGNED_IN
        assert not staff.is_locked(staff.get(session, "sam"), self.T0 + timedelta(minutes=7))
        view = {v.username: v for v, _ in staff.accounts(engine, self.T0 + timedelta(minutes=8))}["sam"]
        assert view.locked_until is not None and not view.locked_everywhere
        assert self._try(engine, 20, "203.0.113.9", right=True)[0].outcome == staff.SIGNED_IN  # the pause ends

    def test_the_stored_place_is_a_keyed_digest_not_the_address(self, engine, session):
        _create(engine)
        for address in ("203.0.113.9", "203.0.113.9", "2001:db8::1"):
            self._try(engine, 0, address)
        places = session.scalars(select(LoginAttempt.place).order_by(LoginAttempt.id)).all()
        assert places[0] == places[1] != places[2] and all("203" not in p and "db8" not in p for p in places)

    def test_guesses_from_many_addresses_lock_the_account_everywhere(self, engine, session):
        _create(engine)
        results = [self._try(engine, i / 2, f"203.0.113.{i % 10}")[0] for i in range(20)]
        assert results[-1].outcome == staff.LOCKED_NOW and results[-1].scope == lockout.ACCOUNT
        assert staff.is_locked(staff.get(session, "sam"), self.T0 + timedelta(minutes=10))
        elsewhere, asked = self._try(engine, 11, "198.51.100.4", right=True)
        assert (elsewhere.outcome, elsewhere.scope, asked) == (staff.LOCKED, lockout.ACCOUNT, False)

    def test_an_address_trying_many_names_is_refused_for_every_name(self, engine):
        _create(engine)
        for i in range(30):
            self._try(engine, i / 3, "203.0.113.9", name=f"guess{i}")
        refused, asked = self._try(engine, 10.5, "203.0.113.9", right=True)
        assert (refused.outcome, refused.scope, asked) == (staff.LOCKED, lockout.ADDRESS, False)
        assert self._try(engine, 10.5, "198.51.100.4", right=True)[0].outcome == staff.SIGNED_IN

    def test_an_unknown_name_is_paused_as_an_account_would_be(self, engine):
        _create(engine)
        for name in ("sam", "nobody"):
            outcomes = [self._try(engine, i, "203.0.113.9", name=name)[0] for i in range(6)]
            assert [(o.outcome, o.scope, o.locked_until) for o in outcomes[3:]] == [
                (staff.REFUSED, None, None),
                (staff.LOCKED_NOW, lockout.PLACE, outcomes[4].locked_until),
                (staff.LOCKED, lockout.PLACE, outcomes[4].locked_until)]

    def test_an_admin_s_unlock_lifts_the_pause_and_forgives_the_failures(self, engine):
        _create(engine)
        for i in range(5):
            self._try(engine, i, "203.0.113.9")
        for i in range(5):
            self._try(engine, i, "203.0.113.20")
        view, failures = {v.username: (v, n) for v, n in staff.accounts(engine, self.T0 + timedelta(minutes=5))}["sam"]
        assert (view.paused_places, view.locked_everywhere, failures) == (2, False, 10)
        staff.unlock_account(engine, actor=Actor.of("ada", "admin"), username="sam", now=self.T0 + timedelta(minutes=5))
        view, failures = {v.username: (v, n) for v, n in staff.accounts(engine, self.T0 + timedelta(minutes=5))}["sam"]
        assert (view.locked_until, view.paused_places, failures) == (None, 0, 0)  # the count restarts, and says so
        assert self._try(engine, 6, "203.0.113.9")[0].outcome == staff.REFUSED  # one failure, not a sixth
        assert self._try(engine, 7, "203.0.113.9", right=True)[0].outcome == staff.SIGNED_IN


class TestSignIn:
    """``staff.sign_in`` and friends: what the sign-in form calls, each in a transaction of its own."""

    T0 = at("2026-11-01 10:00")
    LIFE = timedelta(minutes=30)

    def _account(self, engine, active=True):
        staff.add_account(engine, actor=Actor.system("test"), username="sam", name="Sam", email="sam@example.com",
                          roles="support,finance", password="long-enough-pw", bcrypt_rounds=4)
        if not active:
            staff.change_active(engine, actor=Actor.system("test"), username="sam", active=False)

    def _actions(self, engine):
        with Session(engine) as s:
            return s.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()

    def test_a_match_opens_a_live_session_and_counts_a_success(self, engine):
        self._account(engine)
        result = staff.sign_in(engine, " Sam ", lambda: True, lifetime=self.LIFE, now=self.T0)
        assert (result.outcome, result.name, result.roles) == (staff.SIGNED_IN, "Sam", ("finance", "support"))
        assert staff_sessions.is_live(engine, result.token, "sam", self.T0).live
        with Session(engine) as s:
            assert staff.get(s, "sam").last_login_at.replace(tzinfo=None) == self.T0.replace(tzinfo=None)
        assert self._actions(engine)[-1] == "auth.login"

    def test_the_fifth_failure_locks_and_a_locked_account_never_reaches_the_password(self, engine):
        self._account(engine)
        outcomes = [staff.sign_in(engine, "sam", lambda: False, lifetime=self.LIFE,
                                  now=self.T0 + timedelta(minutes=i)).outcome for i in range(5)]
        assert outcomes == [staff.REFUSED] * 4 + [staff.LOCKED_NOW]
        asked = []
        locked = staff.sign_in(engine, "sam", lambda: asked.append(1) or True, lifetime=self.LIFE,
                               now=self.T0 + timedelta(minutes=6))
        assert (locked.outcome, locked.token, asked) == (staff.LOCKED, None, [])
        assert locked.locked_until.replace(tzinfo=None) == (self.T0 + timedelta(minutes=19)).replace(tzinfo=None)
        actions = self._actions(engine)
        assert actions.count("auth.login_failed") == 6 and actions.count("auth.lockout") == 1
        failures = {view.username: n for view, n in staff.accounts(engine, self.T0 + timedelta(minutes=6))}
        assert failures["sam"] == 6

    def test_disabled_while_the_password_is_checked_is_refused_and_counted(self, engine):
        self._account(engine)

        def disable_then_match():  # an admin disables the account between the two reads
            staff.change_active(engine, actor=Actor.system("admin"), username="sam", active=False)
            return True

        result = staff.sign_in(engine, "sam", disable_then_match, lifetime=self.LIFE, now=self.T0)
        assert (result.outcome, result.password_matched, result.token) == (staff.REFUSED, True, None)
        assert self._actions(engine)[-1] == "auth.login_failed"
        assert staff_sessions.open_sessions(engine, "sam", self.T0) == 0

    def test_a_disabled_account_is_refused_without_asking_for_the_password(self, engine):
        self._account(engine, active=False)
        asked = []
        result = staff.sign_in(engine, "sam", lambda: asked.append(1) or True, lifetime=self.LIFE, now=self.T0)
        # The check is asked (so the answer takes as long as for an active account; the dashboard's
        # check compares with no account's hash) and its answer is not used.
        assert (result.outcome, result.password_matched, result.token, asked) == (staff.REFUSED, False, None, [1])

    def test_an_unknown_name_is_answered_as_an_account_would_be(self, engine):
        # Only real accounts locked, so five failures told whether a username existed.
        self._account(engine)
        for name in ("sam", "nobody"):
            outcomes = [staff.sign_in(engine, name, lambda: False, lifetime=self.LIFE,
                                      now=self.T0 + timedelta(minutes=i)) for i in range(5)]
            assert [o.outcome for o in outcomes] == [staff.REFUSED] * 4 + [staff.LOCKED_NOW]
            assert outcomes[-1].locked_until.replace(tzinfo=None) == (self.T0 + timedelta(minutes=19)).replace(tzinfo=None)
            asked = []
            locked = staff.sign_in(engine, name, lambda asked=asked: asked.append(1) or True, lifetime=self.LIFE,
                                   now=self.T0 + timedelta(minutes=6))
            assert (locked.outcome, locked.token, asked) == (staff.LOCKED, None, [])
            assert locked.locked_until.replace(tzinfo=None) == (self.T0 + timedelta(minutes=19)).replace(tzinfo=None)
            later = staff.sign_in(engine, name, lambda: False, lifetime=self.LIFE, now=self.T0 + timedelta(minutes=40))
            assert later.outcome == staff.REFUSED

    def test_a_person_changes_their_own_password_and_their_other_sessions_end(self, engine):
        self._account(engine)
        here = staff.sign_in(engine, "sam", lambda: True, lifetime=self.LIFE, now=self.T0).token
        elsewhere = staff.sign_in(engine, "sam", lambda: True, lifetime=self.LIFE, now=self.T0).token
        with pytest.raises(staff.StaffError, match="current password is not right"):
            staff.change_own_password(engine, username="sam", token=here, current="wrong-password",
                                      new="a-new-password-1", now=self.T0)
        with pytest.raises(staff.StaffError, match="at least 10 characters"):
            staff.change_own_password(engine, username="sam", token=here, current="long-enough-pw", new="short",
                                      now=self.T0)
        with pytest.raises(staff.StaffError, match="session has ended"):
            staff.change_own_password(engine, username="sam", token="made-up", current="long-enough-pw",
                                      new="a-new-password-1", now=self.T0)
        staff.change_own_password(engine, username="sam", token=here, current="long-enough-pw",
                                  new="a-new-password-1", now=self.T0)
        with Session(engine) as s:
            account = staff.get(s, "sam")
            assert staff.verify_password("a-new-password-1", account.password_hash)
            assert not staff.verify_password("long-enough-pw", account.password_hash)
        assert staff.session_account(engine, here, "sam", self.T0).session.live
        gone = staff.session_account(engine, elsewhere, "sam", self.T0).session
        assert (gone.live, gone.reason) == (False, staff_sessions.PASSWORD_CHANGED)
        assert self._actions(engine)[-1] == "staff.change_password"
        # A wrong current password counts as a failed sign-in (four more lock the account).
        for _ in range(4):
            with pytest.raises(staff.StaffError, match="current password is not right"):
                staff.change_own_password(engine, username="sam", token=here, current="wrong-password",
                                          new="a-new-password-2", now=self.T0)
        with Session(engine) as s:
            assert staff.is_locked(staff.get(s, "sam"), self.T0)
        # Locked, the right current password changes nothing: the guessing at that screen stops here.
        with pytest.raises(staff.StaffError, match="Too many wrong passwords: changing it is refused until"):
            staff.change_own_password(engine, username="sam", token=here, current="a-new-password-1",
                                      new="a-new-password-3", now=self.T0)
        with Session(engine) as s:
            assert staff.verify_password("a-new-password-1", staff.get(s, "sam").password_hash)
        assert staff.session_account(engine, here, "sam", self.T0).session.live

    def test_sign_out_ends_the_session_with_its_audit_entry(self, engine):
        self._account(engine)
        token = staff.sign_in(engine, "sam", lambda: True, lifetime=self.LIFE, now=self.T0).token
        assert staff.session_account(engine, token, "sam", self.T0).roles == ("finance", "support")
        staff.sign_out(engine, token, "sam", staff_sessions.SIGN_OUT, self.T0)
        current = staff.session_account(engine, token, "sam", self.T0)
        assert (current.session.live, current.session.reason, current.active) == (False, staff_sessions.SIGN_OUT, False)
        with Session(engine) as s:
            entry = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).one()
        assert (entry.action, entry.actor, entry.comment) == ("auth.logout", "sam", staff_sessions.SIGN_OUT)
