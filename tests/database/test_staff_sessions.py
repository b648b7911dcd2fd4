"""Server-side sessions (core.staff_sessions): a sign-in lives exactly as long as its row, and
sign-out, disabling, changed roles and a reset password end it for every replica."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, text

from core import staff, staff_sessions
from core.db import session_scope
from core.models import StaffSession
from core.permissions import Actor
from tests.support.factories import at
from tests.support.worlds import create_staff

NOW = at("2026-11-20 10:00")
LIFE = timedelta(minutes=30)


def _staff(engine) -> None:
    create_staff(engine)


def _live(engine, token: str, username: str, now=NOW) -> staff_sessions.SessionState:
    return staff_sessions.is_live(engine, token, username, now)


def test_a_session_lives_until_its_idle_expiry_and_slides(engine):
    with session_scope(engine) as s:
        token = staff_sessions.start(s, "support", lifetime=LIFE, now=NOW)
    assert _live(engine, token, "support").live
    assert _live(engine, token, "support", NOW + LIFE).reason == staff_sessions.IDLE
    staff_sessions.keep_alive(engine, token, lifetime=LIFE, now=NOW + timedelta(minutes=20))
    assert _live(engine, token, "support", NOW + timedelta(minutes=49)).live
    assert not _live(engine, token, "support", NOW + timedelta(minutes=50)).live


def test_only_a_hash_of_the_token_is_stored(engine):
    with session_scope(engine) as s:
        token = staff_sessions.start(s, "support", lifetime=LIFE, now=NOW)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT id FROM staff_sessions")).scalars().all()
    assert len(stored) == 1 and token not in stored[0] and len(stored[0]) == 64


def test_a_token_signs_in_only_its_own_person_and_unknown_tokens_nobody(engine):
    with session_scope(engine) as s:
        token = staff_sessions.start(s, "support", lifetime=LIFE, now=NOW)
    assert not _live(engine, token, "admin").live
    assert not _live(engine, "made-up-token", "support").live
    assert not _live(engine, "", "support").live


def test_sign_out_ends_one_session_and_extending_never_revives_it(engine):
    with session_scope(engine) as s:
        here = staff_sessions.start(s, "support", lifetime=LIFE, now=NOW)
        there = staff_sessions.start(s, "support", lifetime=LIFE, now=NOW)
    staff.sign_out(engine, here, "support", staff_sessions.SIGN_OUT, NOW)
    staff_sessions.keep_alive(engine, here, lifetime=LIFE, now=NOW)
    assert _live(engine, here, "support").reason == staff_sessions.SIGN_OUT
    assert _live(engine, there, "support").live


def test_disable_role_change_and_password_reset_end_every_session_of_the_person(engine):
    _staff(engine)
    admin = Actor.of("admin", "admin")
    cases = [
        (lambda: staff.change_active(engine, actor=admin, username="support", active=False), staff_sessions.DISABLED),
        (lambda: staff.change_roles(engine, actor=admin, username="support", roles="manager"),
         staff_sessions.ROLES_CHANGED),
        (lambda: staff.change_password(engine, actor=admin, username="support", password="a-new-password-1",
                                       bcrypt_rounds=4), staff_sessions.PASSWORD_RESET),
    ]
    for change, reason in cases:
        staff.change_active(engine, actor=admin, username="support", active=True)
        with session_scope(engine) as s:
            tokens = [staff_sessions.start(s, "support", lifetime=LIFE) for _ in range(2)]
            other = staff_sessions.start(s, "finance", lifetime=LIFE)
        change()
        assert [_live(engine, t, "support", None).reason for t in tokens] == [reason, reason]
        assert _live(engine, other, "finance", None).live  # nobody else is signed out


def test_setting_the_same_roles_again_keeps_the_session(engine):
    _staff(engine)
    with session_scope(engine) as s:
        token = staff_sessions.start(s, "support", lifetime=LIFE)
    staff.change_roles(engine, actor=Actor.of("admin", "admin"), username="support", roles=["support"])
    assert _live(engine, token, "support", None).live


def test_long_ended_sessions_are_purged_at_the_next_sign_in(engine):
    with session_scope(engine) as s:
        staff_sessions.start(s, "support", lifetime=LIFE, now=NOW)
        staff_sessions.start(s, "support", lifetime=LIFE, now=NOW + staff_sessions.KEEP_ENDED + LIFE * 2)
    with session_scope(engine) as s:
        rows = s.scalars(select(StaffSession)).all()
    assert len(rows) == 1
