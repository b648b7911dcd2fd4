"""The demo sign-in accounts, one per role, created with the demo world (never in production)."""

from __future__ import annotations

DEMO_ACCOUNTS: tuple[tuple[str, str, str, str], ...] = (
    # username, name, roles, password
    ("support", "Sam Support", "support", "support-demo-pass"),
    ("finance", "Fran Finance", "finance", "finance-demo-pass"),
    ("manager", "Max Manager", "manager", "manager-demo-pass"),
    ("admin", "Ada Admin", "admin", "admin-demo-pass"),
)
