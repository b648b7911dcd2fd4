"""The Audit log page: filters (staff, member, action, dates in the business time zone), the
entries newest first, and a CSV export of exactly what is shown."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from core.audit.query import AuditQueryError
from core.labels import action_label
from core.timeutil import utc_now, zone
from dashboard import format as fmt
from dashboard import reads
from dashboard.auth import StaffContext
from dashboard.text import md
from dashboard.widgets import definition, error_box, records, safely

ALL = "(everyone)"
AUDIT_UNITS = ("What changed writes amounts as money; before and after are the records as the audit log keeps "
               "them: amounts in the currency's smallest unit (cents; yen are whole yen), beside their currency.")
ANY = "(any action)"


def render(ctx: StaffContext) -> None:
    st.title("Audit log")
    definition("Every sign-in, sign-out, refusal and change staff made, who did it, why, what changed, and the whole "
               "record before and after. The log is append-only: nobody can edit or delete an entry.")
    facets = safely("The filter lists could not be read.", reads.audit_facets) or ([], [])
    actors, actions = facets
    tz = reads.business_tz()
    today = utc_now().astimezone(zone(tz)).date()
    member_default = st.query_params.get("member", "")
    with st.form("audit_filters"):
        c1, c2, c3 = st.columns(3)
        actor = c1.selectbox("Staff", [ALL, *actors], key="audit_actor")
        action = c2.selectbox("Action", [ANY, *actions], key="audit_action",
                              format_func=lambda a: a if a == ANY else f"{action_label(a)} ({a})",
                              help="Each action in words, then as stored (area.verb, e.g. change.refund or "
                                   "auth.login_failed).")
        member_text = c3.text_input("Member id", value=member_default, key="audit_member", max_chars=18)
        d1, d2 = st.columns(2)
        start = d1.date_input("From", value=today - timedelta(days=30), key="audit_from", format="YYYY-MM-DD")
        end = d2.date_input("To (inclusive)", value=today, key="audit_to", format="YYYY-MM-DD")
        st.form_submit_button("Apply filters")
    member_id = None
    member_text = member_text.strip().removeprefix("#").strip()  # "#1212", as the pages write an id
    if member_text:
        if not member_text.isdigit():
            error_box(f"“{member_text}” is not a member id; member ids are whole numbers.")
            return
        member_id = int(member_text)
    try:
        page = reads.audit_entries(actor=None if actor == ALL else actor, member_id=member_id,
                                   action=None if action == ANY else action, start=start, end=end)
    except AuditQueryError as exc:
        error_box(str(exc))
        return
    except Exception:
        error_box("The audit log could not be read; try again in a moment.")
        return
    st.caption(f"{fmt.count(len(page.rows))} entr{'y' if len(page.rows) == 1 else 'ies'} · times in {md(tz)}"
               + (" · only the newest shown: narrow the filters to see older ones." if page.truncated else "")
               + f" · {AUDIT_UNITS}")  # text-safe: a constant sentence of ours
    records(page.rows, "audit-log", key="csv-audit",
          empty_sentence="No audit entries match these filters.")
