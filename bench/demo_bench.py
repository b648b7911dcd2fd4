"""Demo generation benchmark: time, rows per table, database size and peak memory.

    .venv/bin/python -m bench.demo_bench --members 100000 --db sqlite
    .venv/bin/python -m bench.demo_bench --members 100000 --db postgresql [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]

SQLite goes to a scratch file (deleted afterwards unless --keep); PostgreSQL to a scratch
database created on the given server and dropped afterwards. Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.machine import cpu_model
from core import crypto
from core.db import make_engine
from core.db.migrate import upgrade
from demo import load_demo


def _peak_rss_mib() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return me, kids


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds of this process and of its finished children (the chunk-building workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.demo_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=100_000)
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--now", default="2026-11-27", help="pinned 'today' (default 2026-11-27)")
    p.add_argument("--profile", choices=("benchmark", "default"), default="benchmark",
                   help="the world's shape (default benchmark: ~20 payment attempts per member)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--chunk", type=int, default=2000)
    p.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--keep", action="store_true", help="keep the SQLite file / PostgreSQL database")
    p.add_argument("--sqlite-path", type=Path, help="write the SQLite database here (kept; must not exist yet)")
    args = p.parse_args(argv)

    # A kept database is only readable with its key: take the app's keys from the environment if set.
    keys = [k.strip() for k in os.environ.get("MEMBERDESK_ENCRYPTION_KEYS", "").split(",") if k.strip()]
    crypto.set_keyring(crypto.KeyRing(keys or [crypto.generate_key()]))
    now = datetime.fromisoformat(args.now).replace(tzinfo=UTC)
    scratch = f"memberdesk_demo_bench_{os.getpid()}"
    admin = None
    if args.db == "sqlite":
        path = args.sqlite_path or Path(tempfile.gettempdir()) / f"{scratch}.db"
        if args.sqlite_path is not None:
            if path.exists():
                p.error(f"{path} already exists")
            args.keep = True
        url = f"sqlite:///{path}"
    else:
        base = make_url(args.pg_url).set(drivername="postgresql+psycopg")
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{scratch}"'))
        url = base.set(database=scratch).render_as_string(hide_password=False)
    engine = make_engine(url)
    try:
        upgrade(engine)
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        stats = load_demo(engine, members=args.members, seed=args.seed, now=now, workers=args.workers,
                          chunk=args.chunk, profile=args.profile, progress=lambda m: print(m, flush=True))
        wall, cpu1 = time.perf_counter() - t0, _cpu_seconds()
        cpu_main, cpu_workers = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
        if args.db == "sqlite":
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            size = sum(f.stat().st_size for f in path.parent.glob(f"{path.name}*"))
        else:
            with engine.connect() as conn:
                conn.execute(text("ANALYZE"))
                size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
        me, kids = _peak_rss_mib()
    finally:
        engine.dispose()
        if args.db == "sqlite" and not args.keep:
            for f in path.parent.glob(f"{path.name}*"):
                f.unlink()
        if admin is not None:
            if not args.keep:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
            admin.dispose()

    total = sum(stats.rows.values())
    print()
    print(f"Machine: {os.cpu_count()} cores, {cpu_model()}; {args.db}; {args.members:,} members, seed {args.seed}, "
          f"now {args.now}, profile {args.profile}, workers {args.workers}")
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| wall time | {wall:.1f} s |")
    print(f"| CPU time | {cpu_main + cpu_workers:.1f} s (main {cpu_main:.1f} s, workers {cpu_workers:.1f} s) |")
    print(f"| rows written | {total:,} ({total / wall:,.0f} rows/s) |")
    for name, count in stats.rows.items():
        print(f"| {name} | {count:,} |")
    print(f"| database size | {size / 2**20:,.0f} MiB |")
    print(f"| peak RSS | main {me:,.0f} MiB, largest worker {kids:,.0f} MiB |")
    print(f"| load average after (1/5/15 min) | {' / '.join(f'{x:.1f}' for x in os.getloadavg())} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
