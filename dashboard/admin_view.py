"""The Admin page: staff accounts (create, roles, disable/enable, reset password, unlock, with the
lockouts shown), business settings (time zone, reporting currency, FX rates, grace days, week
start) and the way to the Stripe sync page.

Every action re-checks its permission in core (MANAGE_STAFF, EDIT_SETTINGS), runs in one
transaction with its audit entry, and answers with one sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import streamlit as st
from sqlalchemy import Engine

from core import staff
from core.models.enums import Role
from core.money import SUPPORTED_CURRENCIES
from core.permissions import Actor, Permission, PermissionDenied
from core.settings import business as business_settings
from core.settings.business import BusinessSettingsError
from core.timeutil import WEEKDAYS
from dashboard import format as fmt
from dashboard import reads, signin
from dashboard.auth import StaffContext, check
from dashboard.db import engine
from dashboard.widgets import definition, error_box, flash, safely, show_flash, table

log = logging.getLogger(__name__)
ROLES = [r.value for r in Role]
_FLASH = "_md_admin_flash"
COMMON_ZONES = ["UTC", "Europe/London", "Europe/Berlin", "Europe/Paris", "America/New_York", "America/Chicago",
                "America/Los_Angeles", "Asia/Tokyo", "Australia/Sydney"]


# How long a past-due subscription counts in MRR (business settings): the first means no grace days.
UNTIL_OR_GRACE = ["Until Stripe ends them", "For grace days"]

def _run(ctx: StaffContext, permission: Permission, where: str, done: str, fn: Callable[[Engine], Any], *,
         afresh: str | None = None) -> None:
    """One admin action: a core call that checks the permission and owns its transaction; a
    sentence either way. A refusal is shown where the person acted, and the outcome of their
    previous action goes (a green "Rate for EUR saved." above a red refusal read as if both
    held). ``afresh``: the session key of a form's generation, moved on once its action is done so
    the form is drawn empty under new keys (a refused form keeps what was typed, to correct)."""
    if not check(ctx, permission, where=where):
        return
    try:
        fn(engine())
    except (staff.StaffError, BusinessSettingsError, PermissionDenied) as exc:
        _refused(str(exc))
        return
    except Exception:
        log.exception("admin action failed: %s", where)
        _refused("That change could not be saved; nothing was changed. Try again in a moment.")
        return
    signin.clear_account_cache()
    reads.clear_all()
    if afresh is not None:
        st.session_state[afresh] = int(st.session_state.get(afresh) or 0) + 1
    flash(_FLASH, done)
    st.rerun()


def _refused(sentence: str) -> None:
    st.session_state.pop(_FLASH, None)  # drawn at the end of the run (``render``): it is not shown
    error_box(sentence)


def _staff_section(ctx: StaffContext) -> None:
    st.subheader("Staff accounts")
    definition("Failed sign-ins are counted by address, shared by every session: 5 within 15 minutes from one "
               "address pause the account's sign-ins from that address for 15 minutes (its owner can still sign "
               "in from elsewhere); 20 from any addresses, or 5 from an address the server cannot see, lock the "
               "account for 15 minutes. Unlock lifts both. Disabled accounts cannot sign in and are signed out "
               "within seconds.")
    accounts = safely("The staff accounts could not be read.", reads.staff_accounts)
    if accounts is None:
        return
    table(fmt.display_frame(accounts), "staff-accounts", key="csv-staff", empty_sentence="No staff accounts yet.")
    usernames = list(accounts["username"])
    create, change = st.columns(2)
    # Not cleared on submit: a refused account (a short password) kept nothing, and pressing again
    # said "A username has 2 to 64 characters". A created one starts the form afresh under new keys.
    g = int(st.session_state.get(_CREATE_GENERATION) or 0)
    with create, st.form("staff_create"):
        st.markdown("**Create an account**")
        username = st.text_input("Username", max_chars=64, key=f"staff_new_username{g}")
        name = st.text_input("Full name", max_chars=120, key=f"staff_new_name{g}")
        email = st.text_input("E-mail", max_chars=320, key=f"staff_new_email{g}")
        roles = st.multiselect("Roles", ROLES, key=f"staff_new_roles{g}")
        password = st.text_input("First password", type="password", max_chars=staff.MAX_PASSWORD_BYTES,
                                 help=f"At least {staff.MIN_PASSWORD} characters; the person should change it.",
                                 key=f"staff_new_password{g}")
        if st.form_submit_button("Create account"):
            _run(ctx, Permission.MANAGE_STAFF, "admin: create staff", f"Account {username.strip().lower()} created.",
                 lambda e: staff.add_account(e, actor=Actor.of(ctx.username, ctx.roles), username=username, name=name, email=email,
                                             roles=roles, password=password), afresh=_CREATE_GENERATION)
    with change:
        if not usernames:
            return
        who = st.selectbox("Account", usernames, key="staff_pick")
        row = accounts[accounts["username"] == who].iloc[0]
        with st.form("staff_roles"):
            current = [r.strip() for r in str(row["roles"]).split(",") if r.strip()]
            new_roles = st.multiselect("Roles", ROLES, default=[r for r in current if r in ROLES])
            if st.form_submit_button("Save roles"):
                _run(ctx, Permission.MANAGE_STAFF, f"admin: roles of {who}", f"Roles of {who} saved.",
                     lambda e: staff.change_roles(e, actor=Actor.of(ctx.username, ctx.roles), username=who, roles=new_roles))
        with st.form("staff_password", clear_on_submit=True):
            new_password = st.text_input("New password", type="password", max_chars=staff.MAX_PASSWORD_BYTES)
            if st.form_submit_button("Reset password (also unlocks)"):
                _run(ctx, Permission.MANAGE_STAFF, f"admin: reset password of {who}", f"Password of {who} reset.",
                     lambda e: staff.change_password(e, actor=Actor.of(ctx.username, ctx.roles), username=who, password=new_password))
        b1, b2 = st.columns(2)
        if who == ctx.username:
            # Refused in core as well (core.staff.set_active): an admin cannot lock themselves out.
            b1.caption("This is your own account: another admin can disable it.")
        elif bool(row["active"]):
            if b1.button("Disable account", key="staff_disable"):
                _run(ctx, Permission.MANAGE_STAFF, f"admin: disable {who}", f"{who} is disabled.",
                     lambda e: staff.change_active(e, actor=Actor.of(ctx.username, ctx.roles), username=who, active=False))
        elif b1.button("Enable account", key="staff_enable"):
            _run(ctx, Permission.MANAGE_STAFF, f"admin: enable {who}", f"{who} is enabled.",
                 lambda e: staff.change_active(e, actor=Actor.of(ctx.username, ctx.roles), username=who, active=True))
        if row["locked_until"] is not None and b2.button("Unlock", key="staff_unlock"):
            _run(ctx, Permission.MANAGE_STAFF, f"admin: unlock {who}", f"{who} is unlocked.",
                 lambda e: staff.unlock_account(e, actor=Actor.of(ctx.username, ctx.roles), username=who))


def _settings_section(ctx: StaffContext) -> None:
    st.subheader("Business settings")
    definition("These shape every number: periods and dates follow the time zone and week start; money in the "
               "reporting currency converts through the monthly FX table; past-due members keep counting in MRR "
               "for the grace days. Changes are audited and apply everywhere at once.")
    bs = reads.business()
    zones = COMMON_ZONES if bs.business_timezone in COMMON_ZONES else [bs.business_timezone, *COMMON_ZONES]
    with st.form("business_settings"):
        c1, c2, c3, c4 = st.columns(4)
        tz = c1.selectbox("Time zone", zones, index=zones.index(bs.business_timezone), accept_new_options=True,
                          help="An IANA name such as Europe/Berlin.")
        currency = c2.selectbox("Reporting currency", list(SUPPORTED_CURRENCIES),
                                index=list(SUPPORTED_CURRENCIES).index(bs.reporting_currency)
                                if bs.reporting_currency in SUPPORTED_CURRENCIES else 0)
        # A choice, then the days: the field said 0 for "none", where a person reads 0 as "lost at
        # once", and no grace at all (0) could not be chosen.
        until_ended = c3.selectbox("Past-due members count in MRR", UNTIL_OR_GRACE,
                                   index=0 if bs.past_due_grace_days is None else 1,
                                   help="Until Stripe ends them (canceled or unpaid), or for a number of grace "
                                        "days after they fell past due (0: not at all).") == UNTIL_OR_GRACE[0]
        grace = c3.number_input("Grace days (when counted for grace days)", min_value=0, max_value=365, step=1,
                                value=7 if bs.past_due_grace_days is None else int(bs.past_due_grace_days))
        week = c4.selectbox("Week starts on", list(WEEKDAYS), index=list(WEEKDAYS).index(bs.week_start),
                            format_func=str.capitalize)
        reason = st.text_input("Why (kept in the audit log)", max_chars=200)
        if st.form_submit_button("Save settings"):
            changes = {"business_timezone": tz, "reporting_currency": currency,
                       "past_due_grace_days": None if until_ended else int(grace), "week_start": week}
            _run(ctx, Permission.EDIT_SETTINGS, "admin: business settings", "Business settings saved.",
                 lambda e: business_settings.save(e, actor=Actor.of(ctx.username, ctx.roles), reason=reason.strip() or None, **changes))
    st.markdown("**FX rates** (US dollars per one unit, per month)")
    rates = safely("The FX rates could not be read.", reads.fx_rates)
    if rates is not None:
        table(fmt.display_frame(rates), "fx-rates", key="csv-fx", height=240,
              empty_sentence="No FX rates yet: reporting in one currency needs a rate per month.")
    # Not cleared on submit: a refused rate stays in the form to be corrected (or its move
    # confirmed). A saved one starts the form afresh under new keys: deleting the widgets' state
    # left the browser showing the rate and the ticked "Confirm a move", so the next typo (12.2
    # for 1.22) was saved unchecked.
    g = int(st.session_state.get(_FX_GENERATION) or 0)
    with st.form("fx_rate"):
        c1, c2, c3 = st.columns(3)
        code = c1.selectbox("Currency", [c for c in SUPPORTED_CURRENCIES if c != "USD"], key=f"fx_currency{g}")
        month = c2.date_input("Month", value=date.today().replace(day=1), format="YYYY-MM-DD", key=f"fx_month{g}",
                              help="Any day of the month; the rate applies to the whole month.")
        rate = c3.text_input("USD per unit", placeholder="1.0850", key=f"fx_rate_text{g}",
                             help="Digits and a decimal point, such as 1.0850.")
        move = st.checkbox(f"Confirm a move of more than {business_settings.MAX_MOVE:.0%} from the nearest known rate",
                           key=f"fx_confirm_move{g}",
                           help="A rate that far from the one before is most often a typo (116 for 1.16); tick "
                                "this only when the rate really moved that much.")
        if st.form_submit_button("Save rate"):
            _run(ctx, Permission.EDIT_SETTINGS, "admin: FX rate", f"Rate for {code} saved.",
                 lambda e: business_settings.save_rate(e, actor=Actor.of(ctx.username, ctx.roles), currency=code, month=month,
                                                       usd_per_unit=rate, confirm_move=move),
                 afresh=_FX_GENERATION)


_FX_GENERATION = "admin_fx_form"
_CREATE_GENERATION = "admin_create_form"


def render(ctx: StaffContext) -> None:
    st.title("Admin")
    # The last action's outcome, above the page; filled at the end of the run, once the forms have
    # run, so a refusal in this run has already dropped the previous "saved".
    outcome = st.empty()
    if (Path(__file__).resolve().parent.parent / "pages" / "stripe_sync.py").exists():
        st.page_link("../pages/stripe_sync.py", label="Stripe sync: status and Sync now", icon="🔄")
    else:
        st.caption("The Stripe sync page is not installed yet; `python -m cli sync` runs a sync from the shell.")
    # The open tab is kept in the session (a key, with state tracked): a save reruns the page and
    # the person stays on the tab they used. Untracked tabs were identified by their place on the
    # page, and the sentence drawn above them after a save moved them, so the browser took them for
    # new tabs and opened the first. Only the open tab is drawn, as ``analytics_ui.open_tab`` does.
    staff_tab, settings_tab = st.tabs(["Staff accounts", "Business settings"], key="admin_tabs", on_change="rerun")
    if staff_tab.open:
        with staff_tab:
            _staff_section(ctx)
    if settings_tab.open:
        with settings_tab:
            _settings_section(ctx)
    with outcome.container():
        show_flash(_FLASH)
