"""Membership changes: the approval queue, interrupted changes to resume, and the history."""

from __future__ import annotations

from core.permissions import Permission
from dashboard import change_forms
from dashboard.auth import guard

ctx = guard(Permission.VIEW_CHANGES)
change_forms.render_changes_page(ctx)
