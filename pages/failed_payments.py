"""Failed payments (support, manager, admin): failure and recovery rates, why payments fail, the
past-due worklist and cards expiring before renewal (``dashboard.failed_payments_view``)."""

from __future__ import annotations

from core.permissions import Permission
from dashboard import failed_payments_view
from dashboard.auth import guard

ctx = guard(Permission.VIEW_FAILED_PAYMENTS)
failed_payments_view.render(ctx)
