"""The sign-in lockout: failed sign-ins, counted by name and by place, and what they lock.

Attempts are counted in the database (``login_attempts``) so every session and every replica sees
the same count. A place is the connection's address, kept only as a keyed digest (``place_of``):
enough to tell two places apart, not to say where either is. Over the last ``FAILURE_WINDOW``:

- ``MAX_FAILURES`` failures for one username from one place pause that username's sign-ins from
  that place for ``LOCK_DURATION``. The account's owner elsewhere still signs in: someone guessing
  from one address can no longer keep a known username locked.
- ``MAX_FAILURES_ANYWHERE`` failures for one username from any places lock the account everywhere
  (guessing spread over many addresses). An attempt from an unknown place (a local connection, a
  proxy that does not pass the address on) cannot be told from the owner's, so there the account
  locks after ``MAX_FAILURES``, as it did before places were counted.
- ``MAX_FAILURES_FROM_PLACE`` failures from one place, whatever the usernames, refuse every sign-in
  from it until they age out (one address trying a list of names).

An admin's unlock or password reset forgives the account's failures before it. A username with no
account is answered by replaying the same rules over its attempts, so the answers do not tell
whether an account exists.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import audit
from core.models import LoginAttempt, StaffAccount
from core.timeutil import ensure_aware

MAX_FAILURES = 5
MAX_FAILURES_ANYWHERE = 20
MAX_FAILURES_FROM_PLACE = 30
FAILURE_WINDOW = timedelta(minutes=15)
LOCK_DURATION = timedelta(minutes=15)

ACCOUNT = "account"  # the account, everywhere
PLACE = "place"  # this username from this place
ADDRESS = "address"  # every sign-in from this place


@dataclass(frozen=True)
class Lock:
    scope: str  # ACCOUNT, PLACE or ADDRESS
    until: datetime


def place_of(address: str | None) -> str | None:
    """The keyed digest of a connection's address (None: not known). Keyed with the encryption
    key, so the stored digests of the few billion IPv4 addresses cannot be tried one by one."""
    if not address:
        return None
    from core import crypto

    key = crypto.keyring().digest_key()
    return hmac.new(key, b"sign-in place\x00" + address.strip().lower().encode(), hashlib.sha256).hexdigest()[:24]


def is_locked(account: StaffAccount, now: datetime) -> bool:
    return account.locked_until is not None and ensure_aware(account.locked_until) > now


def _failures(session: Session, now: datetime, *, username: str | None = None, place: str | None = None,
              any_place: bool = False, since: datetime | None = None) -> list[datetime]:
    """The failed attempts' times, oldest first, back as far as a lock they caused could reach."""
    start = now - FAILURE_WINDOW - LOCK_DURATION
    if since is not None and ensure_aware(since) > start:
        start = ensure_aware(since)
    q = select(LoginAttempt.at).where(LoginAttempt.success.is_(False), LoginAttempt.at > start,
                                      LoginAttempt.at <= now)
    if username is not None:
        q = q.where(LoginAttempt.username == username)
    if not any_place:
        q = q.where(LoginAttempt.place.is_(None) if place is None else LoginAttempt.place == place)
    return [ensure_aware(t) for t in session.scalars(q.order_by(LoginAttempt.at))]


def _replay(times: list[datetime], limit: int, now: datetime) -> datetime | None:
    """Until when ``limit`` failures within the window lock, played over ``times`` in order (a
    failure while locked does not lock again; None: not locked at ``now``)."""
    until: datetime | None = None
    seen: list[datetime] = []
    for at in times:
        seen.append(at)
        if until is not None and at < until:
            continue
        if sum(1 for t in seen if t > at - FAILURE_WINDOW) >= limit:
            until = at + LOCK_DURATION
    return until if until is not None and until > now else None


def _address_lock(session: Session, place: str | None, now: datetime) -> Lock | None:
    if place is None:  # every local attempt shares "no place": it must not shut the door on all
        return None
    recent = [t for t in _failures(session, now, place=place) if t > now - FAILURE_WINDOW]
    if len(recent) < MAX_FAILURES_FROM_PLACE:
        return None
    # Refused until enough of them age out of the window.
    return Lock(ADDRESS, recent[len(recent) - MAX_FAILURES_FROM_PLACE] + FAILURE_WINDOW)


def _name_locks(session: Session, username: str, place: str | None, now: datetime,
                since: datetime | None) -> tuple[datetime | None, datetime | None]:
    """(everywhere, from this place) as the rules give them over this name's attempts."""
    everywhere = _replay(_failures(session, now, username=username, any_place=True, since=since),
                         MAX_FAILURES_ANYWHERE, now)
    here = _replay(_failures(session, now, username=username, place=place, since=since), MAX_FAILURES, now)
    if place is None and here is not None:  # an unknown place is everyone's: the account locks
        everywhere = here if everywhere is None else max(everywhere, here)
        here = None
    return everywhere, here


def lock_before(session: Session, username: str, account: StaffAccount | None, place: str | None,
                now: datetime) -> Lock | None:
    """The lock in force before this attempt (None: its password may be looked at)."""
    if account is not None and account.active:
        if is_locked(account, now):
            assert account.locked_until is not None
            return Lock(ACCOUNT, ensure_aware(account.locked_until))
        here = None if place is None else _name_locks(session, username, place, now,
                                                      account.failures_forgiven_at)[1]
    else:
        everywhere, here = _name_locks(session, username, place, now, None)
        if everywhere is not None:
            return Lock(ACCOUNT, everywhere)
    if here is not None:
        return Lock(PLACE, here)
    return _address_lock(session, place, now)


def record(session: Session, username: str, success: bool, now: datetime, place: str | None,
           account: StaffAccount | None) -> Lock | None:
    """Count one attempt (and audit it); returns the lock this failure brought, if any. A real
    account's lock everywhere is stored on it (an admin lifts it); the others are replayed."""
    session.add(LoginAttempt(username=username, at=now, success=success, place=place))
    if success:
        if account is not None:
            account.last_login_at = now
        audit.record(session, actor=username, action="auth.login", target_type="staff", target_id=username)
        return None
    audit.record(session, actor=username or "?", action="auth.login_failed", target_type="staff",
                 target_id=username, outcome="refused")
    session.flush()
    real = account if account is not None and account.active else None
    everywhere, here = _name_locks(session, username, place, now, real.failures_forgiven_at if real else None)
    if real is not None and everywhere is not None and not is_locked(real, now):
        real.locked_until = everywhere
        audit.record(session, actor="system", action="auth.lockout", target_type="staff", target_id=username,
                     after={"locked_until": everywhere.isoformat()})
    if everywhere is not None:
        return Lock(ACCOUNT, everywhere)
    if here is not None:
        return Lock(PLACE, here)
    return _address_lock(session, place, now)


def forgive(account: StaffAccount, now: datetime) -> None:
    """An admin's unlock or password reset: the lock goes, and the failures before now no longer count."""
    account.locked_until = None
    account.failures_forgiven_at = now


def place_locks(session: Session, username: str, now: datetime, since: datetime | None) -> list[datetime]:
    """When each pause of this username's sign-ins from one place ends (the Admin page's list)."""
    places = session.scalars(select(LoginAttempt.place).where(
        LoginAttempt.username == username, LoginAttempt.success.is_(False), LoginAttempt.place.is_not(None),
        LoginAttempt.at > now - FAILURE_WINDOW - LOCK_DURATION).group_by(LoginAttempt.place)
        .having(func.count() >= MAX_FAILURES)).all()
    untils = [u for p in places
              if (u := _replay(_failures(session, now, username=username, place=p, since=since), MAX_FAILURES, now))]
    return sorted(untils)


def recent_failures(session: Session, username: str, now: datetime, since: datetime | None = None) -> int:
    """Failed sign-ins in the window, after an admin last forgave them (``since``)."""
    start = now - FAILURE_WINDOW
    if since is not None and ensure_aware(since) > start:
        start = ensure_aware(since)
    return session.scalar(select(func.count()).select_from(LoginAttempt).where(
        LoginAttempt.username == username, LoginAttempt.success.is_(False), LoginAttempt.at > start)) or 0
