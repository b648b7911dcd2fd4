"""Churn and retention (finance, manager, admin): member and MRR churn, voluntary against
involuntary, NRR and GRR, cohort retention, trial conversion and cancellation reasons
(``dashboard.churn_view``)."""

from __future__ import annotations

from core.permissions import Permission
from dashboard import churn_view
from dashboard.auth import guard

guard(Permission.VIEW_CHURN)
churn_view.render()
