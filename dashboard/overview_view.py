"""The Overview page's sections: KPI cards against the previous period, and the plain counts
from the database (members by tier and status, MRR by currency, payments this month).

Money is shown only to roles with VIEW_REVENUE_FIGURES (support sees counts). The KPI cards come
from the metrics registry (``core.metrics.page_bundle``) when it is installed; the counts below
them always come straight from the tables, so the page is real even on a fresh database.
"""

from __future__ import annotations

import logging

import pandas as pd
import streamlit as st

from core.permissions import Permission
from dashboard import format as fmt
from dashboard import kpis, reads
from dashboard.auth import StaffContext
from dashboard.text import md
from dashboard.widgets import definition, empty, records, safely, table

log = logging.getLogger(__name__)


def render_data_through() -> None:
    found = safely("The data freshness could not be read.", reads.data_through)
    if found is None:
        return
    moment, source = found
    if moment is None:
        st.caption("No data yet: the database has no payments and no Stripe sync has run.")
    else:
        st.caption(f"🕒 Data through **{fmt.when_in(moment, reads.business_tz())}** ({md(source)}).")


def _tier_status_pivot(frame: pd.DataFrame) -> pd.DataFrame:
    pivot = frame.pivot_table(index="tier", columns="status", values="members", aggfunc="sum", fill_value=0)
    pivot["total"] = pivot.sum(axis=1)
    pivot.loc["all tiers"] = pivot.sum(axis=0)
    return pivot.reset_index().rename(columns=lambda c: fmt.label(str(c)))


def render_counts(ctx: StaffContext) -> None:
    money_ok = ctx.can(Permission.VIEW_REVENUE_FIGURES)
    st.subheader("Members by tier and status")
    definition("Each member counted once, under the subscription that describes them now (a live one first, "
               "else the newest). Members who never subscribed are free / no membership.")
    frame = safely("The member counts could not be read.", reads.members_by_tier_status)
    if frame is not None:
        if frame.empty:
            empty("No members yet.")
        else:
            table(_tier_status_pivot(frame), "members-by-tier-and-status", empty_sentence="No members yet.",
                  key="csv-tier-status")

    # Payments has six columns to MRR's three: in halves its Refunded column was cut off at 1280 pixels.
    left, right = st.columns([2, 3])
    with left:
        st.subheader("MRR by currency" if money_ok else "Paying subscriptions by currency")
        definition("Monthly recurring revenue now: the sum of each active or past-due subscription's MRR "
                   "(yearly plans divided by 12, recurring discounts applied), in its own currency."
                   if money_ok else "Active or past-due subscriptions with a price above zero, per currency.")
        mrr = safely("MRR could not be read.", reads.mrr_by_currency)
        if mrr is not None:
            records(mrr if money_ok else mrr.drop(columns=["mrr_minor"]), "mrr-by-currency",
                    empty_sentence="No paying subscriptions yet.", key="csv-mrr")
    with right:
        found = safely("This month's payments could not be read.", reads.payments_this_month)
        if found is not None:
            first, payments = found
            st.subheader(f"Payments since {fmt.day(first)}")
            definition("Payment attempts this calendar month in the business time zone; a retried renewal counts "
                       "once per attempt (succeeded or failed; a pending one once it settles). Collected = succeeded "
                       "amounts; refunded = refunds made this month.")
            if not money_ok:
                payments = payments.drop(columns=["collected_minor", "refunded_minor"])
            records(payments, "payments-this-month", key="csv-payments-month",
                  empty_sentence="No payment attempts this month yet.")


def render(ctx: StaffContext) -> None:
    st.title("Overview")
    render_data_through()
    kpis.render_overview_kpis(ctx)
    render_counts(ctx)
