"""Membership-change forms on the member page, and the Membership changes page (queue, history).

Every form calls ``core.changes`` (which checks the role, the limits and the member's version, and
talks to Stripe): this module only collects what the agent typed, shows the preview, and shows
the answer as a sentence. The form carries the member's version from when it was loaded; a
change refused because the member changed meanwhile shows the fresh state.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from core import changes
from core.changes import queries
from core.changes.result import done_sentence
from core.money import decimals as money_decimals
from core.permissions import Permission
from dashboard import format as fmt
from dashboard import reads
from dashboard.auth import StaffContext
from dashboard.db import engine, stripe_client
from dashboard.text import md
from dashboard.widgets import error_box, flash, show_flash, table

log = logging.getLogger(__name__)
CONTROL_FLOW = {"StopException", "RerunException"}
T = TypeVar("T")


def _actor(ctx: StaffContext) -> changes.Actor:
    return changes.Actor.of(ctx.username, ctx.roles)


def _state_key(member_id: int) -> str:
    return f"_chg_{member_id}"


def _show_state(snapshot: dict[str, Any]) -> None:
    sub = snapshot.get("subscription") or {}
    st.markdown(
        f"**Current state** · version {md(snapshot.get('version'))} · status **{md(fmt.status_label(sub.get('status')))}**"
        f" · tier {md(sub.get('tier') or 'free')} · period end {md(str(sub.get('current_period_end') or '—')[:10])}"
        f" · cancel at period end {'yes' if sub.get('cancel_at_period_end') else 'no'}"
        f" · collection {'paused' if sub.get('pause_behavior') else 'on'}")


def _inputs(action: str, data: dict[str, Any], key: str, state: dict[str, Any] | None = None) -> dict[str, Any]:
    """The widgets of one action; returns the raw values (the service validates them)."""
    p: dict[str, Any] = {}
    current = data.get("current_price_id")
    if action == "change_price":
        # The member's own price is not a change: offered first, it was the form's default and
        # its Preview only answered "already on this price".
        options = {f"{r['name']} · {fmt.money(r['unit_amount'], r['currency'])}/{r['interval']}": r["id"]
                   for r in data["prices"] if r["id"] != current}
        choice = st.selectbox("New price", list(options) or ["(no other price)"], key=f"{key}-price")
        p["price_id"] = options.get(choice)
        p["when"] = st.radio("When", ["now", "period_end"], key=f"{key}-when", horizontal=True,
                             format_func=lambda w: "Now, prorated" if w == "now" else "Now, new price from the next renewal")
    elif action in ("extend", "grant_comp"):
        # No bounds here: a value outside a widget's bounds blocked the form in the browser with only a
        # tooltip, leaving the last run's message on screen; the service answers in a sentence.
        # Whole days (the widget drops a fraction); the preview names the days and the new end. No
        # help icon: its "Help for Days" button would share the field's accessible name.
        p["days"] = st.number_input("Days", value=7, step=1, key=f"{key}-days")
        if action == "grant_comp":
            tiers = {t["name"]: t["code"] for t in data["tiers"]}
            p["tier"] = tiers.get(st.selectbox("Tier", list(tiers) or ["(none)"], key=f"{key}-tier"))
    elif action == "pause":
        p["behavior"] = st.selectbox("While paused, invoices are", ["void", "keep_as_draft", "mark_uncollectible"],
                                     key=f"{key}-behavior", format_func=lambda b: b.replace("_", " "))
        resumes = st.date_input("Resume on (optional)", value=None, key=f"{key}-resumes", format="YYYY-MM-DD")
        p["resumes_at"] = resumes.isoformat() if resumes else None
    elif action == "cancel":
        p["when"] = st.radio("When", ["period_end", "now"], key=f"{key}-when", horizontal=True,
                             format_func=lambda w: "At the end of the period" if w == "period_end" else "Now")
    elif action == "reactivate":
        # The price the membership had comes first: coming back on it is the usual case.
        options = {f"{r['name']} · {fmt.money(r['unit_amount'], r['currency'])}/{r['interval']}": r["id"]
                   for r in sorted(data["prices"], key=lambda r: r["id"] != current)}
        p["price_id"] = options.get(st.selectbox("Price", list(options) or ["(none)"], key=f"{key}-price"))
    elif action == "refund":
        options = {f"#{r['id']} · {fmt.money(r['amount'], r['currency'])} on {fmt.day(r['created_at'])}"
                   f" (refunded {fmt.money(r['amount_refunded'], r['currency'])})": r for r in data["payments"]}
        chosen = options.get(st.selectbox("Payment", list(options) or ["(no refundable payment)"],
                                          key=f"{key}-payment"))
        p["payment_id"] = chosen["id"] if chosen else None
        p["full"] = st.checkbox("Refund everything that is left", key=f"{key}-full")
        if not p["full"]:
            # An example in the currency's own units: "e.g. 4.99" beside a yen payment asked for decimals
            # that the refund then refused.
            whole = chosen is not None and money_decimals(chosen["currency"]) == 0
            p["amount"] = st.text_input(f"Amount ({chosen['currency'] if chosen else ''})", key=f"{key}-amount",
                                        placeholder="e.g. 500" if whole else "e.g. 4.99")
        if chosen:
            p["currency"] = chosen["currency"]
        repeat = (state or {}).get("repeat")
        # The service refused a refund like a recent one; going ahead needs this explicit tick.
        if repeat and chosen and repeat.get("payment_id") == chosen["id"] and st.checkbox(
                f"Yes, refund again: this is a second refund besides request #{repeat['request_id']}",
                key=f"{key}-repeat-{repeat['request_id']}"):  # text-safe: a request number
            p["repeat_of"] = repeat["request_id"]
    elif action == "retry_invoice":
        options = {f"#{r['id']} · {fmt.money(r['amount_remaining'], r['currency'])} due since "
                   f"{fmt.day(r['created_at'])}": r["id"] for r in data["invoices"]}
        p["invoice_id"] = options.get(st.selectbox("Open invoice", list(options) or ["(no open invoice)"],
                                                   key=f"{key}-invoice"))
    elif action == "edit_contact":
        c = data["contact"]
        p["email"] = st.text_input("Email", value=c["email"], key=f"{key}-email")
        p["name"] = st.text_input("Name", value=c["name"] or "", key=f"{key}-name")
        p["phone"] = st.text_input("Phone", value=c["phone"] or "", key=f"{key}-phone")
        # Every field of a new address at once (city, postal code and country appeared only after a
        # Preview, and a first line alone was sent to Stripe as the whole address).
        st.caption("A new address (leave all four empty to keep the present one):")
        line1 = st.text_input("Address line 1", key=f"{key}-line1")
        cols = st.columns(3)
        address = {"line1": line1, "city": cols[0].text_input("City", key=f"{key}-city"),
                   "postal_code": cols[1].text_input("Postal code", key=f"{key}-zip"),
                   "country": cols[2].text_input("Country (2 letters)", key=f"{key}-country")}
        if any(v.strip() for v in address.values()):
            p["address"] = address
    return p


def _show_guide(action: str) -> None:
    """Training in place: what this does in Stripe and for the member, and where to read more."""
    from core.changes.guide import GUIDES, runbook_link

    guide = GUIDES.get(action)
    if guide is None:
        return
    st.caption(f"**In Stripe:** {guide.stripe}  \n**The member:** {guide.member}  \n"
               f"[Runbook: {guide.section}]({runbook_link(action)})")  # text-safe: our own guide text


def _show_preview(preview: changes.Preview) -> None:
    lines = list(preview.summary)
    if preview.amount_minor is not None and preview.currency:
        word = {"refund": "Refunded", "credit": "Credited", "charge": "Charged now"}.get(preview.amount_kind or "",
                                                                                        "Amount")
        lines.append(f"{word}: **{fmt.money(preview.amount_minor, preview.currency)}**")
    if preview.new_period_end is not None:
        lines.append(f"New period end: **{fmt.day(preview.new_period_end)}**")
    if preview.mrr_change_minor is not None and preview.currency:
        lines.append(f"MRR: {fmt.money(preview.mrr_before_minor, preview.currency)} → "
                     f"{fmt.money(preview.mrr_after_minor, preview.currency)} "
                     f"({fmt.money(preview.mrr_change_minor, preview.currency, signed=True)})")
    if preview.needs_approval:
        lines.append(f"⚠️ Needs a second person's approval: {preview.approval_reason}.")
    st.info("\n\n".join(lines))  # text-safe: each line escapes its strings where it is built


def render_member_actions(ctx: StaffContext, member_id: int) -> None:
    """The "Make a change" section of the member page."""
    data = queries.form_data(engine(), member_id, ctx.roles)
    if data is None:
        return
    last = st.session_state.get("_chg_last_member")
    if last != member_id:
        # Opening a member (again) loads the form afresh: the version is the one on screen now.
        if last is not None:
            st.session_state.pop(_state_key(last), None)
        st.session_state.pop(_state_key(member_id), None)
        st.session_state["_chg_last_member"] = member_id
    state = st.session_state.setdefault(_state_key(member_id), {"version": data["version"]})
    st.subheader("Make a change")
    if not data["actions"]:
        st.caption("Your role cannot change this membership.")
        return
    if state.get("message"):
        st.success(md(state.pop("message")))
    if state.get("notice"):
        st.warning(md(state.pop("notice")))
    if state.get("stale"):
        st.warning(md(state.pop("stale")))
        _show_state(data["snapshot"])
    if state.get("repeat"):
        st.warning("⚠️ " + md(state["repeat"]["sentence"]))
    gone = state.get("pending")
    if gone is not None and gone.action not in data["actions"]:
        # Previewed here, then made impossible elsewhere (another tab paused the member): the
        # action left the list, and its Confirm only reset the form without a word.
        state.pop("pending", None)
        state["version"] = data["version"]
        st.warning(f"This member changed after you previewed “{md(changes.ACTIONS[gone.action].title)}”: it is no "
                   "longer possible, and nothing was changed.")
        _show_state(data["snapshot"])
    titles = {a: changes.ACTIONS[a].title for a in data["actions"]}
    # The actions offered change with the member (a cancel offers Reactivate), and a select box
    # whose choices change starts again at the first: after "Done. Refund a payment…" the box said
    # "Grant a complimentary membership". The last action chosen stays chosen while it is offered.
    last = state.get("action")
    action = st.selectbox("Action", list(titles), format_func=lambda a: titles[a], key=f"chg-{member_id}-action",
                          index=list(titles).index(last) if last in titles else 0)
    state["action"] = action
    # The form's generation is part of every widget key: after "Done." it moves on and the browser
    # draws new, empty widgets (deleting the old keys alone leaves the typed values on screen).
    key = f"chg-{member_id}-{action}" + (f"-g{state['generation']}" if state.get("generation") else "")
    _show_guide(action)
    with st.form(key):
        params = _inputs(action, data, key, state)
        reasons = queries.reasons_for(action)
        reason_labels = dict(reasons)
        reason = st.selectbox("Reason", [r for r, _ in reasons], format_func=lambda r: reason_labels[r],
                              key=f"{key}-reason")
        # No max_chars (a longer paste was dropped whole, without a word); the service says "too long".
        comment = st.text_area("Comment (required)", key=f"{key}-comment", placeholder="Up to 2,000 characters")
        asked = st.form_submit_button("Preview")
        # The preview and the buttons that act on it, inside the form: Confirm sends the fields too,
        # so it can tell whether they are still the ones previewed.
        below = st.container()
    change = changes.ChangeInput(action=action, member_id=member_id, member_version=int(state["version"]),
                                 reason=reason, comment=comment, params=params)
    if asked:
        refused = _preview(ctx, member_id, change)
        if refused is not None:
            if refused:
                error_box(refused)
            return
    pending, preview = state.get("pending"), state.get("preview")
    if pending is None or pending.action != action:
        return
    with below:
        shown = st.container()
        cols = st.columns(2)
        # A change that waits for a second person is sent, not made: "Confirm change" read as if it
        # would happen now, beside the preview's "Needs a second person's approval".
        confirm = cols[0].form_submit_button("Send for approval" if preview.needs_approval else "Confirm change",
                                             type="primary", key=f"{key}-confirm")
        discard = cols[1].form_submit_button("Cancel", key=f"{key}-discard")
    if discard:
        state.pop("pending", None)
        st.rerun()
    if confirm and change != state.get("previewed"):
        # Confirm used to make the change previewed whatever the fields said by then: a price chosen
        # after the preview was not the one applied. A changed form is previewed again instead.
        state.pop("pending", None)
        refused = _preview(ctx, member_id, change)
        state["notice"] = (CHANGED_SINCE_PREVIEW if refused is None
                           else f"The form changed after its preview, so nothing was changed. {refused}")
        st.rerun()
    with shown:
        _show_preview(preview)
    if confirm:
        _confirm(ctx, member_id, pending)


CHANGED_SINCE_PREVIEW = ("The form changed after its preview, so nothing was changed: below is the preview of what "
                         "it says now. Confirm makes this one.")


def _preview(ctx: StaffContext, member_id: int, change: changes.ChangeInput) -> str | None:
    """Preview ``change`` and keep it as the one Confirm makes. None when previewed; else why not:
    the service's sentence, or "" when the page was answered already (a stale member, a repeat)."""
    state = st.session_state[_state_key(member_id)]
    try:
        preview = _answer(member_id, change,
                          lambda: changes.preview(engine(), change, _actor(ctx), stripe=stripe_client()))
    except changes.ChangeRefused as exc:
        return str(exc)
    if preview is None:
        return ""
    # The confirmation carries what the preview pinned, so Stripe charges what was shown.
    state["pending"] = dataclasses.replace(change, params={**change.params, **preview.pinned})
    state["preview"] = preview
    state["previewed"] = change  # the fields as previewed, which Confirm's must match
    return None


def _answer(member_id: int, change: changes.ChangeInput, call: Callable[[], T]) -> T | None:
    """``call()`` (a preview or a submit); a form loaded before the member changed, or a refund like
    a recent one, is answered here with the fresh state or the question (a rerun; None)."""
    try:
        return call()
    except changes.StaleMember as exc:
        _stale(member_id, exc)
    except changes.RepeatSuspected as exc:
        _repeat(member_id, change, exc)
    return None


def _repeat(member_id: int, change: changes.ChangeInput, exc: changes.RepeatSuspected) -> None:
    """Show which earlier refund this one looks like, and offer the tick that confirms it."""
    state = st.session_state[_state_key(member_id)]
    state.pop("pending", None)
    state["repeat"] = {"request_id": exc.earlier["request_id"], "sentence": str(exc),
                       "payment_id": change.params.get("payment_id")}
    st.rerun()


def _reset_form(member_id: int, action: str) -> None:
    """After "Done." the form starts empty, so a second Preview + Confirm cannot repeat it by accident."""
    prefix = f"chg-{member_id}-{action}-"
    for name in [k for k in st.session_state if isinstance(k, str) and k.startswith(prefix)]:
        del st.session_state[name]
    state = st.session_state[_state_key(member_id)]
    state.pop("repeat", None)
    state["generation"] = int(state.get("generation") or 0) + 1


def _stale(member_id: int, exc: changes.StaleMember) -> None:
    state = st.session_state[_state_key(member_id)]
    state["version"] = exc.fresh_version
    state.pop("pending", None)
    state["stale"] = str(exc)
    reads.clear_member(member_id)
    st.rerun()


def _confirm(ctx: StaffContext, member_id: int, change: changes.ChangeInput) -> None:
    state = st.session_state[_state_key(member_id)]

    def submit() -> changes.Outcome:
        with st.spinner("Applying the change (Stripe first, then our records)…"):
            return changes.submit(engine(), change, _actor(ctx), stripe=stripe_client())

    try:
        outcome = _answer(member_id, change, submit)
    except changes.ChangeRefused as exc:
        if exc.code == "stripe_refused":
            # Stripe said no after the request was claimed: the next attempt is a new request.
            state.pop("pending", None)
            state["version"] = _fresh_version(ctx, member_id, change.member_version)
            reads.clear_member(member_id)
        error_box(str(exc))
        return
    if outcome is None:
        return
    state.pop("pending", None)
    state["version"] = _fresh_version(ctx, member_id, change.member_version)
    reads.clear_member(member_id)
    if outcome.status in ("failed", "rejected"):
        error_box(outcome.message)
        return
    state["message"] = _said_done(outcome, change.action, state.get("preview"))
    _reset_form(member_id, change.action)
    st.rerun()


def _said_done(outcome: changes.Outcome, action: str, preview: changes.Preview | None) -> str:
    """"Done." names what was done, so an agent with several forms open (or back after a call)
    reads which change went through, not only that one did."""
    if outcome.status != "applied":
        return outcome.message
    # A second press of Confirm finds the change made: it says so, and still what was done (the
    # amount charged), which the first press's "Done." would have said.
    title = changes.ACTIONS[action].title
    what = " ".join(preview.summary) if preview is not None and preview.action == action else ""
    answered = done_sentence(action, (outcome.result or {}).get("detail"))
    return f"{outcome.message} {title}" + (f": {what}" if what else ".") + (f" {answered}" if answered else "")


def _fresh_version(ctx: StaffContext, member_id: int, fallback: int) -> int:
    data = queries.form_data(engine(), member_id, ctx.roles)
    return int(data["version"]) if data else fallback




# ----------------------------------------------------------------------------- the changes page

CHANGES_FLASH = "changes_page_flash"


def render_changes_page(ctx: StaffContext) -> None:
    st.title("Membership changes")
    st.caption("Every manual change made from a member page: waiting for approval, interrupted, and done. "
               "Refunds above the approval amount wait here until a second person approves or rejects them.")
    show_flash(CHANGES_FLASH)
    seen = queries.overview(engine())
    pending, stuck, history, limits = seen.pending, seen.interrupted, seen.history, seen.limits.describe()
    _decided_elsewhere(pending, history)
    st.subheader("Waiting for approval")
    table(_display(pending), "changes-pending", empty_sentence="Nothing waits for approval.", key="csv-pending",
          export=functools.partial(fmt.export_frame, pending))
    if not pending.empty and ctx.can(Permission.APPROVE_CHANGES):
        _decide_form(ctx, pending)
    elif not pending.empty:
        st.caption("Your role cannot approve changes; a finance, manager or admin colleague will.")
    mine = pending[pending["requested_by"] == ctx.username] if not pending.empty else pending
    if not mine.empty:
        _withdraw_form(ctx, mine)
    if not stuck.empty:
        st.subheader("Interrupted (being applied)")
        st.caption("Stripe did not answer or the app stopped between Stripe and our records. Resume asks Stripe "
                   "what happened and finishes the change exactly once.")
        table(_display(stuck), "changes-interrupted", empty_sentence="", key="csv-stuck",
              export=functools.partial(fmt.export_frame, stuck))
        if ctx.can(Permission.CHANGE_MEMBERSHIP):
            rid = st.selectbox("Request", stuck["request_id"].tolist(), key="chg-resume-id")
            if st.button("Resume", key="chg-resume"):
                _run(lambda: changes.resume(engine(), int(rid), _actor(ctx), stripe=stripe_client()))
    st.subheader("History")
    table(_display(history), "membership-changes", empty_sentence="No manual change has been made yet.",
          key="csv-history", export=functools.partial(fmt.export_frame, history))
    with st.expander("Limits per role (set by admins)"):
        for line in limits:
            st.write(f"- {md(line)}")
        if ctx.can(Permission.EDIT_SETTINGS):
            _limits_form(ctx)


def _limits_form(ctx: StaffContext) -> None:
    from core.changes.limits import from_form
    from core.money import SUPPORTED_CURRENCIES, to_major

    current = queries.current_limits(engine())
    with st.form("chg-limits"):
        st.markdown("**Change the limits** (amounts in major units, e.g. 50 or 50.00)")
        cols = st.columns(2)
        days = {"support": cols[0].number_input("Support: most free days", 0, 3650,
                                                int(current.extend_max_days.get("support") or 0)),
                "manager": cols[1].number_input("Manager: most free days", 0, 3650,
                                                int(current.extend_max_days.get("manager") or 0))}
        caps, approval = {}, {}
        support_caps = current.refund_max.get("support") or {}
        for cur in SUPPORTED_CURRENCIES:
            c1, c2 = st.columns(2)
            caps[cur] = c1.text_input(f"Support: most refunded per payment and per member a day ({cur})",
                                      str(to_major(support_caps.get(cur, 0), cur)))
            approval[cur] = c2.text_input(f"Approval needed above ({cur})",
                                          str(to_major(current.approval_refund_above.get(cur, 0), cur)))
        window = st.number_input("Refund window: hours of a member's earlier refunds that count", 0, 24 * 31,
                                 int(current.refund_window_hours))
        saved = st.form_submit_button("Save limits")
    if saved:
        try:
            new = from_form(current, extend_days=days, support_refund_major=caps, approval_major=approval,
                            refund_window_hours=window)
            changes.save_limits(engine(), actor=_actor(ctx), limits=new)
        except (changes.ChangeRefused, PermissionError) as exc:
            error_box(str(exc))
            return
        st.success("Limits saved; they apply to the next change.")


def _display(frame: Any) -> Any:
    if frame.empty:
        return frame
    out = frame.copy()
    out["amount"] = [fmt.money(a, c) if c else "—" for a, c in zip(out["amount_minor"], out["currency"], strict=True)]
    out = out.drop(columns=["amount_minor", "currency"])
    for col in ("requested_at", "decided_at", "applied_at"):
        out[col] = [fmt.when(v) if v is not None else "—" for v in out[col]]
    out["status"] = [fmt.status_label(v) for v in out["status"]]
    return out.rename(columns={c: fmt.label(c) for c in out.columns})


DECIDING_KEY = "changes_page_deciding"  # the request this session's decision form showed last


def _decided_elsewhere(pending: Any, history: Any) -> None:
    """The request this page offered to decide was decided meanwhile by someone else (another tab,
    a colleague): say by whom and how. Approve there answered only "Nothing waits for approval."."""
    rid = st.session_state.get(DECIDING_KEY)
    if rid is None or int(rid) in {int(r) for r in pending["request_id"]}:
        return
    st.session_state.pop(DECIDING_KEY, None)
    done = history[history["request_id"] == int(rid)]
    if done.empty:
        return
    row = done.iloc[0]
    who = f" by {md(row['decided_by'])}" if row["decided_by"] else ""
    st.info(f"Request {int(rid)} was decided{who} a moment ago ({md(fmt.status_label(row['status']))}); "  # text-safe: md()
            "nothing was done twice.")


def _decide_form(ctx: StaffContext, pending: Any) -> None:
    labels = {int(r["request_id"]): queries.request_label(r) for r in pending.to_dict("records")}
    summaries = {int(r["request_id"]): r["summary"] for r in pending.to_dict("records")}
    rid = st.selectbox("Request to decide", list(labels), format_func=lambda r: labels[r], key="chg-decide-id")
    st.session_state[DECIDING_KEY] = int(rid)
    st.info(f"**{md(labels[int(rid)])}**\n\n{md(summaries.get(int(rid)) or '')}\n\nApprove and apply re-checks the request "
            "against the member's current state and then makes it in Stripe at once (for a refund: the money goes "
            "back to the member's card and Stripe e-mails them a receipt if receipts are on). Reject changes "
            "nothing. [Runbook: limits and approvals](/runbook#limits-and-approvals)")
    with st.form("chg-decide"):
        note = st.text_area("Note for your decision (required)", key="chg-decide-note",
                            placeholder="Up to 2,000 characters")
        cols = st.columns(2)
        approve = cols[0].form_submit_button("Approve and apply", type="primary")
        reject = cols[1].form_submit_button("Reject")
    if approve or reject:
        _run(lambda: changes.decide(engine(), int(rid), _actor(ctx), approve=bool(approve), note=note,
                                    stripe=stripe_client()))


def _withdraw_form(ctx: StaffContext, mine: Any) -> None:
    """The requester takes back a request of their own that waits (it waited for someone else's
    Reject, and meanwhile blocked another refund of the same payment)."""
    labels = {int(r["request_id"]): queries.request_label(r) for r in mine.to_dict("records")}
    with st.form("chg-withdraw"):
        st.markdown("**Withdraw a request of yours**")
        rid = st.selectbox("Your request", list(labels), format_func=lambda r: labels[r], key="chg-withdraw-id")
        note = st.text_input("Why (required)", key="chg-withdraw-note", placeholder="Up to 2,000 characters")
        withdraw = st.form_submit_button("Withdraw")
    if withdraw:
        _run(lambda: changes.withdraw(engine(), int(rid), _actor(ctx), note=note))


def _run(fn: Any) -> None:
    """Decide or resume a request; the outcome is shown above the page drawn again, so the request
    leaves the lists at once (they were drawn before the decision, and "Done." sat under a list
    that still offered it)."""
    try:
        outcome = fn()
    except changes.ChangeRefused as exc:
        error_box(str(exc))
        return
    reads.clear_all()
    st.session_state.pop(DECIDING_KEY, None)  # decided here: the outcome says so
    flash(CHANGES_FLASH, outcome.message)
    st.rerun()
