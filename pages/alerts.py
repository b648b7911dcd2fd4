"""Alerts (managers, admins): open alerts by severity with their value, baseline, chart and rows;
acknowledge, snooze or resolve; the history and the rules (``dashboard.alerts_view``)."""

from __future__ import annotations

from core.permissions import Permission
from dashboard import alerts_view
from dashboard.auth import guard

ctx = guard(Permission.VIEW_ALERTS)
alerts_view.render(ctx)
