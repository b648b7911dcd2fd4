"""Revenue (finance, manager, admin): MRR and ARR over time, the MRR movements, the cash chain,
revenue by segment, ARPU and LTV (``dashboard.revenue_view``)."""

from __future__ import annotations

from core.permissions import Permission
from dashboard import revenue_view
from dashboard.auth import guard

guard(Permission.VIEW_REVENUE)
revenue_view.render()
