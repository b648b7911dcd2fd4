"""What the audit log's hash chain costs: one append (its own transaction, as a staff action commits
it) with the chain against a plain insert (the log before the chain), alternately in one run, and
``audit verify`` over the whole log.

    python bench/audit_bench.py [--database-url URL] [--appends 400] [--log 20000]

A fresh database per run (a temporary SQLite file by default; a scratch PostgreSQL database when
``--database-url`` names a server). Prints medians per append in milliseconds and the verify time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from core import audit, crypto  # noqa: E402
from core.db import make_engine, session_scope  # noqa: E402
from core.db.migrate import upgrade  # noqa: E402
from core.models import AuditEntry  # noqa: E402
from core.timeutil import utc_now  # noqa: E402


def _chained(engine, i: int) -> None:
    with session_scope(engine) as s:
        audit.record(s, actor="sam", action="member.note_added", member_id=i, comment="bench",
                     before={"version": i}, after={"version": i + 1})


def _plain(engine, i: int) -> None:
    """What ``audit.record`` did before the chain: one insert."""
    with session_scope(engine) as s:
        s.add(AuditEntry(at=utc_now(), actor="sam", action="member.note_added", member_id=i, comment="bench",
                         before={"version": i}, after={"version": i + 1}, outcome="ok"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--appends", type=int, default=400)
    ap.add_argument("--log", type=int, default=20000, help="entries in the log that verify walks")
    args = ap.parse_args()
    crypto.set_keyring(crypto.KeyRing([Fernet.generate_key().decode()]))
    admin = None
    if args.database_url:
        base = make_url(args.database_url).set(drivername="postgresql+psycopg")
        name = f"audit_bench_{os.getpid()}"
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = base.set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    engine = make_engine(url)
    try:
        upgrade(engine)
        timings: dict[str, list[float]] = {"plain insert (before)": [], "chained append (now)": []}
        for i in range(args.appends):  # alternate, so load changes hit both alike
            for label, fn in (("plain insert (before)", _plain), ("chained append (now)", _chained)):
                t = time.perf_counter()
                fn(engine, i)
                timings[label].append((time.perf_counter() - t) * 1000)
        # verify needs an unbroken chain: start the log afresh with only chained entries
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                conn.execute(text("DROP TRIGGER audit_log_no_delete"))
            else:
                conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
            conn.execute(text("DELETE FROM audit_log"))
            conn.execute(text("UPDATE audit_chain_head SET seq = 0, hash = :g"), {"g": audit.GENESIS})
        for i in range(args.log):
            _chained(engine, i)
        t = time.perf_counter()
        verdict = audit.verify(engine)
        verify_s = time.perf_counter() - t
        assert verdict.ok, verdict.sentence
        print(f"{engine.dialect.name}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"load {os.getloadavg()[0]:.1f}")
        for label, values in timings.items():
            print(f"  {label:24} median {statistics.median(values):6.2f} ms per append (n={len(values)})")
        print(f"  audit verify over {args.log:,} entries: {verify_s:.2f} s")
    finally:
        engine.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
