"""``AppTest`` runs of the dashboard for tests: the entrypoint signed in as a demo account, one page
module run on its own, and what a person reads on the result.

- ``app_test(database_url, role=...)``: an ``AppTest`` of ``dashboard/app.py`` signed in as that
  demo account (session state seeded; the account must exist in the database).
- ``page_app_test(database_url, page_file, role=...)``: one page without the entrypoint.
- ``texts(at)``: everything a person reads on the page, as one string.
"""

from __future__ import annotations

from typing import Any

from tests.support.servers import ROOT, secrets_for

APP = str(ROOT / "dashboard" / "app.py")


def app_test(database_url: str, *, role: str | None = None, username: str | None = None,
             roles: list[str] | None = None, clear_cache: bool = True) -> Any:
    """An AppTest of the entrypoint; signed in as ``username`` (default: the demo account of
    ``role``) when a role or username is given. Caches are cleared unless ``clear_cache=False``
    (the function-scoped PostgreSQL databases of one worker share one URL)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from core.metrics import kept

    if clear_cache:
        st.cache_data.clear()
        kept.forget()
    at = AppTest.from_file(APP, default_timeout=15)
    for section, values in secrets_for(database_url).items():
        at.secrets[section] = values
    if role or username:
        user = str(username or role)
        at.session_state["authentication_status"] = True
        at.session_state["username"] = user
        at.session_state["name"] = user.title()
        at.session_state["roles"] = roles or [role]
        at.session_state["logout"] = None
        at.session_state["_md_session"] = open_session(database_url, user)
    return at


def open_session(database_url: str, username: str) -> str:
    """A live server-side session for ``username`` (what a sign-in opens); returns its token.
    The entrypoint signs out any session whose token is not live, seeded ones included."""
    from datetime import timedelta

    from core import staff_sessions
    from core.db import make_engine, session_scope

    eng = make_engine(database_url)
    try:
        with session_scope(eng) as s:
            return staff_sessions.start(s, username, lifetime=timedelta(minutes=30))
    finally:
        eng.dispose()


def page_app_test(database_url: str, page_file: str, *, role: str, clear_cache: bool = True) -> Any:
    """An AppTest of one page module run directly (without the entrypoint): what a bypass would
    reach, so the page's own guard must refuse."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from core.metrics import kept

    if clear_cache:
        st.cache_data.clear()
        kept.forget()
    at = AppTest.from_file(str(ROOT / "pages" / page_file), default_timeout=15)
    for section, values in secrets_for(database_url).items():
        at.secrets[section] = values
    at.session_state["authentication_status"] = True
    at.session_state["username"] = role
    at.session_state["name"] = role.title()
    at.session_state["roles"] = [role]
    return at


def texts(at: Any) -> str:
    """Everything a person reads on an AppTest page, as one string (for `in` assertions): the
    markdown with the escapes of ``dashboard.text.md`` taken out, as a browser shows it."""
    from dashboard.text import shown

    parts: list[str] = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "text", "info", "warning", "error",
                 "success", "metric"):
        for el in getattr(at, kind, []):
            value = getattr(el, "value", "")
            parts.append(shown(str(value)))
            if kind == "metric":
                parts.append(shown(str(getattr(el, "label", ""))))
    return "\n".join(parts)
