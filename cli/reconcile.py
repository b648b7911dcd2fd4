"""``python -m cli reconcile``: compare our rows with Stripe's.

Without ``--member``: counts and amount sums per object type, month and currency (``--month
YYYY-MM`` limits it to one month by Stripe's ``created``). With ``--member ID``: that member's
objects one by one; add ``--resync`` to re-read them from Stripe and write them. Exit 0 when in
agreement (or the resync succeeded), 1 when a difference was found (or the resync failed), 2 for
bad usage.
"""

from __future__ import annotations

import argparse

from cli.common import CommandError, command, progress, stripe_and_engine
from core.money import format_money
from core.permissions import Actor
from core.stripe_gateway import GatewayError
from core.sync import parse_month, reconcile_member, reconcile_totals, resync_member


def register(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "reconcile", __doc__, help="compare our Stripe mirror with Stripe (per month, or one member)", run=run)
    p.add_argument("--month", metavar="YYYY-MM", help="only objects Stripe created in this month")
    p.add_argument("--member", type=int, metavar="ID", help="compare one member (our member id)")
    p.add_argument("--resync", action="store_true", help="with --member: re-read the member from Stripe")


def _money(amount: int, currency: str) -> str:
    return format_money(amount, currency) if currency else str(amount)


def run(args: argparse.Namespace) -> int:
    if args.resync and args.member is None:
        raise CommandError("--resync needs --member ID.")
    if args.month:
        try:
            parse_month(args.month)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    client, eng = stripe_and_engine()
    try:
        if args.member is not None:
            return _member(eng, client, args)
        return _totals(eng, client, args)
    except GatewayError as exc:
        print(f"Reconciliation stopped: {exc.sentence}")
        return 1
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _totals(eng, client, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    progress("Listing Stripe objects and comparing ...")
    rows = reconcile_totals(eng, client, month=args.month)
    bad = [r for r in rows if not r.matches]
    print(f"{'type':<13} {'month':<8} {'cur':<4} {'stripe':>7} {'ours':>7} {'stripe sum':>16} {'our sum':>16}  ok")
    for r in rows:
        print(
            f"{r.object_type:<13} {r.month:<8} {r.currency or '-':<4} {r.stripe_count:>7} {r.our_count:>7} "
            f"{_money(r.stripe_sum, r.currency):>16} {_money(r.our_sum, r.currency):>16}  {'yes' if r.matches else 'NO'}"
        )
        for sid in r.missing[:5]:
            print(f"    missing here: {sid}")
        for sid in r.extra[:5]:
            print(f"    not in Stripe: {sid}")
    print(f"{len(rows) - len(bad)} of {len(rows)} groups agree." + (" Differences found." if bad else ""))
    return 1 if bad else 0


def _member(eng, client, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    if args.resync:
        result = resync_member(eng, client, args.member, actor=Actor.operator())
        print(result.message)
        if not result.ok:
            return 1
    diffs = reconcile_member(eng, client, args.member)
    for d in diffs:
        detail = f" (ours {d.ours!r}, Stripe {d.theirs!r})" if d.ours or d.theirs else ""
        print(f"{d.object_type:<15} {d.stripe_id:<32} {d.problem}{detail}")
    print(f"Member {args.member}: " + ("in agreement with Stripe." if not diffs else f"{len(diffs)} difference(s)."))
    return 1 if diffs else 0
