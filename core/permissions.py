"""Who may do what. Every page and every action asks here, in ``core/``; hiding a page in the
navigation is a convenience, not the check.

``require(roles, permission)`` raises ``PermissionDenied`` (a sentence) when none of the roles
grants the permission. Limits that depend on amounts (refund ceilings, extension days) live with
the membership-change service and are configured by admins.

Every write in core takes the acting staff member as an ``Actor`` and checks its permission here:
``@guarded(Permission.X)`` on the function, or ``check(actor, permission, bind=...)`` inside it
when the permission depends on the arguments (a membership change's action). A refusal is
written to the audit log in its own transaction (``auth.permission_refused``), so the caller's
rollback cannot erase it. The command line acts as a named operator (``Actor.operator``).
"""

from __future__ import annotations

import functools
import getpass
import inspect
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar, cast

from core.models.enums import Role


class PermissionDenied(PermissionError):
    """The signed-in person's roles do not allow this; str(error) is the sentence to show."""


class Permission(StrEnum):
    # pages (read side)
    VIEW_OVERVIEW = "view_overview"
    VIEW_REVENUE_FIGURES = "view_revenue_figures"  # money on the overview; support sees counts only
    VIEW_MEMBERS = "view_members"
    VIEW_REVENUE = "view_revenue"
    VIEW_CHURN = "view_churn"
    VIEW_FAILED_PAYMENTS = "view_failed_payments"
    VIEW_AUDIT = "view_audit"
    VIEW_ALERTS = "view_alerts"
    VIEW_CHANGES = "view_changes"
    ADMIN = "admin"
    # actions (write side)
    ADD_NOTE = "add_note"
    CHANGE_MEMBERSHIP = "change_membership"  # extend, pause, cancel, reactivate, retry, contact
    CHANGE_TIER = "change_tier"
    REFUND = "refund"
    APPROVE_CHANGES = "approve_changes"
    MANAGE_ALERTS = "manage_alerts"
    EXPORT = "export"
    MANAGE_STAFF = "manage_staff"
    EDIT_SETTINGS = "edit_settings"
    RUN_SYNC = "run_sync"


_S, _F, _M, _A = Role.SUPPORT, Role.FINANCE, Role.MANAGER, Role.ADMIN

GRANTS: dict[Permission, frozenset[Role]] = {
    Permission.VIEW_OVERVIEW: frozenset({_S, _F, _M, _A}),
    Permission.VIEW_REVENUE_FIGURES: frozenset({_F, _M, _A}),
    Permission.VIEW_MEMBERS: frozenset({_S, _F, _M, _A}),  # finance refunds and changes tiers there
    Permission.VIEW_REVENUE: frozenset({_F, _M, _A}),
    Permission.VIEW_CHURN: frozenset({_F, _M, _A}),
    Permission.VIEW_FAILED_PAYMENTS: frozenset({_S, _M, _A}),
    Permission.VIEW_AUDIT: frozenset({_M, _A}),
    Permission.VIEW_ALERTS: frozenset({_M, _A}),
    Permission.VIEW_CHANGES: frozenset({_S, _F, _M, _A}),
    Permission.ADMIN: frozenset({_A}),
    Permission.ADD_NOTE: frozenset({_S, _M, _A}),
    Permission.CHANGE_MEMBERSHIP: frozenset({_S, _M, _A}),
    Permission.CHANGE_TIER: frozenset({_F, _M, _A}),
    Permission.REFUND: frozenset({_S, _F, _M, _A}),
    Permission.APPROVE_CHANGES: frozenset({_F, _M, _A}),
    Permission.MANAGE_ALERTS: frozenset({_M, _A}),
    Permission.EXPORT: frozenset({_S, _F, _M, _A}),
    Permission.MANAGE_STAFF: frozenset({_A}),
    Permission.EDIT_SETTINGS: frozenset({_A}),
    Permission.RUN_SYNC: frozenset({_A}),
}

_SENTENCES = {
    Permission.ADMIN: "Only admins can open this page.",
    Permission.MANAGE_STAFF: "Only admins can manage staff accounts.",
    Permission.EDIT_SETTINGS: "Only admins can change settings.",
    Permission.RUN_SYNC: "Only admins can run the Stripe sync.",
    Permission.MANAGE_ALERTS: "Only managers and admins can manage alerts.",
}


def parse_roles(roles: Iterable[str] | str | None) -> frozenset[Role]:
    if roles is None:
        return frozenset()
    if isinstance(roles, str):
        roles = roles.split(",")
    out = set()
    for r in roles:
        r = str(r).strip().lower()
        if r in Role.__members__.values() or r in {x.value for x in Role}:
            out.add(Role(r))
    return frozenset(out)


def allowed(roles: Iterable[str] | str | None, permission: Permission) -> bool:
    return bool(parse_roles(roles) & GRANTS[permission])


def require(roles: Iterable[str] | str | None, permission: Permission) -> None:
    if not allowed(roles, permission):
        raise PermissionDenied(refusal_sentence(permission))


# ---------------------------------------------------------------- the acting staff member

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
OPERATOR_ENV = "MEMBERDESK_OPERATOR"


@dataclass(frozen=True)
class Actor:
    """The staff member doing something: username for the audit log, roles for the check, and
    the account id when known (the safest way to tell two people apart).

    Usernames are compared in lower case everywhere (accounts are stored that way), so
    ``Manager`` and ``manager`` are the same person.
    """

    username: str
    roles: frozenset[str]
    staff_id: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "username", str(self.username or "").strip().lower())
        object.__setattr__(self, "roles", frozenset(r.value for r in parse_roles(self.roles)))

    @classmethod
    def of(cls, username: str, roles: Iterable[str] | str | None, staff_id: int | None = None) -> Actor:
        return cls(username=username, roles=frozenset(r.value for r in parse_roles(roles)), staff_id=staff_id)

    @classmethod
    def operator(cls, name: str | None = None) -> Actor:
        """The person at the command line. Whoever runs ``python -m cli`` holds the database
        credentials and the encryption keys, so the CLI acts with admin rights; what it does is
        recorded as ``cli:<name>``, the name from ``MEMBERDESK_OPERATOR`` or the login name."""
        who = (name or os.environ.get(OPERATOR_ENV) or _login_name()).strip().lower()
        return cls(username=f"cli:{who}"[:64], roles=frozenset({Role.ADMIN.value}))

    @classmethod
    def system(cls, name: str) -> Actor:
        """A process acting on its own (the demo loader, tests' setup): admin rights, named."""
        return cls(username=name, roles=frozenset({Role.ADMIN.value}))

    def can(self, permission: Permission) -> bool:
        return allowed(self.roles, permission)

    def is_same_person(self, username: str | None, staff_id: int | None = None) -> bool:
        if self.staff_id is not None and staff_id is not None:
            return self.staff_id == staff_id
        return self.username == str(username or "").strip().lower()


def _login_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (a container): still a named operator
        return "operator"


def refusal_sentence(permission: Permission) -> str:
    needed = ", ".join(sorted(r.value for r in GRANTS[permission]))
    return _SENTENCES.get(permission, f"Your role does not allow this (it needs one of: {needed}).")


def check(actor: Any, permission: Permission, *, bind: Any = None, where: str = "") -> None:
    """Raise ``PermissionDenied`` unless ``actor`` (an ``Actor``) has ``permission``; a refusal is
    audited through ``bind`` (an Engine, Session or Connection) in a transaction of its own."""
    if not isinstance(actor, Actor):
        raise TypeError("Core write functions take the acting staff member as core.permissions.Actor.")
    if actor.can(permission):
        return
    sentence = refusal_sentence(permission)
    record_refusal(bind, actor, permission, where)
    raise PermissionDenied(sentence)


def record_refusal(bind: Any, actor: Actor, permission: Permission, where: str) -> None:
    """One ``auth.permission_refused`` entry, committed on its own; never raises."""
    from sqlalchemy import Connection, Engine
    from sqlalchemy.orm import Session

    engine = bind
    if isinstance(bind, Session):
        engine = bind.get_bind()
    if isinstance(engine, Connection):
        engine = engine.engine
    if not isinstance(engine, Engine):
        log.warning("permission refused (not audited: no database): actor=%s permission=%s where=%s",
                    actor.username, permission.value, where)
        return
    from core import audit
    from core.db import session_scope

    try:
        with session_scope(engine) as s:
            audit.record(s, actor=actor.username or "?", action="auth.permission_refused", target_type="permission",
                         target_id=permission.value, comment=where[:500] or None, outcome="refused")
    except Exception:  # the refusal itself must still stand
        log.exception("could not record a permission refusal for %s", actor.username)


# Every guarded write, by qualified name (the test that walks core's write functions reads it).
GUARDED: dict[str, Permission | None] = {}


def guarded(permission: Permission | None) -> Callable[[F], F]:
    """Check ``permission`` for the function's ``actor`` argument before the body runs.

    ``None`` marks a function whose permission depends on its arguments: it calls ``check``
    itself, first thing (the write-function test still proves it refuses)."""

    def wrap(fn: F) -> F:
        sig = inspect.signature(fn)
        if "actor" not in sig.parameters:
            raise TypeError(f"{fn.__qualname__} must take the acting staff member as ``actor``.")
        name = f"{fn.__module__}.{fn.__name__}"
        GUARDED[name] = permission
        if permission is None:
            fn.__dict__["__guarded__"] = None  # a function attribute (mypy does not model those)
            return fn

        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            bound = sig.bind_partial(*args, **kwargs)
            bind = next((v for v in bound.arguments.values() if _is_bind(v)), None)
            check(bound.arguments.get("actor"), permission, bind=bind, where=name)
            return fn(*args, **kwargs)

        inner.__dict__["__guarded__"] = permission
        return cast(F, inner)  # functools.wraps keeps fn's signature

    return wrap


def _is_bind(value: Any) -> bool:
    from sqlalchemy import Connection, Engine
    from sqlalchemy.orm import Session

    return isinstance(value, Engine | Session | Connection)
