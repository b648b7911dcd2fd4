"""Members: one search box, the result list, and the member page (``?member=<id>`` deep-links)."""

from __future__ import annotations

from core.permissions import Permission
from dashboard import member_page
from dashboard.auth import guard

ctx = guard(Permission.VIEW_MEMBERS)
member_page.render(ctx)
