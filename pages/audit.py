"""Audit log (manager, admin): every recorded action, filtered by staff, member, action and date."""

from __future__ import annotations

from core.permissions import Permission
from dashboard import audit_view
from dashboard.auth import guard

ctx = guard(Permission.VIEW_AUDIT)
audit_view.render(ctx)
