"""The Members page's two views: the search with its result list, and one member's page.

The member page is selected by the query parameter ``?member=<id>`` so it deep-links (through the
sign-in too). Every time shown is in the business time zone; every table exports to CSV. The
action forms belong to the membership-change service (``dashboard.change_forms``); they appear
here when that module is installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import Any

import streamlit as st

from core import member_search as core_member_search
from core import members as core_members
from core.labels import code_label
from core.models.enums import SubscriptionStatus
from core.permissions import Actor, Permission, PermissionDenied
from dashboard import format as fmt
from dashboard import reads
from dashboard.audit_view import AUDIT_UNITS
from dashboard.auth import StaffContext, check
from dashboard.db import engine
from dashboard.text import md
from dashboard.widgets import definition, empty, error_box, records, safely

log = logging.getLogger(__name__)
MEMBERS_PAGE = "../pages/members.py"
SEARCH_HELP = ("Email (whole or its start), any word of the name or email (start of the word; case and accents "
               "do not matter: “fernandez” finds “Fernández”), member id, Stripe id (cus_…, sub_…, in_…, ch_…, "
               "pi_…, re_…), card last four, invoice or payment id (ours), invoice number. Best matches first.")
OFFSET_KEY = "member_search_offset"
LAST_QUERY_KEY = "member_search_last"
FROM_MEMBER_KEY = "member_page_shown"  # the member page ran last: the address may still name its member


def render_search(ctx: StaffContext) -> None:
    st.title("Members")
    # The widget's state is dropped while the member page is shown (it draws no search box), so
    # Back came to an empty search: the last query is kept under a key of its own and comes back.
    initial = st.query_params.get("q", "") or st.session_state.get(LAST_QUERY_KEY, "")
    if "member_search" not in st.session_state and initial:
        st.session_state["member_search"] = initial
    text = st.text_input("Find a member", key="member_search", placeholder="email, name, id, cus_…, last four, in_…",
                         help=SEARCH_HELP, max_chars=200, on_change=_first_page)
    st.session_state[LAST_QUERY_KEY] = text
    if st.session_state.pop(FROM_MEMBER_KEY, False):
        # Arriving from a member page, the address may still name that member: a page link to the
        # same page runs the script with its own parameters but leaves the address as it was, and
        # the next search then opened that member again. Written here, the address is the search's.
        st.query_params.from_dict({"q": text} if text else {})
    st.caption(SEARCH_HELP)  # text-safe: a constant
    if not text.strip():
        _recent()
        return
    page = safely("The search could not run; try again in a moment.", reads.search_members, text,
                  st.session_state.get(OFFSET_KEY, 0))
    if page is None:
        return
    if page.total == 0:
        empty(f"No member matches “{page.query}”. Check the spelling, or search by email or Stripe id.")
        return
    if page.rows.empty:  # paged past the end (the data changed meanwhile): back to the first page
        _first_page()
        st.rerun()
    st.write(md(_summary(page)))
    _pager(page)
    _links(page.rows.head(15))
    records(page.rows, "member-search", empty_sentence="No member matches.", key="csv-search")


def _summary(page: core_member_search.SearchPage) -> str:
    """The true total, where this page sits in it, and how to narrow a long list."""
    total = ("more than " if page.more_than else "") + fmt.count(page.total)
    one = page.total == 1 and not page.more_than
    said = f"{total} member{'' if one else 's'} match{'es' if one else ''} “{page.query}”"
    if page.total <= len(page.rows) and not page.more_than:
        return said + "."
    return (f"{said}: showing {fmt.count(page.first)}–{fmt.count(page.last)}, best matches first. "
            "Add a first name or more of the email to narrow it, or page through.")


def _first_page() -> None:
    st.session_state[OFFSET_KEY] = 0


def _move(step: int) -> None:
    st.session_state[OFFSET_KEY] = max(0, st.session_state.get(OFFSET_KEY, 0) + step)


def _pager(page: core_member_search.SearchPage) -> None:
    if page.total <= page.limit and not page.more_than:
        return
    back, forward, _ = st.columns([1, 1, 4])
    back.button(f"← Previous {page.limit}", key="search_prev",  # text-safe: a number disabled=page.offset == 0,
                on_click=_move, args=(-page.limit,))
    forward.button(f"Next {page.limit} →", key="search_next",  # text-safe: a number disabled=page.last >= page.total,
                   on_click=_move, args=(page.limit,))


def _links(results: Any, *, what: str | None = None) -> None:
    """One link a member, to the member page; ``what`` names a column to add (e.g. what changed)."""
    for row in results.itertuples(index=False):
        extra = f" · {md(getattr(row, what))}" if what else ""
        st.page_link(MEMBERS_PAGE, label=f"{md(row.name or '(no name)')} · {md(row.email)} · #{row.member_id:d} · "
                     f"{md(row.tier)} / {md(row.status.replace('_', ' '))}" + extra, icon="👤",  # text-safe: md()
                     query_params={"member": str(row.member_id)})


def _recent() -> None:
    """Before anything is typed: the members whose membership changed last, one click away."""
    recent = safely("The latest changes could not be read just now.", reads.recent_member_changes)
    if recent is None or recent.empty:
        empty("Type an email, a name or an id above to find a member.")
        return
    st.subheader("Latest membership changes")
    definition("The members whose membership changed most recently (sign-up, trial, upgrade, downgrade, "
               "cancellation, failed renewal), newest first, each member once.")
    _links(recent, what="matched_on")


# Stripe's pause_collection.behavior, said as what happens to the member's invoices meanwhile.
# Only "void" takes MRR to 0 (docs/metrics.md): the other two still bill, just not now.
PAUSE_WORDS = {"void": "its invoices are voided, and its MRR counts 0 meanwhile",
               "keep_as_draft": "its invoices wait as drafts; its MRR still counts",
               "mark_uncollectible": "its invoices are marked uncollectible; its MRR still counts"}


def _header(view: core_members.MemberView) -> None:
    st.title(f"👤 {md(view.name or view.email)}")
    # st.text renders no markdown at all: the e-mail and phone copy as they are (no word joiners)
    st.text(f"Member #{view.member_id} · {view.email} · country {view.country or '—'} · phone "
            f"{view.phone or '—'} · member since {fmt.day(view.created_at)} · times in {view.tz}")
    plan = code_label(view.tier, "tier") + (f" · {code_label(view.interval, 'interval')}" if view.interval else "")
    period = f"{fmt.day(view.period_start)} → {fmt.day(view.period_end)}" if view.period_end else "—"
    # A membership canceled at once kept Stripe's period (to next month) under "Current period",
    # after a preview that said it ended today.
    ended = view.status == "canceled" and view.ended_at is not None
    period_fact = (("Ended", fmt.day(view.ended_at), "When the membership ended; it no longer renews.") if ended else
                   ("Current period", period, "Start and end of the period paid for; the subscription renews at its end."))
    facts = [
        ("Status", fmt.status_label(view.status), "The Stripe status of the subscription that describes the member now."),
        ("Tier", plan, "Tier and billing interval of the current subscription; free = no paid subscription."),
        period_fact,
        ("MRR", fmt.money(view.mrr_minor, view.currency),
         "Monthly recurring revenue of this subscription in its own currency (yearly plans divided by 12, "
         "discounts applied; 0 while trialing or paused)."),
    ]
    for col, (title, value, help_text) in zip(st.columns(4), facts, strict=True):
        with col.container(border=True):
            st.markdown(f"<small>{md(title)}</small><br><b>{md(value)}</b>", unsafe_allow_html=True, help=help_text)
    # Stripe keeps cancel_at_period_end on a subscription that has since ended: only warn while it runs.
    if view.cancel_at_period_end and view.status not in SubscriptionStatus.ended():
        st.warning(f"This membership is set to cancel at the end of the period ({fmt.day(view.period_end)}).")
    if view.pause_behavior and view.status not in SubscriptionStatus.ended():
        until = (f" until {fmt.day(view.pause_resumes_at)}" if view.pause_resumes_at
                 else " until someone resumes it")
        st.info(f"Payment collection is paused{until}: "  # text-safe: constant words and a formatted day
                f"{PAUSE_WORDS.get(view.pause_behavior, 'its invoices are not collected')}.")


def _stripe_link(view: core_members.MemberView) -> None:
    url = core_members.stripe_dashboard_url(view.stripe_customer_id, test_mode=reads.stripe_test_mode())
    if url:
        st.link_button("Open the customer in Stripe ↗", url)
    else:
        st.caption("This member has no Stripe customer (a free member Stripe never saw).")


def _actions(ctx: StaffContext, member_id: int) -> None:
    if importlib.util.find_spec("dashboard.change_forms") is None:
        return
    try:
        forms = importlib.import_module("dashboard.change_forms")
        render = getattr(forms, "render_member_actions", None)
    except Exception:
        log.exception("the membership-change forms failed to load")
        error_box("The membership-change forms could not load; the rest of the page still works.")
        return
    if render is None:
        return
    try:
        render(ctx, member_id)
    except Exception as exc:
        if type(exc).__name__ in {"StopException", "RerunException"}:  # Streamlit control flow
            raise
        log.exception("the membership-change forms failed for member %s", member_id)
        error_box("The membership-change forms hit an error; nothing was changed. Reload the page and try again.")


def _notes(ctx: StaffContext, view: core_members.MemberView) -> None:
    records(view.notes, f"member-{view.member_id}-notes", key="csv-notes",
          empty_sentence="No staff notes yet.")
    if not ctx.can(Permission.ADD_NOTE):
        st.caption("Your role can read notes but not add them.")
        return
    from core.changes.guide import GUIDES, runbook_link

    guide = GUIDES["add_note"]
    st.caption(f"**In Stripe:** {guide.stripe}  \n**The member:** {guide.member}  \n"
               f"[Runbook: {guide.section}]({runbook_link('add_note')})")  # text-safe: our own guide text
    # Not cleared on submit: a second click while the first run was still drawing the page sent an
    # empty form, which stopped that run and answered "Write the note before saving it.", the note
    # lost. The text stays until it is saved (then emptied), and a repeat is saved once (core).
    with st.form("add_note"):
        body = st.text_area("Add a note", key="note_body", max_chars=core_members.NOTE_MAX_CHARS,
                            help="Visible to staff only, stored encrypted, recorded in the audit log.")
        submitted = st.form_submit_button("Save note")
    if submitted and check(ctx, Permission.ADD_NOTE, where=f"member {view.member_id}: add note"):
        try:
            core_members.add_note(engine(), actor=Actor.of(ctx.username, ctx.roles), member_id=view.member_id,
                                  body=body)
        except (core_members.MemberError, PermissionDenied) as exc:
            error_box(str(exc))
            return
        reads.clear_member(view.member_id)
        st.session_state["_md_note_saved"] = True
        st.rerun()


def render_member(ctx: StaffContext, raw_id: str) -> None:
    last = st.session_state.get(LAST_QUERY_KEY, "")
    st.page_link(MEMBERS_PAGE, label="Back to the search", icon="⬅️", query_params={"q": last} if last else {})
    try:
        member_id = int(str(raw_id).strip())
    except ValueError:
        error_box(f"“{raw_id}” is not a member id; member ids are whole numbers.")
        return
    try:
        view = reads.member(member_id)
    except Exception:
        log.exception("member %s could not be loaded", member_id)
        error_box("The member could not be loaded; try again in a moment.")
        return
    if view is None:
        empty(f"There is no member #{member_id}. Search for them by email or Stripe id instead.")
        return
    # Keep the browser's address a deep link to this member (a page link to the same page passes
    # its query parameters to the script but does not always write them into the address bar).
    st.query_params.from_dict({"member": str(member_id)})
    st.session_state[FROM_MEMBER_KEY] = True
    if st.session_state.pop("_md_note_saved", False):
        st.success("Note saved.")
        st.session_state["note_body"] = ""  # before the form is drawn: the saved text leaves the box
    _header(view)
    for sentence in safely("The member's changes in progress could not be read.", reads.member_in_flight,
                           member_id) or []:
        st.info(md(sentence))
    _stripe_link(view)
    tabs = st.tabs(["Payments", "Invoices", "Timeline", "Payment methods", "Refunds and disputes", "Notes",
                    "Audit", "Subscriptions"])
    prefix = f"member-{member_id}"
    with tabs[0]:
        definition("One row per payment attempt (a Stripe charge); a renewal retried three times shows three rows. "
                   "Decline codes come from the card issuer.")
        records(view.payments, f"{prefix}-payments", key="csv-payments",
              empty_sentence="No payment attempts yet.")
    with tabs[1]:
        records(view.invoices, f"{prefix}-invoices", key="csv-invoices",
              empty_sentence="No invoices yet.")
    with tabs[2]:
        definition("Every membership change, newest first, with the subscription's MRR before and after.")
        records(view.changes, f"{prefix}-timeline", key="csv-timeline",
              empty_sentence="No membership changes recorded.")
    with tabs[3]:
        definition("Only brand, last four and expiry are stored; card numbers never reach Memberdesk.")
        records(view.payment_methods, f"{prefix}-payment-methods", key="csv-pm",
              empty_sentence="No payment methods on file.")
    with tabs[4]:
        st.subheader("Refunds")
        records(view.refunds, f"{prefix}-refunds", key="csv-refunds", empty_sentence="No refunds.")
        st.subheader("Disputes")
        records(view.disputes, f"{prefix}-disputes", key="csv-disputes",
              empty_sentence="No disputes.")
    with tabs[5]:
        _notes(ctx, view)
    with tabs[6]:
        if not view.audit.empty:
            st.caption(AUDIT_UNITS)  # text-safe: a constant sentence of ours
        records(view.audit, f"{prefix}-audit", key="csv-member-audit",
              empty_sentence="No audit entries for this member.")
    with tabs[7]:
        records(view.subscriptions, f"{prefix}-subscriptions", key="csv-subs",
              empty_sentence="No subscriptions: a free member.")
    _actions(ctx, member_id)


def render(ctx: StaffContext) -> None:
    """The Members page: the member named by ``?member=<id>`` (a deep link), else the search."""
    selected = st.query_params.get("member")
    if selected:
        render_member(ctx, selected)
    else:
        render_search(ctx)
