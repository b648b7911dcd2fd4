"""``python -m cli alerts``: evaluate the rules (for cron), list alerts, act on one, tune rules.

``evaluate`` exits 0 when every rule ran and 1 when one failed (the others still ran); bad input
exits 2 with one sentence. ``list --format json`` prints one JSON array on stdout.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from cli.common import CommandError, engine, settings
from core import alerts
from core.alerts import rule_form, rules
from core.permissions import Actor


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("alerts", help="evaluate alert rules, list and handle alerts", description=__doc__)
    s = p.add_subparsers(title="actions", metavar="ACTION", required=True)

    e = s.add_parser("evaluate", help="run every enabled rule now (idempotent; safe to run in parallel)")
    e.add_argument("--now", help="evaluate as of this UTC time (ISO 8601), e.g. 2026-03-01T12:00")
    e.add_argument("--no-notify", action="store_true", help="do not send notifications in this run")
    e.set_defaults(func=_evaluate)

    ls = s.add_parser("list", help="list alerts (open first, by severity)")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    ls.add_argument("--status", action="append", choices=alerts.STATUSES,
                    help="only this status (repeatable); default: all")
    ls.add_argument("--rule", help="only this rule")
    ls.add_argument("--search", help="text in the rule, scope, hint or notes")
    ls.add_argument("--limit", type=int, default=200)
    ls.set_defaults(func=_list)

    for name, help_ in (("ack", "acknowledge an alert"), ("resolve", "resolve an alert"),
                        ("snooze", "snooze an alert")):
        a = s.add_parser(name, help=help_)
        a.add_argument("id", type=int)
        a.add_argument("--note", required=name != "ack", default=None, help="why (kept in the history)")
        if name == "snooze":
            a.add_argument("--hours", type=float, default=4.0, help="how long (default 4)")
        a.set_defaults(func=_act, action=name)

    r = s.add_parser("rules", help="list the rules with their switches and thresholds")
    r.add_argument("--format", choices=("table", "json"), default="table")
    r.set_defaults(func=_rules)

    c = s.add_parser("configure", help="switch a rule on or off, change a threshold or its notifications")
    c.add_argument("slug")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--enable", dest="enabled", action="store_true", default=None)
    g.add_argument("--disable", dest="enabled", action="store_false")
    c.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a threshold in the units the page's form shows (`alerts rules` lists them), "
                        "e.g. min_ratio=2 or max_amount.USD=500 for $500.00 (repeatable)")
    c.add_argument("--reset", action="store_true", help="back to the default thresholds")
    c.add_argument("--email", action="append", help="notify this address (repeatable; replaces the list)")
    c.add_argument("--webhook", action="append", help="POST to this URL (repeatable; replaces the list)")
    c.add_argument("--no-notify", action="store_true", help="remove every notification target")
    c.set_defaults(func=_configure)


def _actor() -> Actor:
    # The named operator (MEMBERDESK_OPERATOR or the login name), acting with admin rights.
    return Actor.operator()


def _parse_now(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"“{text}” is not a time; write it like 2026-03-01T12:00.") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _evaluate(args: argparse.Namespace) -> int:
    cfg = settings()
    result = alerts.evaluate(engine(cfg), _parse_now(args.now), smtp_url=cfg.smtp_url, deliver=not args.no_notify,
                             local_receiver=cfg.alert_webhook_local_receiver)
    print(result.summary())
    return 1 if result.errors else 0


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _list(args: argparse.Namespace) -> int:
    try:
        rows = alerts.list_alerts(engine(), status=args.status, rule=args.rule, search=args.search, limit=args.limit)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.format == "json":
        print(json.dumps([{k: _jsonable(v) for k, v in r.items()} for r in rows], indent=1))
        return 0
    if not rows:
        print("no alerts")
        return 0
    print(f"{'ID':>6}  {'STATUS':<12} {'SEVERITY':<8} {'RULE':<22} {'SCOPE':<34} LAST FIRED")
    for r in rows:
        fired = r["last_fired_at"] or r["opened_at"]
        print(f"{r['id']:>6}  {r['status']:<12} {r['severity']:<8} {r['rule']:<22} {r['scope'][:34]:<34} "
              f"{fired:%Y-%m-%d %H:%M}")
        print(f"        {r['hint']}")
    return 0


def _act(args: argparse.Namespace) -> int:
    eng = engine()
    try:
        if args.action == "ack":
            alert = alerts.acknowledge(eng, args.id, actor=_actor(), note=args.note)
        elif args.action == "resolve":
            alert = alerts.resolve(eng, args.id, actor=_actor(), note=args.note)
        else:
            alert = alerts.snooze(eng, args.id, actor=_actor(), hours=args.hours, note=args.note)
    except alerts.AlertError as exc:
        raise CommandError(str(exc)) from None
    until = f" until {alert.snoozed_until:%Y-%m-%d %H:%M} UTC" if alert.status == "snoozed" else ""
    print(f"alert {alert.id} is {alert.status}{until}")
    return 0


def _rules(args: argparse.Namespace) -> int:
    rows = alerts.rule_table(engine())
    if args.format == "json":
        print(json.dumps([{k: _jsonable(v) for k, v in r.items()} for r in rows], indent=1))
        return 0
    for r in rows:
        print(f"{r['slug']:<22} {'on ' if r['enabled'] else 'off'}  {r['title']}")
        _print_fields(rules.get(r["slug"]), r["params"])
        if any(r["notify"].values()):
            print(f"{'':<27}notify: {json.dumps(r['notify'])}")
    return 0


def _parse_set(items: list[str]) -> dict[str, str]:
    typed: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"“{item}” is not NAME=VALUE.")
        typed[key.strip()] = value.strip()
    return typed


def _configure(args: argparse.Namespace) -> int:
    notify_to = None
    if args.no_notify:
        notify_to = {}
    elif args.email is not None or args.webhook is not None:
        notify_to = {"email": args.email or [], "webhook": args.webhook or []}
    local_receiver = settings().alert_webhook_local_receiver
    typed = _parse_set(args.set)
    try:
        params = {}
        if typed:
            current = alerts.rule_configs(engine())[rules.get(args.slug).slug]
            params = rule_form.params_from_text(current.rule, current.params, typed, reset=args.reset)
        cfg = alerts.configure_rule(engine(), args.slug, actor=_actor(), enabled=args.enabled,
                                    params=params, notify_to=notify_to, reset=args.reset,
                                    local_receiver=local_receiver)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    print(f"{cfg.rule.slug}: {'on' if cfg.enabled else 'off'}")
    _print_fields(cfg.rule, cfg.params)
    return 0


def _print_fields(rule: Any, params: dict[str, Any]) -> None:
    """Each threshold as the page's form shows it: its name for ``--set``, its value, its label."""
    for f in rule_form.fields(rule, params):
        value = ("yes" if f.value else "no") if f.kind == "switch" else (
            f"{f.value:.{f.decimals}f}" if f.decimals else str(f.value))
        print(f"{'':<4}{f.name} = {value}  ({f.label})")
