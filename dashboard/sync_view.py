"""The Stripe sync page (admins): freshness, recent runs, "Sync now" with progress, failing events,
reconciliation per month or per member, and resyncing one member.

Every table and sentence comes from ``core.sync.staff_actions``; Stripe is reached only through
the client ``dashboard.db`` builds. The page's guide is docs/stripe-sync.md, shown in the app by
the runbook page (``dashboard.runbook_view``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import streamlit as st
from sqlalchemy import Engine

from core.labels import SYNC_RUN_KIND, SYNC_RUN_STATUS, code_label
from core.permissions import Actor
from core.stripe_gateway import GatewayError
from core.sync import staff_actions as actions
from core.sync import status
from core.sync.status import SyncStatus
from core.timeutil import utc_now
from dashboard import format as fmt
from dashboard.auth import StaffContext
from dashboard.db import engine, stripe_client
from dashboard.runbook_view import doc_link
from dashboard.text import md
from dashboard.widgets import flash, show_flash, table

FLASH = "stripe_sync_flash"


def render(ctx: StaffContext) -> None:
    eng = engine()
    st.title("Stripe sync")
    st.caption(f"How the sync works and what each part of this page means: "  # text-safe: links of our own
               f"[Stripe sync guide]({doc_link('stripe-sync', 'The admin page (Stripe sync)')}); when the data "
               f"looks wrong: [Runbook]({doc_link('runbook', 'When something looks wrong')}).")
    show_flash(FLASH)
    snapshot = _status(eng)
    _sync_now(eng, ctx)
    st.subheader("Freshness by object type")
    table(in_words(actions.freshness_table(snapshot)), "sync-freshness", key="csv-freshness",
          empty_sentence="Nothing has been synced yet. Press Sync now: the first run backfills every object type, "
                         "then follows Stripe's events.")
    st.subheader("Recent runs")
    table(in_words(actions.runs_table(snapshot)), "sync-runs", key="csv-runs", empty_sentence="No sync has run yet.")
    failing = actions.failing_events_table(eng)
    if failing:
        st.subheader("Events that failed (retried on the next run)")
        table(in_words(failing), "sync-failing-events", key="csv-failing", empty_sentence="No event is failing.")
    _reconcile(eng)
    _member(eng, ctx)


def in_words(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sync's tables with stored codes in words and headers capitalised (``kind`` ``full`` ->
    ``Kind`` ``Full backfill``; ``object type`` ``invoice`` -> ``Object type`` ``Invoice``)."""
    words: dict[str, Callable[[str], str | None]] = {"kind": SYNC_RUN_KIND.get, "status": SYNC_RUN_STATUS.get,
             "object type": lambda v: code_label(v) or None, "backfill": lambda v: str(v).capitalize()}
    out = []
    for row in rows:
        shown = {}
        for key, value in row.items():
            if isinstance(value, datetime):  # as every table says a time ("+00:00" read as a code)
                value = fmt.when(value.astimezone(UTC), with_zone=True)
            label = words.get(key)
            text = label(value) if label and isinstance(value, str) else None
            shown[key[:1].upper() + key[1:]] = value if text is None else text
        out.append(shown)
    return out


def _short_time(at: datetime | None) -> str:
    """A quarter-width card's time: today's as its hour, an older one as its day ("2026-12-0..."
    was all the card showed of a whole time)."""
    if at is None:
        return "None yet"
    at = at.astimezone(UTC)
    return f"{at:%H:%M} UTC" if at.date() == utc_now().date() else f"{at:%Y-%m-%d}"


def _status(eng: Engine) -> SyncStatus:
    snapshot = status(eng, now=utc_now())
    st.caption(md(actions.data_through_sentence(snapshot, utc_now())))
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Last run", md(SYNC_RUN_STATUS.get(snapshot.last_run.status, snapshot.last_run.status))
              if snapshot.last_run else "Never")
    c2.metric("Newest event", _short_time(snapshot.newest_event_at))
    c3.metric("Events waiting", snapshot.events.get("pending", 0))
    c4.metric("Events failing", snapshot.events.get("failing", 0))
    if snapshot.running_holder:
        st.info(f"A sync is running now ({md(snapshot.running_holder)}).")
    elif snapshot.backfill_in_progress:  # (while a run goes, the backfill is that run's, not interrupted)
        st.warning("A backfill was interrupted; the next run resumes it.")
    if snapshot.last_run and snapshot.last_run.status == "failed" and snapshot.last_run.error:
        st.error(md(snapshot.last_run.error))
    return snapshot


def _client() -> Any:
    client = stripe_client()
    if client is None:
        st.error("No Stripe API key is configured: set STRIPE_API_KEY or api_key under [stripe] in "
                 ".streamlit/secrets.toml.")
    return client


def _sync_now(eng: Engine, ctx: StaffContext) -> None:
    st.subheader("Sync now")
    with st.form("sync_now"):
        full = st.checkbox("Full backfill (every object, slower)", value=False)
        start = st.form_submit_button("Sync now")
    if start and (client := _client()) is not None:
        with st.status("Syncing with Stripe ...", expanded=True) as box:
            result = actions.sync_now(eng, client, actor=Actor.of(ctx.username, ctx.roles), full=full,
                                      progress=box.write)
            box.update(label=result.message, state="complete" if result.ok else "error")
        # Show the outcome above a page redrawn with the new status.
        flash(FLASH, result.message, ok=result.ok)
        st.rerun()


def _reconcile(eng: Engine) -> None:
    st.subheader("Reconciliation")
    with st.form("reconcile"):
        month = st.text_input("Month (YYYY-MM, empty for all)", value="")
        go = st.form_submit_button("Compare with Stripe")
    if not go or (client := _client()) is None:
        return
    try:
        rows = actions.reconcile_table(eng, client, month=month.strip() or None)
    except (ValueError, GatewayError) as exc:
        st.error(md(getattr(exc, "sentence", None) or str(exc)))
        return
    bad = sum(1 for r in rows if not r["agrees"])
    (st.success if not bad else st.warning)(
        f"{len(rows) - bad} of {len(rows)} groups agree with Stripe." if rows else "Nothing to compare.")
    table(in_words(rows), "reconciliation", key="csv-reconcile", empty_sentence="Nothing to compare.")


def _member(eng: Engine, ctx: StaffContext) -> None:
    st.subheader("One member")
    with st.form("member"):
        member_id = st.number_input("Member id", min_value=1, step=1, value=None)
        compare = st.form_submit_button("Compare with Stripe")
        resync = st.form_submit_button("Resync from Stripe")
    if not (compare or resync):
        return
    if member_id is None:
        st.error("Enter a member id.")
        return
    if (client := _client()) is None:
        return
    try:
        if resync:
            result = actions.resync_member_now(eng, client, actor=Actor.of(ctx.username, ctx.roles),
                                               member_id=int(member_id))
            (st.success if result.ok else st.error)(md(result.message))
        diffs = actions.member_diff_table(eng, client, int(member_id))
    except (ValueError, GatewayError) as exc:
        st.error(md(getattr(exc, "sentence", None) or str(exc)))
        return
    if diffs:
        st.warning(f"{len(diffs)} difference(s) between our rows and Stripe.")
        table(in_words(diffs), "member-differences", key="csv-member-diff", empty_sentence="No difference.")
    else:
        st.success("This member agrees with Stripe.")
