"""Staff sign-in sessions that the server can end.

A sign-in cookie alone is a bearer token: whoever holds a copy is signed in until it expires,
whatever happens on the server. So every sign-in starts a row in ``staff_sessions`` and the
cookie names it (by a random token; the table keeps only its SHA-256). A cookie, and every run of
an open session, counts only while its row is live: not revoked and not past ``expires_at``.

Sign-out revokes that one session; disabling an account, changing its roles or resetting its
password revoke all of the person's sessions (``core.staff`` calls ``revoke_all``). The rows live
in the database, so every replica sees a revocation at once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from core.db import affected_rows, session_scope
from core.models import StaffSession
from core.timeutil import utc_now

# Revocation reasons, also what the person reads when an open session ends.
SIGN_OUT = "sign-out"
IDLE = "idle"
DISABLED = "account disabled"
ROLES_CHANGED = "roles changed"
PASSWORD_RESET = "password reset"
PASSWORD_CHANGED = "password changed"  # by its owner, in another session

# Expired or revoked rows are kept this long (to tell a person why a session ended), then purged.
KEEP_ENDED = timedelta(days=7)


@dataclass(frozen=True)
class SessionState:
    """Whether a token still signs ``username`` in; ``reason`` says why not."""

    live: bool
    reason: str | None = None


def _key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start(session: Session, username: str, *, lifetime: timedelta, now: datetime | None = None) -> str:
    """Open a session for ``username``; returns the token the cookie carries (only place it lives)."""
    now = now or utc_now()
    token = secrets.token_urlsafe(32)
    session.execute(delete(StaffSession).where(StaffSession.username == username,
                                               StaffSession.expires_at < now - KEEP_ENDED))
    session.add(StaffSession(id=_key(token), username=username, created_at=now, expires_at=now + lifetime))
    session.flush()
    return token


def check(session: Session, token: str | None, username: str, now: datetime | None = None) -> SessionState:
    """Is ``token`` a live session of ``username``? Unknown, revoked, expired or someone else's
    session: not live."""
    if not token or not isinstance(token, str):
        return SessionState(False, "no session")
    now = now or utc_now()
    row = session.get(StaffSession, _key(token))
    if row is None or row.username != username:
        return SessionState(False, "unknown session")
    if row.revoked_at is not None:
        return SessionState(False, row.revoked_reason or SIGN_OUT)
    if row.expires_at <= now:
        return SessionState(False, IDLE)
    return SessionState(True)


def _extend(session: Session, token: str, *, lifetime: timedelta, now: datetime | None = None) -> None:
    now = now or utc_now()
    session.execute(update(StaffSession).where(StaffSession.id == _key(token), StaffSession.revoked_at.is_(None),
                                               StaffSession.expires_at > now)
                    .values(expires_at=now + lifetime))


def revoke(session: Session, token: str | None, reason: str, now: datetime | None = None) -> None:
    """End one session (a sign-out or an idle expiry)."""
    if not token:
        return
    session.execute(update(StaffSession).where(StaffSession.id == _key(token), StaffSession.revoked_at.is_(None))
                    .values(revoked_at=now or utc_now(), revoked_reason=reason))


def revoke_others(session: Session, username: str, keep: str, reason: str, now: datetime | None = None) -> int:
    """End every open session of ``username`` but the one of token ``keep``; returns how many."""
    result = session.execute(update(StaffSession).where(StaffSession.username == username,
                                                        StaffSession.id != _key(keep),
                                                        StaffSession.revoked_at.is_(None))
                             .values(revoked_at=now or utc_now(), revoked_reason=reason))
    return int(affected_rows(result) or 0)


def revoke_all(session: Session, username: str, reason: str, now: datetime | None = None) -> int:
    """End every open session of ``username``; returns how many were open."""
    result = session.execute(update(StaffSession).where(StaffSession.username == username,
                                                        StaffSession.revoked_at.is_(None))
                             .values(revoked_at=now or utc_now(), revoked_reason=reason))
    return int(affected_rows(result) or 0)


# ------------------------------------------------ for a caller with no unit of work of its own

def is_live(engine: Engine, token: str | None, username: str, now: datetime | None = None) -> SessionState:
    """``check`` in a transaction of its own (a sign-in cookie being read)."""
    with session_scope(engine) as s:
        return check(s, token, username, now)


def open_sessions(engine: Engine, username: str, now: datetime | None = None) -> int:
    """How many live sessions ``username`` has."""
    now = now or utc_now()
    with session_scope(engine) as s:
        return len(s.scalars(select(StaffSession.id).where(
            StaffSession.username == username, StaffSession.revoked_at.is_(None),
            StaffSession.expires_at > now)).all())


def keep_alive(engine: Engine, token: str, *, lifetime: timedelta, now: datetime | None = None) -> None:
    """Slide a live session's expiry while the person keeps working (never revives a revoked one)."""
    with session_scope(engine) as s:
        _extend(s, token, lifetime=lifetime, now=now)
