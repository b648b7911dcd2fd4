"""Alerts (managers, admins): open alerts first, by severity, each with its value against the
baseline, a small chart of the recent history, the hint, and the payments and members behind it;
acknowledge, snooze or resolve with a note (MANAGE_ALERTS); the searchable history; the rules.

Opening the page evaluates the rules when the last evaluation is older than five minutes.
Thin by rule: data and every number come from ``core.alerts``; formatting from ``dashboard``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from core import alerts
from core.labels import scope_label
from core.permissions import Actor, Permission
from dashboard import charts, widgets
from dashboard import format as fmt
from dashboard.auth import guard
from dashboard.db import engine, settings
from dashboard.text import md

ctx = guard(Permission.VIEW_ALERTS)
can_manage = ctx.can(Permission.MANAGE_ALERTS)
eng = engine()
SEVERITY_BADGE = {"critical": "🟥 critical", "high": "🟧 high", "medium": "🟨 medium", "low": "⬜ low"}
DETAILED = 10  # Streamlit runs collapsed expanders too: draw charts and rows for the first ten only
STATUS_BADGE = {"open": "open", "acknowledged": "acknowledged", "snoozed": "snoozed", "resolved": "resolved"}

st.title("Alerts")
with st.spinner("Checking the alert rules …"):
    ran = widgets.safely("The alert rules could not be evaluated just now; the list shows the last results.",
                         alerts.evaluate_if_stale, eng, smtp_url=settings().smtp_url)
last = alerts.last_evaluated_at(eng)
st.caption(f"Rules last evaluated {fmt.when(last)} UTC" + (" (just now)." if ran else ".")
           + " Cron runs `python -m cli alerts evaluate`; this page re-evaluates when that is over five minutes old.")


@st.cache_data(ttl=300, show_spinner=False)
def _series(_engine: Any, url: str, alert_id: int, fired: datetime | None) -> list[dict[str, Any]]:
    return alerts.history_series(_engine, alert_id)


@st.cache_data(ttl=300, show_spinner=False)
def _rows(_engine: Any, url: str, alert_id: int, fired: datetime | None) -> dict[str, list[dict[str, Any]]]:
    return alerts.affected_rows(_engine, alert_id)


def _chart(a: dict[str, Any]) -> None:
    series = _series(eng, str(eng.url), a["id"], a["last_fired_at"])
    if not series or a["unit"] not in ("percent", "money", "count"):
        return
    points = [charts.Point(key=p["window_end"].isoformat(), label=fmt.when(p["window_end"]), value=p["value"],
                           series="Value") for p in series]
    if a["baseline"] is not None:
        points += [charts.Point(key=p["window_end"].isoformat(), label=fmt.when(p["window_end"]),
                                value=a["baseline"], series="Baseline now") for p in series]
    st.plotly_chart(charts.line(points, unit=a["unit"], currency=a["currency"], height=220,
                                title="Recent history (one point per window)"), key=f"alert-chart-{a['id']}",
                    width="stretch")


def _affected(a: dict[str, Any]) -> None:
    rows = _rows(eng, str(eng.url), a["id"], a["last_fired_at"])
    if not rows:
        return
    tabs = st.tabs([md(name.capitalize()) for name in rows])
    for tab, (name, items) in zip(tabs, rows.items(), strict=True):
        with tab:
            if not items:
                widgets.empty(f"No {name} behind this alert in its window.")
                continue
            raw = pd.DataFrame(items)
            money = [c for c in ("amount", "mrr_minor") if c in raw.columns]
            shown = fmt.display_frame(raw, money_columns=money)
            member_ids = raw["id"] if name == "members" else raw.get("member_id")
            config: dict[str, Any] = {}
            if member_ids is not None:
                shown.insert(0, "Member page", [f"members?member={m}" for m in member_ids])
                config["Member page"] = st.column_config.LinkColumn(
                    "Member page", display_text=r"members\?member=(\d+)", help="Opens the member page")
            st.dataframe(shown, hide_index=True, width="stretch", column_config=config or None, height=220)
            widgets.csv_download(raw, f"alert-{a['id']}-{name}", key=f"csv-alert-{a['id']}-{name}")


def _actions(a: dict[str, Any]) -> None:
    if not can_manage:
        return
    with st.form(key=f"alert-form-{a['id']}", clear_on_submit=True):
        note = st.text_input("Note (required to snooze or resolve)", key=f"alert-note-{a['id']}", max_chars=2000)
        hours = st.number_input("Snooze for hours", min_value=1, max_value=720, value=4, step=1,
                                key=f"alert-hours-{a['id']}")
        left, mid, right = st.columns(3)
        # A snoozed alert is silenced on purpose: it is not acknowledged again, only snoozed longer or resolved.
        ack = left.form_submit_button("Acknowledge", disabled=a["status"] in ("acknowledged", "snoozed"))
        snz = mid.form_submit_button("Snooze")
        res = right.form_submit_button("Resolve", type="primary")
    if not (ack or snz or res):
        return
    try:
        if ack:
            alerts.acknowledge(eng, a["id"], actor=Actor.of(ctx.username, ctx.roles), note=note)
        elif snz:
            alerts.snooze(eng, a["id"], actor=Actor.of(ctx.username, ctx.roles), hours=hours, note=note)
        else:
            alerts.resolve(eng, a["id"], actor=Actor.of(ctx.username, ctx.roles), note=note)
    except (alerts.AlertError, PermissionError) as exc:
        st.error(md(exc))
        return
    st.session_state["alerts_flash"] = f"Alert {a['id']} {'acknowledged' if ack else 'snoozed' if snz else 'resolved'}."
    st.rerun()


if flash := st.session_state.pop("alerts_flash", None):
    st.success(md(flash))

tab_active, tab_snoozed, tab_history, tab_rules = st.tabs(["Open alerts", "Snoozed", "History", "Rules"])


def _card(a: dict[str, Any], i: int) -> None:
    title = (f"{md(SEVERITY_BADGE.get(a['severity'], a['severity']))} · {md(a['title'])} · "
             f"{md(scope_label(a['scope']))} · {md(STATUS_BADGE.get(a['status'], a['status']))}")
    with st.expander(title, expanded=i < 3):  # text-safe: built from md() just above
        c1, c2 = st.columns(2)
        c1.metric("Value", md(a["value_text"]))
        c2.metric("Baseline", md(a["baseline_text"]))
        # Times as a line, not metric cards: a card cuts "2026-11-27 15:00" off at a quarter width.
        st.caption(f"Opened {fmt.when(a['opened_at'])} UTC · last fired {fmt.when(a['last_fired_at'])} UTC")
        st.markdown(f"**Why:** {md(a['hint'])}")
        if a["status"] == "snoozed":
            st.caption(f"Snoozed until {fmt.when(a['snoozed_until'])} UTC: it comes back under Open alerts then "
                       "if its condition still holds.")
        if a["cleared_since"]:
            st.caption(f"Clear since {fmt.when(a['cleared_since'])} UTC; it resolves itself if it stays clear.")
        if i < DETAILED:
            _chart(a)
            _affected(a)
        else:
            st.caption(f"Chart and rows are drawn for the first {DETAILED:,} alerts; resolve or snooze those first.")
        _actions(a)


with tab_active:
    active = alerts.list_alerts(eng, status=["open", "acknowledged"], limit=50)
    if not active:
        latest = alerts.latest_resolved(eng)
        widgets.empty("No open alerts: every rule is within its baseline." + (
            f" The latest, “{latest['title']}” ({scope_label(latest['scope'])}), fired {fmt.when(latest['last_fired_at'])} "
            f"UTC and was resolved {fmt.when(latest['resolved_at'])} UTC: see History." if latest else ""))
    for i, a in enumerate(active):
        _card(a, i)

with tab_snoozed:
    snoozed = alerts.list_alerts(eng, status=["snoozed"], limit=50)
    if not snoozed:
        widgets.empty("No alert is snoozed.")
    for i, a in enumerate(snoozed):
        _card(a, i)

with tab_history:
    left, right = st.columns([3, 1])
    text = left.text_input("Search rule, scope, hint or notes", key="alerts_search")
    status = right.selectbox("Status", ["all", *alerts.STATUSES], key="alerts_status")
    history = alerts.list_alerts(eng, search=text or None, status=None if status == "all" else status, limit=500)
    frame = pd.DataFrame([{k: (scope_label(r[k]) if k == "scope" else r["title"] if k == "rule" else r[k])
                           for k in ("id", "status", "severity", "rule", "scope", "value_text", "baseline_text",
                                     "opened_at", "last_fired_at", "resolved_at", "hint")}
                          for r in history])
    widgets.table(fmt.display_frame(frame, rename={"Value text": "Value", "Baseline text": "Baseline"})
                  if not frame.empty else frame, "alerts-history", empty_sentence="No alert matches.",
                  key="csv-alerts-history")
    picked = st.number_input("Show the story of alert number", min_value=0, value=0, step=1, key="alerts_story")
    if picked:
        detail = alerts.alert_detail(eng, int(picked))
        if detail is None:
            widgets.empty(f"There is no alert number {int(picked)}.")
        else:
            st.markdown(f"**{md(detail['title'])} · {md(scope_label(detail['scope']))}** — {md(detail['hint'])}")
            widgets.table(fmt.display_frame(pd.DataFrame(detail["transitions"])), f"alert-{int(picked)}-transitions",
                          empty_sentence="No transitions recorded.", key="csv-alert-transitions")
            if detail["notifications"]:
                st.caption("Notifications")
                widgets.table(fmt.display_frame(pd.DataFrame(detail["notifications"])),
                              f"alert-{int(picked)}-notifications", empty_sentence="", key="csv-alert-notifications")

with tab_rules:
    rules = alerts.rule_table(eng)
    frame = pd.DataFrame([{"rule": r["slug"], "on": "on" if r["enabled"] else "off", "title": r["title"],
                           "what it checks": r["description"], "thresholds": r["params"], "notify": r["notify"],
                           "changed by": r["updated_by"]} for r in rules])
    frame["thresholds"] = frame["thresholds"].astype(str)
    frame["notify"] = frame["notify"].astype(str)
    widgets.table(frame, "alert-rules", empty_sentence="No rules.", key="csv-alert-rules")
    if can_manage:
        st.subheader("Change a rule")
        slug = st.selectbox("Rule", [r["slug"] for r in rules], key="alerts_rule_pick")
        chosen = next(r for r in rules if r["slug"] == slug)
        with st.form(key=f"alerts-rule-form-{slug}"):
            enabled = st.toggle("On", value=chosen["enabled"], key=f"alerts_rule_enabled_{slug}")
            params_text = st.text_area("Thresholds (JSON; only the keys you change)", value="{}", key=f"alerts_rule_params_{slug}",
                                       help="For example {\"min_ratio\": 2, \"max_amount\": {\"USD\": 50000}}")
            emails = st.text_input("E-mail addresses (comma-separated)", key=f"alerts_rule_emails_{slug}",
                                   value=", ".join(chosen["notify"].get("email", [])))
            hooks = st.text_input("Webhook URLs (comma-separated)", key=f"alerts_rule_hooks_{slug}",
                                  value=", ".join(chosen["notify"].get("webhook", [])))
            reset = st.checkbox("Back to the default thresholds first", key=f"alerts_rule_reset_{slug}")
            saved = st.form_submit_button("Save rule", type="primary")
        if saved:
            try:
                alerts.configure_rule_from_form(eng, slug, actor=Actor.of(ctx.username, ctx.roles), enabled=enabled,
                                                params_text=params_text, emails=emails, webhooks=hooks, reset=reset)
            except (ValueError, PermissionError) as exc:
                st.error(md(exc))
            else:
                st.session_state["alerts_flash"] = f"Rule {slug} saved."
                st.rerun()
    st.caption("The same from the command line: `python -m cli alerts configure RULE --set key=value`, "
               "`--disable`, `--email ADDRESS`, `--webhook URL`; every change is audited.")
