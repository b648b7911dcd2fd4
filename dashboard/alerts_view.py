"""The Alerts page (managers, admins): open alerts first, by severity, each with its value against
the baseline, a small chart of the recent history, the hint, and the payments and members behind
it; acknowledge, snooze or resolve with a note (MANAGE_ALERTS); the searchable history; the rules.

Opening the page evaluates the rules when the last evaluation is older than five minutes, beside
the page's run (``core.alerts.background``): it waits half a second for the results, then shows
the last ones and reruns itself when the check is done.
Data and every number come from ``core.alerts``, words for stored codes (rules, scopes, statuses,
severities, thresholds) from ``core.labels``; the cached reads live in ``dashboard.reads``.
"""

from __future__ import annotations

import functools
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from core import alerts
from core.alerts import background, rule_form
from core.alerts import rules as alert_rules
from core.labels import (
    ALERT_ACTOR,
    ALERT_STATUS,
    NOTIFICATION_CHANNEL,
    NOTIFICATION_STATUS,
    SEVERITY,
    notify_text,
    rule_label,
    scope_label,
    thresholds_text,
)
from core.permissions import Actor, Permission
from dashboard import charts, reads, widgets
from dashboard import format as fmt
from dashboard.auth import StaffContext
from dashboard.db import engine, settings
from dashboard.text import md

SEVERITY_ICON = {"critical": "🟥", "high": "🟧", "medium": "🟨", "low": "⬜"}
# The page waits this long for a check of the rules it started (a small world's check is done by
# then: the page shows its results at once); a longer one goes on beside the page, polled every
# CHECK_POLL_S.
CHECK_WAIT_S = 0.5
CHECK_POLL_S = 1.0
DETAILED = 10  # Streamlit runs collapsed expanders too: draw charts and rows for the first ten only
FLASH = "alerts_flash"
HISTORY_COLUMNS = ("id", "status", "severity", "rule", "scope", "value_text", "baseline_text", "opened_at",
                   "last_fired_at", "resolved_at", "hint")


def severity_badge(severity: str) -> str:
    return f"{SEVERITY_ICON.get(severity, '')} {SEVERITY.get(severity, severity)}".strip()


def _title(a: dict[str, Any]) -> str:
    """The rule's title as the alert recorded it, else the rule's title now (never its code)."""
    return a["title"] if a.get("title") and a["title"] != a.get("rule") else rule_label(a.get("rule"))


def history_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The History tab's table: every stored code in words, headers in words."""
    frame = pd.DataFrame([{
        **{k: r[k] for k in HISTORY_COLUMNS},
        "status": ALERT_STATUS.get(r["status"], r["status"]), "severity": SEVERITY.get(r["severity"], r["severity"]),
        "rule": _title(r), "scope": scope_label(r["scope"]),
    } for r in rows], columns=list(HISTORY_COLUMNS))
    if frame.empty:
        return frame
    return fmt.display_frame(frame, rename={"id": "Alert", "value_text": "Value", "baseline_text": "Baseline",
                                            "opened_at": "Opened", "last_fired_at": "Last fired",
                                            "resolved_at": "Resolved"})


def transitions_frame(transitions: list[dict[str, Any]]) -> pd.DataFrame:
    """One alert's story: who moved it from which status to which, when and why."""
    frame = pd.DataFrame([{**t, "actor": ALERT_ACTOR.get(t["actor"], t["actor"]),
                           "from": ALERT_STATUS.get(t["from"], t["from"]) if t["from"] else "",
                           "to": ALERT_STATUS.get(t["to"], t["to"])} for t in transitions])
    return fmt.display_frame(frame, rename={"at": "When", "actor": "By"}) if not frame.empty else frame


def notifications_frame(notifications: list[dict[str, Any]]) -> pd.DataFrame:
    """Where an alert was sent, and whether it arrived."""
    frame = pd.DataFrame([{**n, "channel": NOTIFICATION_CHANNEL.get(n["channel"], n["channel"]),
                           "status": NOTIFICATION_STATUS.get(n["status"], n["status"])} for n in notifications])
    if frame.empty:
        return frame
    return fmt.display_frame(frame, rename={"next_attempt_at": "Next attempt", "sent_at": "Sent"})


def rules_frame(rules: list[dict[str, Any]]) -> pd.DataFrame:
    """The Rules tab's table: thresholds and targets as labelled values, not Python dicts."""
    return pd.DataFrame([{"Rule": r["title"], "On": "On" if r["enabled"] else "Off",
                          "What it checks": r["description"], "Thresholds": thresholds_text(r["params"], r["unit"]),
                          "Notifies": notify_text(r["notify"]), "Changed by": r["updated_by"],
                          "Name for the command line": r["slug"]} for r in rules])


def render(ctx: StaffContext) -> None:
    eng = engine()
    can_manage = ctx.can(Permission.MANAGE_ALERTS)
    st.title("Alerts")
    checking = _check_rules(eng)
    last = alerts.last_evaluated_at(eng)
    st.caption(f"Rules last evaluated {fmt.when(last)} UTC" + (" (just now)." if checking == "done" else ".")
               + " Cron runs `python -m cli alerts evaluate`; this page re-evaluates when that is over five minutes old.")
    if checking == "running":
        st.info("Checking the alert rules now: the list below is from the last check, and this page shows the "
                "new results by itself when the check is done.")
        _show_when_checked()
    flash = widgets.show_flash(FLASH)

    # A key keeps the tab in view across the rerun after an action (saving a rule went back to Open alerts).
    tab_active, tab_snoozed, tab_history, tab_rules = st.tabs(["Open alerts", "Snoozed", "History", "Rules"],
                                                              key="alerts_tabs")
    snoozed = alerts.list_alerts(eng, status=["snoozed"], limit=50)
    with tab_active:
        active = alerts.list_alerts(eng, status=["open", "acknowledged"], limit=50)
        if not active and snoozed:
            # "Every rule is within its baseline" while a snoozed alert's condition still held.
            widgets.empty(f"No open alerts; {len(snoozed)} snoozed (see Snoozed): they come back here when their "
                          "snooze ends if their condition still holds.")
        elif not active:
            latest = alerts.latest_resolved(eng)
            widgets.empty("No open alerts: every rule is within its baseline." + (
                f" The latest, “{_title(latest)}” ({scope_label(latest['scope'])}), fired "
                f"{fmt.when(latest['last_fired_at'])} UTC and was resolved {fmt.when(latest['resolved_at'])} UTC: "
                "see History." if latest else ""))
        for i, a in enumerate(active):
            _card(eng, ctx, can_manage, a, i)
    with tab_snoozed:
        if not snoozed:
            widgets.empty("No alert is snoozed.")
        for i, a in enumerate(snoozed):
            _card(eng, ctx, can_manage, a, i)
    with tab_history:
        _history(eng)
    with tab_rules:
        _rules(eng, ctx, can_manage, flash)


def _check_rules(eng: Engine) -> str:
    """Evaluate the rules beside this run when the last check is stale (``core.alerts.background``),
    waiting at most ``CHECK_WAIT_S`` for a check this visit started: "fresh" (nothing to do), "done" (checked just now),
    "running" (still checking: the page shows the last results and reruns when it ends) or
    "failed" (said on the page)."""
    # Only the visit that starts a check waits for it; one that finds a check running (another
    # person's) shows the last results at once.
    wait = 0.0 if background.running() else CHECK_WAIT_S
    running = widgets.safely("The alert rules could not be evaluated just now; the list shows the last results.",
                             background.start_if_stale, eng, smtp_url=settings().smtp_url,
                             local_receiver=settings().alert_webhook_local_receiver)
    if running is None:
        return "fresh"
    with st.spinner("Checking the alert rules …"):
        try:
            running.result(timeout=wait)
        except FutureTimeout:
            return "running"
        except Exception:  # logged by the evaluation
            widgets.error_box("The alert rules could not be evaluated just now; the list shows the last results.")
            return "failed"
    return "done"


@st.fragment(run_every=CHECK_POLL_S)
def _show_when_checked() -> None:
    """Reruns the page once the check that was still running has ended (nothing drawn meanwhile)."""
    if not background.running():
        st.rerun(scope="app")


def _chart(a: dict[str, Any]) -> None:
    series = reads.alert_series(a["id"], a["last_fired_at"])
    if not series or a["unit"] not in ("percent", "money", "count"):
        return
    points = [charts.Point(key=p["window_end"].isoformat(), label=fmt.when(p["window_end"]), value=p["value"],
                           series="Value") for p in series]
    if a["baseline"] is not None:
        points += [charts.Point(key=p["window_end"].isoformat(), label=fmt.when(p["window_end"]),
                                value=a["baseline"], series="Baseline now") for p in series]
    st.plotly_chart(charts.line(points, unit=a["unit"], currency=a["currency"], height=220,
                                title="Recent history (one point per window)"), key=f"alert-chart-{a['id']}",
                    theme=None, config=charts.CONFIG, width="stretch")


def _affected(a: dict[str, Any]) -> None:
    rows = reads.alert_rows(a["id"], a["last_fired_at"])
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
            widgets.csv_download(functools.partial(fmt.export_frame, raw, money_columns=money),
                                 f"alert-{a['id']}-{name}", key=f"csv-alert-{a['id']}-{name}")


def _actions(eng: Engine, ctx: StaffContext, a: dict[str, Any]) -> None:
    # Not cleared on submit: a double click sent the form a second time empty, and that run stopped
    # the first one's. The note stays until its action is done (core answers a repeat as the first).
    note_key = f"alert-note-{a['id']}"
    if st.session_state.pop(f"{note_key}-done", False):
        st.session_state.pop(note_key, None)
    with st.form(key=f"alert-form-{a['id']}"):
        # No max_chars: the browser dropped a longer paste whole, leaving "0/2000" and no word; core
        # answers a note that is too long in a sentence, with the text still in the field.
        note = st.text_input("Note (required to snooze or resolve)", key=note_key, placeholder="Up to 2,000 characters")
        # No bounds: 100,000 hours blocked the whole form (Resolve too) with only a tooltip; core says why.
        # Hours in halves: an int input turned a typed 1.5 into 1 without a word.
        hours = st.number_input("Snooze for hours", value=4.0, step=0.5, format="%.1f", key=f"alert-hours-{a['id']}")
        left, mid, right = st.columns(3)
        # A snoozed alert is silenced on purpose: it is not acknowledged again, only snoozed longer or resolved.
        ack = left.form_submit_button("Acknowledge", disabled=a["status"] in ("acknowledged", "snoozed"))
        snz = mid.form_submit_button("Snooze")
        res = right.form_submit_button("Resolve", type="primary")
    if not (ack or snz or res):
        return
    actor = Actor.of(ctx.username, ctx.roles)
    try:
        if ack:
            alerts.acknowledge(eng, a["id"], actor=actor, note=note)
        elif snz:
            alerts.snooze(eng, a["id"], actor=actor, hours=hours, note=note)
        else:
            alerts.resolve(eng, a["id"], actor=actor, note=note)
    except (alerts.AlertError, PermissionError) as exc:
        # Said at the top, where the last action's outcome was: "Alert 4 snoozed." stayed there
        # above this alert's refusal.
        widgets.flash(FLASH, f"Alert {a['id']}: {exc}", ok=False)
        st.rerun()
    widgets.flash(FLASH, f"Alert {a['id']} {'acknowledged' if ack else 'snoozed' if snz else 'resolved'}.")
    st.session_state[f"{note_key}-done"] = True
    st.rerun()


def _card(eng: Engine, ctx: StaffContext, can_manage: bool, a: dict[str, Any], i: int) -> None:
    # The alert's number first: the page's answers say "Alert 4 acknowledged.", and an acted-on alert
    # moves in the list, so the number tells which card was which.
    title = (f"#{int(a['id'])} · {md(severity_badge(a['severity']))} · {md(_title(a))} · {md(scope_label(a['scope']))} · "
             f"{md(ALERT_STATUS.get(a['status'], a['status']))}")
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
        if can_manage:
            _actions(eng, ctx, a)


def _history(eng: Engine) -> None:
    left, right = st.columns([3, 1])
    text = left.text_input("Search rule, scope, hint or notes", key="alerts_search")
    status = right.selectbox("Status", ["all", *alerts.STATUSES], key="alerts_status",
                             format_func=lambda s: "All" if s == "all" else ALERT_STATUS.get(s, s))
    history = alerts.list_alerts(eng, search=text or None, status=None if status == "all" else status, limit=500)
    widgets.table(history_frame(history), "alerts-history", empty_sentence="No alert matches.",
                  key="csv-alerts-history")
    picked = st.number_input("Show the story of alert number", min_value=0, value=0, step=1, key="alerts_story")
    if not picked:
        return
    detail = alerts.alert_detail(eng, int(picked))
    if detail is None:
        widgets.empty(f"There is no alert number {int(picked)}.")
        return
    st.markdown(f"**{md(_title(detail))} · {md(scope_label(detail['scope']))}** — {md(detail['hint'])}")
    widgets.table(transitions_frame(detail["transitions"]), f"alert-{int(picked)}-transitions",
                  empty_sentence="No transitions recorded.", key="csv-alert-transitions")
    if detail["notifications"]:
        st.caption("Notifications")
        widgets.table(notifications_frame(detail["notifications"]),
                      f"alert-{int(picked)}-notifications", empty_sentence="", key="csv-alert-notifications")


def _threshold_inputs(fields: list[rule_form.Field], prefix: str) -> dict[str, Any]:
    """One input per threshold, in the units the labels name; returns what each holds. Plain
    numbers two to a row, then the switches, then each mapping (an amount per currency, a step per
    severity, a switch per dimension) on a row of its own: mixed two to a row, the shorter switches
    pulled the columns out of line and scattered a rule's severity steps."""
    shown: dict[str, Any] = {}
    groups: dict[str, list[rule_form.Field]] = {}
    for field in fields:
        groups.setdefault(field.name.partition(".")[0], []).append(field)
    single = [g[0] for g in groups.values() if "." not in g[0].name]
    numbers = [f for f in single if f.kind != "switch"]
    rows = [numbers[i:i + 2] for i in range(0, len(numbers), 2)]
    rows += [[f for f in single if f.kind == "switch"]]
    rows += [g for g in groups.values() if "." in g[0].name]
    for row in (r for r in rows if r):
        for column, field in zip(st.columns(max(len(row), 2)), row, strict=False):
            with column:
                shown[field.name] = _threshold_input(field, f"{prefix}{field.name}")
    return shown


def _threshold_input(field: rule_form.Field, key: str) -> Any:
    # No bounds: a value below a widget's minimum is put back by the browser with only a red mark,
    # and Save then did nothing; the service answers a negative value in a sentence.
    if field.kind == "switch":
        return st.toggle(md(field.label), value=bool(field.value), key=key)
    if field.decimals == 0:
        return st.number_input(md(field.label), value=int(field.value), step=1, key=key, help=field.help or None)
    return st.number_input(md(field.label), value=float(field.value), step=10.0 ** -field.decimals,
                           format=f"%.{field.decimals}f", key=key, help=field.help or None)


def _rules(eng: Engine, ctx: StaffContext, can_manage: bool, flash: Any) -> None:
    rules = alerts.rule_table(eng)
    widgets.table(rules_frame(rules), "alert-rules", empty_sentence="No rules.", key="csv-alert-rules",
                  column_config={"What it checks": st.column_config.TextColumn(width="medium"),
                                 "Thresholds": st.column_config.TextColumn(width="large")})
    if can_manage:
        st.subheader("Change a rule")
        titles = {r["slug"]: r["title"] for r in rules}
        slug = st.selectbox("Rule", list(titles), format_func=lambda s: titles[s], key="alerts_rule_pick")
        if slug is None:
            return
        chosen = next(r for r in rules if r["slug"] == slug)
        # The inputs' keys change with each save: the browser keeps what was typed into an input
        # whose key stays, so after "Back to the default thresholds" the form showed the old
        # values, and the next save stored them again.
        saves = st.session_state.get(f"alerts_rule_saves_{slug}", 0)
        prefix = f"alerts_rule_{slug}_" + (f"{saves}_" if saves else "")
        with st.form(key=f"alerts-rule-form-{slug}"):
            enabled = st.toggle("On", value=chosen["enabled"], key=f"{prefix}enabled")
            st.caption("Thresholds")
            shown = _threshold_inputs(rule_form.fields(alert_rules.get(slug), chosen["params"]), prefix)
            emails = st.text_input("E-mail addresses (comma-separated)", key=f"{prefix}emails",
                                   value=", ".join(chosen["notify"].get("email", [])))
            hooks = st.text_input("Webhook URLs (comma-separated)", key=f"{prefix}hooks",
                                  value=", ".join(chosen["notify"].get("webhook", [])))
            reset = st.checkbox("Back to the default thresholds (what you changed above still applies)",
                                key=f"{prefix}reset")
            saved = st.form_submit_button("Save rule", type="primary")
        if saved:
            try:
                saved_as = alerts.configure_rule_from_form(
                    eng, slug, actor=Actor.of(ctx.username, ctx.roles), enabled=enabled, thresholds=shown,
                    emails=emails, webhooks=hooks, reset=reset, local_receiver=settings().alert_webhook_local_receiver)
            except (ValueError, PermissionError) as exc:
                widgets.drop_flash(FLASH, flash)
                st.error(md(exc))
            else:
                st.session_state[f"alerts_rule_saves_{slug}"] = saves + 1
                unchanged = saved_as.updated_at == chosen["updated_at"]
                widgets.flash(FLASH, f"Rule “{chosen['title']}”: nothing to save, it is as it was." if unchanged
                              else f"Rule “{chosen['title']}” saved.")
                st.rerun()
    st.caption("The same from the command line: `python -m cli alerts configure RULE --set key=value`, "
               "`--disable`, `--email ADDRESS`, `--webhook URL` (RULE is the rule's name for the command line in "
               "the table above); every change is audited.")
