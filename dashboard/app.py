"""Memberdesk's Streamlit entrypoint: ``streamlit run dashboard/app.py``.

The entrypoint lives in ``dashboard/`` and the pages in the top-level ``pages/`` on purpose:
Streamlit auto-serves a ``pages/`` folder beside the entrypoint without running the entrypoint
(a login bypass after every restart). Pages are registered as ``st.Page("../pages/<file>")``,
only if the file exists, and only those the signed-in person's roles allow are shown.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from core.permissions import Permission, allowed  # noqa: E402
from dashboard import signin  # noqa: E402
from dashboard.auth import current  # noqa: E402

PAGES_DIR = ROOT / "pages"

# file, title, icon, permission, default page
PAGE_SPECS: tuple[tuple[str, str, str, Permission], ...] = (
    ("overview.py", "Overview", "🏠", Permission.VIEW_OVERVIEW),
    ("members.py", "Members", "👤", Permission.VIEW_MEMBERS),
    ("revenue.py", "Revenue", "💰", Permission.VIEW_REVENUE),
    ("churn.py", "Churn and retention", "📉", Permission.VIEW_CHURN),
    ("failed_payments.py", "Failed payments", "⚠️", Permission.VIEW_FAILED_PAYMENTS),
    ("alerts.py", "Alerts", "🔔", Permission.VIEW_ALERTS),
    ("changes.py", "Changes", "📝", Permission.VIEW_CHANGES),
    ("audit.py", "Audit log", "📜", Permission.VIEW_AUDIT),
    ("admin.py", "Admin", "🛠️", Permission.ADMIN),
    ("stripe_sync.py", "Stripe sync", "🔄", Permission.RUN_SYNC),
)


def build_pages(roles: tuple[str, ...] | None) -> list[st.Page]:
    """The pages whose file exists; with ``roles``, only those the roles may open."""
    pages = []
    for file, title, icon, permission in PAGE_SPECS:
        if not (PAGES_DIR / file).exists():
            continue
        if roles is not None and not allowed(roles, permission):
            continue
        pages.append(st.Page(f"../pages/{file}", title=title, icon=icon, default=file == "overview.py"))
    return pages


def main() -> None:
    st.set_page_config(page_title="Memberdesk", page_icon="🗂️", layout="wide")
    signin.run_authentication()
    ctx = current()
    if ctx is None:
        # Logged out: register every page hidden (a deep link then keeps its URL instead of a
        # "page not found" dialog) and do not run any of them; show the sign-in form instead.
        st.navigation(build_pages(None), position="hidden")
        signin.render_login()
        return
    pages = build_pages(ctx.roles)
    if not pages:
        st.error("Your account has no role that can open any page; ask an admin.")
        signin.render_sidebar(ctx)
        return
    nav = st.navigation(pages)
    signin.render_sidebar(ctx)
    nav.run()


main()
