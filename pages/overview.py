"""Overview: the business at a glance (every role)."""

from __future__ import annotations

import streamlit as st

from core.permissions import Permission
from dashboard.auth import guard

ctx = guard(Permission.VIEW_OVERVIEW)
st.title("Overview")
st.write(f"Welcome, {ctx.name}.")
