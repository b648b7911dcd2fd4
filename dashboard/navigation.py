"""The fixed list of pages: file in the top-level ``pages/``, title, icon, and the permission
that opens it. A page is registered only if its file exists (so the app works while pages are
still being written) and, for a signed-in person, only if their roles grant its permission."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.permissions import Permission, allowed

ROOT = Path(__file__).resolve().parent.parent
PAGES_DIR = ROOT / "pages"

# file, title, icon (emoji: a :material: icon makes the browser fetch a web font), permission
PAGE_SPECS: tuple[tuple[str, str, str, Permission], ...] = (
    ("overview.py", "Overview", "🏠", Permission.VIEW_OVERVIEW),
    ("members.py", "Members", "👤", Permission.VIEW_MEMBERS),
    ("revenue.py", "Revenue", "💰", Permission.VIEW_REVENUE),
    ("churn.py", "Churn and retention", "📉", Permission.VIEW_CHURN),
    ("failed_payments.py", "Failed payments", "⚠️", Permission.VIEW_FAILED_PAYMENTS),
    ("alerts.py", "Alerts", "🔔", Permission.VIEW_ALERTS),
    ("changes.py", "Membership changes", "📝", Permission.VIEW_CHANGES),
    ("audit.py", "Audit log", "📜", Permission.VIEW_AUDIT),
    ("admin.py", "Admin", "🛠️", Permission.ADMIN),
    ("stripe_sync.py", "Stripe sync", "🔄", Permission.RUN_SYNC),
    ("runbook.py", "Runbook", "📖", Permission.VIEW_OVERVIEW),
)


def existing_specs() -> list[tuple[str, str, str, Permission]]:
    return [spec for spec in PAGE_SPECS if (PAGES_DIR / spec[0]).exists()]


def build_pages(roles: tuple[str, ...] | None) -> list[st.Page]:
    """The pages whose file exists; with ``roles``, only those the roles may open."""
    pages = []
    specs = existing_specs()
    default = "overview.py" if any(s[0] == "overview.py" for s in specs) else None
    for file, title, icon, permission in specs:
        if roles is not None and not allowed(roles, permission):
            continue
        pages.append(st.Page(f"../pages/{file}", title=title, icon=icon, default=file == default))
    return pages
