"""Runbook (every role): how each membership change works, linked from each change form."""

from __future__ import annotations

from core.permissions import Permission
from dashboard import runbook_view
from dashboard.auth import guard

guard(Permission.VIEW_OVERVIEW)
runbook_view.render()
