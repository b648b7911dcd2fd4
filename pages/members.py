"""Members: one search box, the result list, and the member page (``?member=<id>`` deep-links)."""

from __future__ import annotations

import streamlit as st

from core.permissions import Permission
from dashboard import member_page
from dashboard.auth import guard

ctx = guard(Permission.VIEW_MEMBERS)

selected = st.query_params.get("member")
if selected:
    member_page.render_member(ctx, selected)
else:
    member_page.render_search(ctx)
