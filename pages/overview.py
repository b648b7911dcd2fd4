"""Overview (every role): KPI cards with their change against the previous period, when the data
was last synced, and the plain counts (members by tier and status, MRR, payments this month).
Support sees counts only, no money."""

from __future__ import annotations

from core.permissions import Permission
from dashboard import overview_view
from dashboard.auth import guard

ctx = guard(Permission.VIEW_OVERVIEW)
overview_view.render(ctx)
