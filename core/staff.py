"""Staff accounts: create, disable, roles, passwords, and the shared sign-in lockout.

Passwords are bcrypt hashes. bcrypt refuses passwords over 72 bytes, so forms cap the length and
this module says so in a sentence. Failed sign-ins are counted in the database, by username and
by address, so every session and every replica sees the same count; ``core.lockout`` holds the
rules (5 from one address pause that address, 20 from anywhere lock the account).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import bcrypt
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core import audit, lockout, staff_sessions
from core.db import session_scope
from core.models import StaffAccount
from core.models.enums import Role
from core.permissions import Actor, Permission, guarded, parse_roles
from core.timeutil import utc_now

# The lockout's rules live in core.lockout; its numbers are named here too for the forms' sentences.
MAX_FAILURES, FAILURE_WINDOW, LOCK_DURATION = lockout.MAX_FAILURES, lockout.FAILURE_WINDOW, lockout.LOCK_DURATION
MIN_PASSWORD = 10
MAX_PASSWORD_BYTES = 72
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MAX_NAME = 120  # staff_accounts.name
MAX_EMAIL = 320


class StaffError(ValueError):
    """Invalid staff input; str(error) is the sentence to show."""


@dataclass(frozen=True)
class StaffView:
    username: str
    name: str
    email: str
    roles: tuple[str, ...]
    active: bool
    locked_until: datetime | None  # the account's lock, else the latest pause of its sign-ins from one place
    last_login_at: datetime | None
    locked_everywhere: bool = False  # the account's lock (not a pause from one place)
    paused_places: int = 0  # addresses its sign-ins are paused from


def hash_password(password: str, *, rounds: int = 12) -> str:
    check_password_rules(password)
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")


@functools.cache
def _nobody_hash() -> bytes:
    return bcrypt.hashpw(b"no account has this password", bcrypt.gensalt(12))


def check_against_nobody(password: str) -> bool:
    """A password check for a name with no account, as slow as a real one (always False): an
    unknown name was answered a bcrypt check sooner, which told that it had no account."""
    bcrypt.checkpw(password.encode("utf-8")[:MAX_PASSWORD_BYTES], _nobody_hash())
    return False


def verify_password(password: str, password_hash: str) -> bool:
    data = password.encode("utf-8")
    if len(data) > MAX_PASSWORD_BYTES:
        return False
    try:
        return bcrypt.checkpw(data, password_hash.encode("ascii"))
    except ValueError:
        return False


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise StaffError(f"The password must have at least {MIN_PASSWORD} characters.")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise StaffError(f"The password must be at most {MAX_PASSWORD_BYTES} bytes long.")
    if password != password.strip():
        raise StaffError("The password must not start or end with a space.")


def normalise_username(username: str) -> str:
    username = (username or "").strip().lower()
    if not USERNAME_RE.match(username):
        raise StaffError(
            "A username has 2 to 64 characters: lower-case letters, digits, dots, dashes or underscores."
        )
    return username


def normalise_roles(roles: Iterable[str] | str) -> str:
    raw = roles.split(",") if isinstance(roles, str) else list(roles)
    raw = [r.strip().lower() for r in raw if r.strip()]
    unknown = sorted(set(raw) - {r.value for r in Role})
    if unknown:
        raise StaffError(f"Unknown role {', '.join(unknown)}; roles are support, finance, manager, admin.")
    parsed = parse_roles(raw)
    if not parsed:
        raise StaffError("Give at least one role: support, finance, manager or admin.")
    return ",".join(sorted(r.value for r in parsed))


def get(session: Session, username: str) -> StaffAccount | None:
    return session.scalar(select(StaffAccount).where(StaffAccount.username == username.strip().lower()))


def _require(session: Session, username: str) -> StaffAccount:
    account = get(session, username)
    if account is None:
        raise StaffError(f"There is no staff account “{username}”.")
    return account


def _clean(value: str, what: str, max_len: int) -> str:
    text = (value or "").strip()
    if "\x00" in text or any(ord(c) < 32 for c in text):
        raise StaffError(f"The {what} contains a control character (such as a NUL byte); type it again.")
    if len(text) > max_len:
        raise StaffError(f"The {what} can have at most {max_len} characters; this one has {len(text)}.")
    return text


def _create(session: Session, *, actor: Actor, username: str, name: str, email: str, roles: Iterable[str] | str,
           password: str, bcrypt_rounds: int = 12) -> StaffAccount:
    username = normalise_username(username)
    if get(session, username) is not None:
        raise StaffError(f"A staff account “{username}” already exists.")
    name = _clean(name, "name", MAX_NAME)
    if not name:
        raise StaffError("Give the person's name.")
    email = _clean(email, "e-mail address", MAX_EMAIL)
    if "@" not in email:
        raise StaffError(f"“{email}” is not an e-mail address.")
    # One person, one account: a second account on the same address is a second identity for the
    # same person (a way round four-eyes approval), or a typo that sends their mail to someone else.
    taken = session.scalar(select(StaffAccount.username).where(StaffAccount.email == email.lower()))
    if taken is not None:
        raise StaffError(f"The account “{taken}” already uses {email.lower()}; give each person one account.")
    now = utc_now()
    account = StaffAccount(
        username=username, name=name, email=email.lower(), roles=normalise_roles(roles),
        password_hash=hash_password(password, rounds=bcrypt_rounds), active=True, created_at=now,
        password_changed_at=now,
    )
    session.add(account)
    audit.record(session, actor=actor.username, action="staff.create", target_type="staff", target_id=username,
                 after={"username": username, "roles": account.roles, "active": True})
    return account


def _set_roles(session: Session, *, actor: Actor, username: str, roles: Iterable[str] | str) -> StaffAccount:
    account = _require(session, username)
    before = account.roles
    after = normalise_roles(roles)
    if ADMIN in account.role_set and ADMIN not in after.split(","):  # normalise_roles joins with commas
        if actor.is_same_person(account.username, account.id):
            raise StaffError("You cannot remove your own admin role; another admin can.")
        _keep_an_admin(session, account)
    account.roles = after
    account.updated_at = utc_now()
    audit.record(session, actor=actor.username, action="staff.set_roles", target_type="staff", target_id=account.username,
                 before={"roles": before}, after={"roles": account.roles})
    if account.roles != before:  # a session keeps no roles the person has lost: sign in again
        staff_sessions.revoke_all(session, account.username, staff_sessions.ROLES_CHANGED)
    return account


ADMIN = Role.ADMIN.value


def _keep_an_admin(session: Session, losing: StaffAccount) -> None:
    """Refuse a change that would leave no active admin: nobody could then manage staff or the
    settings from the dashboard (the command line would be the only way back)."""
    # FOR UPDATE: two admins demoting each other at once must not both succeed (each locks the
    # other's row, so the database undoes one of the two).
    others = [a for a in session.scalars(select(StaffAccount).where(StaffAccount.active.is_(True),
                                                                     StaffAccount.id != losing.id).with_for_update())
              if ADMIN in a.role_set]
    if not others:
        raise StaffError(f"{losing.username} is the only active admin; make someone else an admin first.")


def _set_active(session: Session, *, actor: Actor, username: str, active: bool) -> StaffAccount:
    account = _require(session, username)
    if not active and actor.is_same_person(account.username, account.id):
        raise StaffError("You cannot disable your own account.")
    if not active and account.active and ADMIN in account.role_set:
        _keep_an_admin(session, account)
    before = account.active
    account.active = active
    account.updated_at = utc_now()
    audit.record(session, actor=actor.username, action="staff.enable" if active else "staff.disable", target_type="staff",
                 target_id=account.username, before={"active": before}, after={"active": active})
    if not active:
        staff_sessions.revoke_all(session, account.username, staff_sessions.DISABLED)
    return account


def _reset_password(session: Session, *, actor: Actor, username: str, password: str,
                   bcrypt_rounds: int = 12) -> StaffAccount:
    account = _require(session, username)
    account.password_hash = hash_password(password, rounds=bcrypt_rounds)
    account.password_changed_at = account.updated_at = utc_now()
    lockout.forgive(account, account.password_changed_at)
    audit.record(session, actor=actor.username, action="staff.reset_password", target_type="staff", target_id=account.username)
    staff_sessions.revoke_all(session, account.username, staff_sessions.PASSWORD_RESET)
    return account


def _unlock(session: Session, *, actor: Actor, username: str, now: datetime | None = None) -> StaffAccount:
    account = _require(session, username)
    lockout.forgive(account, now or utc_now())
    audit.record(session, actor=actor.username, action="staff.unlock", target_type="staff", target_id=account.username)
    return account


def _view(a: StaffAccount, session: Session | None = None, now: datetime | None = None) -> StaffView:
    """The account as the Admin page lists it; with ``session``, a pause of its sign-ins from one
    place shows as its lock too (the admin's Unlock lifts both)."""
    now = now or utc_now()
    everywhere = lockout.is_locked(a, now)
    until = a.locked_until if everywhere else None
    paused = lockout.place_locks(session, a.username, now, a.failures_forgiven_at) if session is not None else []
    if until is None and paused:
        until = paused[-1]
    return StaffView(a.username, a.name, a.email, tuple(sorted(a.role_set)), a.active, until, a.last_login_at,
                     everywhere, len(paused))


# ------------------------------------------------ account changes that own their transaction
# Every caller (the Admin page, the CLI, the demo loader) uses these: each checks the actor's
# permission, opens one unit of work, makes the change and its audit entry, and commits both or
# neither. The private functions above do the change inside that unit of work.

@guarded(Permission.MANAGE_STAFF)
def add_account(engine: Engine, *, actor: Actor, username: str, name: str, email: str, roles: Iterable[str] | str,
                password: str, bcrypt_rounds: int = 12) -> StaffView:
    """Create an account (audited) in a transaction of its own."""
    with session_scope(engine) as s:
        return _view(_create(s, actor=actor, username=username, name=name, email=email, roles=roles,
                            password=password, bcrypt_rounds=bcrypt_rounds))


@guarded(Permission.MANAGE_STAFF)
def change_roles(engine: Engine, *, actor: Actor, username: str, roles: Iterable[str] | str) -> StaffView:
    """Set a person's roles; a change ends their open sessions (they sign in again)."""
    with session_scope(engine) as s:
        return _view(_set_roles(s, actor=actor, username=username, roles=roles))


@guarded(Permission.MANAGE_STAFF)
def change_active(engine: Engine, *, actor: Actor, username: str, active: bool) -> StaffView:
    """Enable or disable an account; disabling ends its sessions, and nobody disables their own."""
    with session_scope(engine) as s:
        return _view(_set_active(s, actor=actor, username=username, active=active))


@guarded(Permission.MANAGE_STAFF)
def change_password(engine: Engine, *, actor: Actor, username: str, password: str,
                    bcrypt_rounds: int = 12) -> StaffView:
    """Set a new password: ends the person's sessions and lifts a lockout."""
    with session_scope(engine) as s:
        return _view(_reset_password(s, actor=actor, username=username, password=password,
                                    bcrypt_rounds=bcrypt_rounds))


@guarded(Permission.MANAGE_STAFF)
def unlock_account(engine: Engine, *, actor: Actor, username: str, now: datetime | None = None) -> StaffView:
    """Lift a lockout after failed sign-ins (the account's and its pauses from single addresses)."""
    with session_scope(engine) as s:
        return _view(_unlock(s, actor=actor, username=username, now=now), s, now)


def accounts(engine: Engine, now: datetime | None = None) -> list[tuple[StaffView, int]]:
    """Every account with its failed sign-ins in the last ``FAILURE_WINDOW`` (the admin page's list)."""
    now = now or utc_now()
    with Session(engine) as session:
        return [(_view(a, session, now), lockout.recent_failures(session, a.username, now, a.failures_forgiven_at))
                for a in session.scalars(select(StaffAccount).order_by(StaffAccount.username))]


def signable(engine: Engine, now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """Active, unlocked accounts as plain data (name, e-mail, password hash, roles) by username:
    who may sign in at ``now``."""
    now = now or utc_now()
    with Session(engine) as session:
        return {a.username: {"name": a.name, "email": a.email, "password": a.password_hash,
                             "roles": sorted(a.role_set)}
                for a in session.scalars(select(StaffAccount).where(StaffAccount.active.is_(True)))
                if not is_locked(a, now)}


def is_locked(account: StaffAccount, now: datetime | None = None) -> bool:
    """Locked everywhere (a pause of sign-ins from one place is not a lock of the account)."""
    return lockout.is_locked(account, now or utc_now())


def _record_login_attempt(session: Session, username: str, success: bool, now: datetime | None = None,
                          place: str | None = None) -> lockout.Lock | None:
    """Count one attempt; returns the lock this failure brought, if any."""
    username = (username or "").strip().lower()[:64]
    account = get(session, username) if username else None
    return lockout.record(session, username, success, now or utc_now(), place, account)


# ------------------------------------------------ sign-in, session checks and sign-out
# The dashboard's sign-in calls these; each owns its transaction.

SIGNED_IN = "signed in"
LOCKED = "locked"  # before this attempt: the password was not looked at
LOCKED_NOW = "locked now"  # this failure locked the account
REFUSED = "refused"


@dataclass(frozen=True)
class SignIn:
    """What one sign-in attempt came to: ``outcome`` is SIGNED_IN (with the new session's
    ``token``), LOCKED or LOCKED_NOW (``locked_until``, when known) or REFUSED;
    ``password_matched`` says whether the caller's password check was asked and said yes."""

    outcome: str
    password_matched: bool = False
    locked_until: datetime | None = None
    token: str | None = None
    scope: str | None = None  # of a lock: core.lockout's ACCOUNT, PLACE or ADDRESS
    name: str = ""
    roles: tuple[str, ...] = ()


def sign_in(engine: Engine, username: str, password_matches: Callable[[], bool], *, lifetime: timedelta,
            now: datetime | None = None, address: str | None = None) -> SignIn:
    """One sign-in attempt, in one transaction, from ``address`` (the connection's; None when not
    known). A lock in force (``core.lockout``: the account's, this name's from this place, or this
    place's) is answered before the password is looked at; ``password_matches`` (the caller's
    check) runs next; after a match the account is read again (it may have been disabled or locked
    since), and only then is the attempt counted as a success and a session opened. Every refusal
    counts as a failure. A name with no active account is answered as an account would be: its
    password is checked too (the caller spends the same time on it) and the same rules lock it,
    said the same way for the same time."""
    now = now or utc_now()
    username = (username or "").strip().lower()
    place = lockout.place_of(address)
    with session_scope(engine) as s:
        account = get(s, username)
        real = account is not None and account.active
        held = lockout.lock_before(s, username, account, place, now)
        if held is not None:  # the password is not looked at
            _record_login_attempt(s, username, False, now, place)
            return SignIn(LOCKED, locked_until=held.until, scope=held.scope)
        matched = bool(password_matches()) and real
        if matched:
            assert account is not None  # matched: the account exists
            s.refresh(account)  # after: disabled or locked since the check began?
            if account.active and not is_locked(account, now):
                _record_login_attempt(s, username, True, now, place)
                token = staff_sessions.start(s, username, lifetime=lifetime, now=now)
                return SignIn(SIGNED_IN, True, token=token, name=account.name, roles=tuple(sorted(account.role_set)))
        brought = _record_login_attempt(s, username, False, now, place)
        if brought is not None:
            return SignIn(LOCKED_NOW, matched, locked_until=brought.until, scope=brought.scope)
        return SignIn(REFUSED, matched)


@dataclass(frozen=True)
class SessionAccount:
    """A signed-in session as the server sees it now: whether it is live (``session.reason``
    says why not) and, when it is, whether the account is active and its roles."""

    session: staff_sessions.SessionState
    active: bool = False
    roles: tuple[str, ...] = ()


def session_account(engine: Engine, token: str | None, username: str,
                    now: datetime | None = None) -> SessionAccount:
    """Is ``token`` a live session of ``username``, and may the account still work?"""
    with session_scope(engine) as s:
        live = staff_sessions.check(s, token, username, now)
        account = get(s, username) if live.live else None
        if account is None:
            return SessionAccount(live)
        return SessionAccount(live, account.active, tuple(sorted(account.role_set)))


def sign_out(engine: Engine, token: str | None, username: str, reason: str, now: datetime | None = None) -> None:
    """End one session (a sign-out, an idle expiry, a revoked session) and audit it, together."""
    with session_scope(engine) as s:
        staff_sessions.revoke(s, token, reason, now)
        audit.record(s, actor=username, action="auth.logout", target_type="staff", target_id=username,
                     comment=reason)


def change_own_password(engine: Engine, *, username: str, token: str | None, current: str, new: str,
                        now: datetime | None = None, address: str | None = None) -> None:
    """The signed-in person changes their own password: their live session, their current password,
    then the new one by the rules; audited; their other sessions end (a password someone else knew
    stops working there too). New accounts get a first password from an admin, to be changed."""
    now = now or utc_now()
    with session_scope(engine) as s:
        if not staff_sessions.check(s, token, username, now).live:
            raise StaffError("Your session has ended; sign in again to change your password.")
        account = _require(s, username)
        place = lockout.place_of(address)
        # A lock holds here too: guessing the current password at an unattended screen must not
        # go on once guessing has locked the account (or paused this address).
        held = lockout.lock_before(s, username, account, place, now)
        if held is not None:
            raise StaffError(f"Too many wrong passwords: changing it is refused until {held.until:%H:%M} UTC; "
                             "nothing was changed.")
        if not verify_password(current, account.password_hash):
            # A failed sign-in as well: guessing here at an unattended screen leads to the lockout.
            audit.record(s, actor=username, action="staff.change_password", target_type="staff", target_id=username,
                         outcome="refused", comment="current password not right")
            _record_login_attempt(s, username, False, now, place)
            s.commit()
            raise StaffError("Your current password is not right; nothing was changed.")
        check_password_rules(new)
        if new == current:
            raise StaffError("The new password is the same as the current one.")
        account.password_hash = hash_password(new)
        account.password_changed_at = account.updated_at = now
        audit.record(s, actor=username, action="staff.change_password", target_type="staff", target_id=username)
        assert token is not None  # a live session has one
        staff_sessions.revoke_others(s, username, token, staff_sessions.PASSWORD_CHANGED, now)


def record_auth_event(engine: Engine, username: str, action: str, *, outcome: str = "ok",
                      comment: str | None = None) -> None:
    """An audit entry about a person's own sign-in (a refused cookie, say), committed on its own."""
    with session_scope(engine) as s:
        audit.record(s, actor=username, action=action, target_type="staff", target_id=username,
                     comment=comment, outcome=outcome)
