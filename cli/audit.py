"""``python -m cli audit verify``: check that nobody rewrote the audit log.

Walks the hash chain of the audit log and prints one sentence: either "intact" with the head hash
(keep it somewhere else: a later run that prints a different history from that point on shows a
rewrite), or the first entry that was changed, removed or inserted. Exit code 0 when intact, 1
when not, 2 for bad usage or configuration.
"""

from __future__ import annotations

import argparse

from cli.common import engine
from core import audit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="check the audit log's hash chain", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s = p.add_subparsers(title="actions", metavar="ACTION", required=True)
    v = s.add_parser("verify", help="name the first entry changed, removed or inserted (exit 1), or say intact")
    v.set_defaults(func=_verify)


def _verify(args: argparse.Namespace) -> int:
    verdict = audit.verify(engine())
    print(verdict.sentence)
    return 0 if verdict.ok else 1
