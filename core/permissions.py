"""Who may do what. Every page and every action asks here, in ``core/``; hiding a page in the
navigation is a convenience, not the check.

``require(roles, permission)`` raises ``PermissionDenied`` (a sentence) when none of the roles
grants the permission. Limits that depend on amounts (refund ceilings, extension days) live with
the membership-change service and are configured by admins.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

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
    Permission.VIEW_MEMBERS: frozenset({_S, _M, _A}),
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
        needed = ", ".join(sorted(r.value for r in GRANTS[permission]))
        raise PermissionDenied(
            _SENTENCES.get(permission, f"Your role does not allow this (it needs one of: {needed}).")
        )
