"""Who is signed in, and the guard every page starts with.

``guard(permission)`` returns the signed-in person's ``StaffContext`` or stops the page with a
sentence. It re-checks the role in ``core.permissions`` on every run (hiding a page in the
navigation is a convenience, not the check) and records a refusal in the audit log.

The sign-in itself (streamlit-authenticator, the database-backed lockout, idle expiry and the
sign-out cookie handling) lives in ``dashboard.signin``; this module only reads its result from
``st.session_state``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import streamlit as st

from core import permissions
from core.permissions import Actor, Permission, PermissionDenied, allowed, parse_roles, require
from dashboard.text import md

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StaffContext:
    """The signed-in staff member, as pages see them."""

    username: str
    name: str
    roles: tuple[str, ...]

    def can(self, permission: Permission) -> bool:
        return allowed(self.roles, permission)


def _roles_from_state(value: object) -> tuple[str, ...]:
    if isinstance(value, str | list | tuple | set | frozenset):
        return tuple(sorted(r.value for r in parse_roles(value)))
    return ()


def current() -> StaffContext | None:
    """The signed-in person, or None when nobody is signed in in this session."""
    state = st.session_state
    if not state.get("authentication_status") or not state.get("username"):
        return None
    username = str(state["username"])
    return StaffContext(username=username, name=str(state.get("name") or username),
                        roles=_roles_from_state(state.get("roles")))


def record_refusal(ctx: StaffContext, permission: Permission, where: str) -> None:
    """Write ``auth.permission_refused`` to the audit log (core's one way); never raises."""
    from dashboard.db import engine  # late: keeps this module importable without settings

    try:
        bind = engine()
    except Exception:  # the refusal itself must still stop the page
        log.exception("could not record a permission refusal for %s", ctx.username)
        return
    permissions.record_refusal(bind, Actor.of(ctx.username, ctx.roles), permission, where)


def guard(permission: Permission, *, where: str | None = None) -> StaffContext:
    """Return the signed-in person if their roles grant ``permission``; otherwise stop the page."""
    ctx = current()
    if ctx is None:
        st.info("Please sign in to use Memberdesk.")
        st.stop()
    try:
        require(ctx.roles, permission)
    except PermissionDenied as exc:
        record_refusal(ctx, permission, where or permission.value)
        st.error(md(exc))
        st.stop()
    return ctx


def check(ctx: StaffContext, permission: Permission, *, where: str) -> bool:
    """For actions inside a page: True when allowed; otherwise records the refusal, shows the
    sentence and returns False (the caller skips the action)."""
    try:
        require(ctx.roles, permission)
        return True
    except PermissionDenied as exc:
        record_refusal(ctx, permission, where)
        st.error(md(exc))
        return False
