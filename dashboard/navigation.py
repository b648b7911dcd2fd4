"""The fixed list of pages: file in the top-level ``pages/``, title, icon, and the permission
that opens it. A page is registered only if its file exists (so the app works while pages are
still being written). For a signed-in person, the pages their roles grant are listed; every other
page is registered hidden under its own URL, as a refusal: opening ``/admin`` as support says
which role the page needs and writes ``auth.permission_refused`` to the audit log, instead of
Streamlit's "Page not found" and a silent jump to the first page."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import streamlit as st

from core.permissions import GRANTS, Permission, allowed
from dashboard.auth import current, record_refusal
from dashboard.text import md

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


_REFUSED = "_md_refused_page"  # the forbidden page this session was last told about (audited once)


def build_pages(roles: tuple[str, ...] | None) -> list[st.Page]:
    """The pages whose file exists; with ``roles``, those the roles may open, then every other
    one as a hidden refusal page under the same URL."""
    pages, refusals = [], []
    specs = existing_specs()
    default = "overview.py" if any(s[0] == "overview.py" for s in specs) else None
    for file, title, icon, permission in specs:
        if roles is not None and not allowed(roles, permission):
            refusals.append(st.Page(partial(refuse, title, permission), title=title, icon=icon,
                                    url_path=file.removesuffix(".py"), visibility="hidden"))
            continue
        pages.append(st.Page(f"../pages/{file}", title=title, icon=icon, default=file == default))
    return pages + refusals if pages else pages


def needed_roles(permission: Permission) -> str:
    """``admin`` or ``manager or admin``: who may open a page."""
    roles = sorted(r.value for r in GRANTS[permission])
    return roles[0] if len(roles) == 1 else ", ".join(roles[:-1]) + " or " + roles[-1]


def refuse(title: str, permission: Permission) -> None:
    """What a forbidden URL shows: which role the page needs; the refusal goes to the audit log."""
    ctx = current()
    if ctx is None:
        return
    st.title(md(title))
    mine = ", ".join(ctx.roles) or "no role"
    st.error(f"The {md(title)} page needs the {md(needed_roles(permission))} role; you are signed in as "
             f"{md(ctx.username)} ({md(mine)}). Ask an admin if you need it.")
    if st.session_state.get(_REFUSED) != title:  # once per visit, not once per rerun
        st.session_state[_REFUSED] = title
        record_refusal(ctx, permission, f"page {title}")


def visited(page: st.Page) -> None:
    """Call with the page about to run: a later visit to a forbidden page is audited again."""
    if page.title != st.session_state.get(_REFUSED) or page.visibility != "hidden":
        st.session_state.pop(_REFUSED, None)

