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

from dashboard import signin  # noqa: E402
from dashboard.auth import current  # noqa: E402
from dashboard.heap import freeze_imports  # noqa: E402
from dashboard.navigation import build_pages, visited  # noqa: E402


def main() -> None:
    freeze_imports()
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
    visited(nav)
    signin.render_sidebar(ctx)
    nav.run()


main()
