"""Admin (admins only): staff accounts and lockouts, business settings and FX rates, and the way to
the Stripe sync page."""

from __future__ import annotations

from core.permissions import Permission
from dashboard import admin_view
from dashboard.auth import guard

ctx = guard(Permission.ADMIN)
admin_view.render(ctx)
