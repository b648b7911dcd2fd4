"""``python -m cli staff``: add or disable staff accounts, set roles, reset passwords."""

from __future__ import annotations

import argparse
import getpass
import secrets
import sys
from collections.abc import Callable

from cli.common import CommandError, engine
from core import staff
from core.permissions import Actor


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("staff", help="manage staff accounts", description=__doc__)
    s = p.add_subparsers(title="actions", metavar="ACTION", required=True)

    a = s.add_parser("add", help="create an account")
    a.add_argument("username")
    a.add_argument("--name", required=True)
    a.add_argument("--email", required=True)
    a.add_argument("--roles", required=True, help="comma-separated: support,finance,manager,admin")
    _password_args(a)
    a.set_defaults(func=_add)

    for name, help_, active in (("disable", "disable an account", False), ("enable", "enable an account", True)):
        d = s.add_parser(name, help=help_)
        d.add_argument("username")
        d.set_defaults(func=lambda args, active=active: _set_active(args, active))

    r = s.add_parser("roles", help="replace an account's roles")
    r.add_argument("username")
    r.add_argument("roles", help="comma-separated: support,finance,manager,admin")
    r.set_defaults(func=_roles)

    pw = s.add_parser("reset-password", help="set a new password (and lift a lockout)")
    pw.add_argument("username")
    _password_args(pw)
    pw.set_defaults(func=_reset)

    u = s.add_parser("unlock", help="lift a sign-in lockout")
    u.add_argument("username")
    u.set_defaults(func=_unlock)

    ls = s.add_parser("list", help="list accounts")
    ls.set_defaults(func=_list)


def _password_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    g.add_argument("--generate", action="store_true", help="generate a password and print it once")


def _password(args: argparse.Namespace) -> str:
    if args.generate:
        pw = secrets.token_urlsafe(15)
        print(f"password: {pw}")
        return pw
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Again: ") != first:
        raise CommandError("The two passwords differ.")
    return first


def _actor() -> Actor:
    # The named operator (MEMBERDESK_OPERATOR or the login name), acting with admin rights.
    return Actor.operator()


def _do(fn: Callable[[], object]) -> int:
    try:
        message = fn()
    except staff.StaffError as exc:
        raise CommandError(str(exc)) from None
    print(message)
    return 0


def _add(args: argparse.Namespace) -> int:
    pw = _password(args)
    return _do(lambda: staff.add_account(engine(), actor=_actor(), username=args.username, name=args.name,
                                         email=args.email, roles=args.roles, password=pw)
               and f"created {args.username.lower()}")


def _set_active(args: argparse.Namespace, active: bool) -> int:
    return _do(lambda: staff.change_active(engine(), actor=_actor(), username=args.username, active=active)
               and f"{'enabled' if active else 'disabled'} {args.username.lower()}")


def _roles(args: argparse.Namespace) -> int:
    def change() -> str:
        view = staff.change_roles(engine(), actor=_actor(), username=args.username, roles=args.roles)
        return f"{args.username.lower()}: {','.join(view.roles)}"
    return _do(change)


def _reset(args: argparse.Namespace) -> int:
    pw = _password(args)
    return _do(lambda: staff.change_password(engine(), actor=_actor(), username=args.username, password=pw)
               and f"password reset for {args.username.lower()}")


def _unlock(args: argparse.Namespace) -> int:
    return _do(lambda: staff.unlock_account(engine(), actor=_actor(), username=args.username)
               and f"unlocked {args.username.lower()}")


def _list(args: argparse.Namespace) -> int:
    def fmt() -> str:
        lines = [f"{'username':16} {'roles':28} {'active':7} locked_until"]
        for v, _failures in staff.accounts(engine()):
            lines.append(f"{v.username:16} {','.join(v.roles):28} {'yes' if v.active else 'no':7} "
                         f"{v.locked_until.isoformat() if v.locked_until else ''}")
        return "\n".join(lines)
    return _do(fmt)
