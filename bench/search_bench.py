"""Member search benchmark: the search before migration 0015 and now, side by side, in one run.

    .venv/bin/python -m bench.search_bench --members 1000000 --db sqlite [--write-docs]
    .venv/bin/python -m bench.search_bench --members 1000000 --db postgresql [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]

Builds (once, kept for the next run; ``--regenerate`` starts over) a migrated database whose
members table holds ``--members`` rows named as the demo names them (``demo.catalogue``: 36
first names x 30 last names, e-mail ``first.last.N@example.com``, so a last name matches one
member in 30 and "Moreau" finds ~33,000 at a million), written through the fast bulk loader
(``demo.fastload``: the search index is built once at the end, as a demo load builds it),
then ``ANALYZE``. Only members are generated: the id probes into invoices and payments read empty
tables here (they are exact lookups by unique or indexed columns either way).

``--database-url URL`` searches an existing, populated database instead (a whole demo world, with
its invoices and payments; keys from ``MEMBERDESK_ENCRYPTION_KEYS``): nothing is built or
analysed, and its headings say so. ``--old-repeat 0`` leaves the old search out.

Each query runs through ``core.member_search.search_page`` (new) and through the search as it was
before (``old_search`` below, kept verbatim for this comparison): the first call, then the median
of ``--repeat`` calls, wall and this process's CPU time (SQLite works inside this process;
PostgreSQL's server time shows in the wall time only). The load average is printed beside each row.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from bench.machine import cpu_model, load_average
from bench.metrics_bench import KEY, ROOT, timed_cpu
from bench.metrics_bench import timed as timed_once
from core import crypto
from core.db import make_engine
from core.db.migrate import upgrade
from core.member_search import search_page
from core.models import Invoice, Member, Payment, PaymentMethod
from demo.catalogue import FIRST_NAMES, LAST_NAMES
from demo.fastload import fresh_load

NOW = datetime(2026, 11, 27, tzinfo=UTC)
SECTION = "## Member search"


# --- the search before migration 0015 (core/members.py at that time), for the comparison --------

_OLD_LIMIT = 50
_OLD_DIGITS = re.compile(r"^\d{1,18}$")


def _old_like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def old_search(engine: Engine, raw: str) -> list[int]:
    """The old candidates (ids, e-mail exact / prefix / contains, name contains), first 50."""
    value = raw.strip()[:200]
    hits: list[int] = []
    with Session(engine) as s:
        if _OLD_DIGITS.match(value):
            number = int(value)
            hits += list(s.scalars(select(Member.id).where(Member.id == number)))
            if len(value) == 4:
                hits += list(s.scalars(select(PaymentMethod.member_id).where(PaymentMethod.last4 == value)
                                       .distinct().limit(_OLD_LIMIT)))
                hits += list(s.scalars(select(Payment.member_id).where(Payment.card_last4 == value)
                                       .distinct().limit(_OLD_LIMIT)))
            hits += list(s.scalars(select(Invoice.member_id).where(Invoice.id == number)))
            hits += list(s.scalars(select(Payment.member_id).where(Payment.id == number)))
            return list(dict.fromkeys(hits))[:_OLD_LIMIT]
        if "_" in value and " " not in value:
            hits += list(s.scalars(select(Member.id).where(Member.stripe_customer_id == value).limit(_OLD_LIMIT)))
        hits += list(s.scalars(select(Invoice.member_id).where(Invoice.number == value).limit(_OLD_LIMIT)))
        lowered = value.lower()
        pattern = _old_like_escape(lowered)
        hits += list(s.scalars(select(Member.id).where(Member.email == lowered)))
        hits += list(s.scalars(select(Member.id).where(Member.email.like(f"{pattern}%", escape="\\"))
                               .order_by(Member.email).limit(_OLD_LIMIT)))
        if len(lowered) >= 2:
            hits += list(s.scalars(select(Member.id).where(Member.email.like(f"%{pattern}%", escape="\\"))
                                   .order_by(Member.email).limit(_OLD_LIMIT)))
            hits += list(s.scalars(select(Member.id).where(func.lower(Member.name).like(f"%{pattern}%", escape="\\"))
                                   .order_by(Member.name).limit(_OLD_LIMIT)))
    return list(dict.fromkeys(hits))[:_OLD_LIMIT]


# --- the members table -----------------------------------------------------------------------------

def _ascii(value: str) -> str:
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFKD", value) if not unicodedata.combining(c)).lower().replace(" ", "")


def member_rows(count: int, seed: int = 1) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    start = NOW - timedelta(days=3 * 365)
    for i in range(1, count + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        yield {"id": i, "email": f"{_ascii(first)}.{_ascii(last)}.{i}@example.com", "name": f"{first} {last}",
               "country": rng.choice(("US", "GB", "DE", "FR", "ES", "JP", "NL", "IT")),
               "stripe_customer_id": f"cus_B{i:010d}", "created_at": start + timedelta(seconds=i * 90),
               "version": 1}


def build(engine: Engine, count: int) -> float:
    """Fill the members table through the fast bulk loader; seconds taken."""
    t = time.perf_counter()
    table = Member.__table__
    batch: list[dict[str, Any]] = []
    with fresh_load(engine, ("members",)) as conn:
        for row in member_rows(count):
            batch.append(row)
            if len(batch) == 20_000:
                with conn.begin():
                    conn.execute(table.insert(), batch)
                batch = []
                print(f"  {row['id']:,} members", file=sys.stderr, flush=True)
        if batch:
            with conn.begin():
                conn.execute(table.insert(), batch)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    return time.perf_counter() - t


def database(db: str, count: int, pg_url: str, data_dir: Path, regenerate: bool) -> tuple[str, bool]:
    """(url, exists already) of the kept benchmark database for ``count`` members."""
    from bench.metrics_bench import database_url

    if db == "sqlite":
        path = data_dir / f"memberdesk_search_{count}.db"
        if regenerate and path.exists():
            path.unlink()
        return f"sqlite:///{path}", path.exists()
    return database_url(f"search_{count}", db, pg_url, regenerate, data_dir)


# --- timing --------------------------------------------------------------------------------------

def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, float, Any]:
    """(first ms, median wall ms, median CPU ms of the repeats, result of the first call)."""
    first, out = timed_once(fn)
    wall, cpu = timed_cpu(fn, repeat)
    return first, wall, cpu, out


def queries(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as s:
        # A member in the middle that has a Stripe customer (some demo members have none).
        some = s.execute(select(Member.id, Member.email, Member.stripe_customer_id)
                         .where(Member.stripe_customer_id.is_not(None)).order_by(Member.id)
                         .offset(s.scalar(select(func.count()).select_from(Member)) // 2).limit(1)).one()
    prefix = some.email.split("@")[0][:-2]
    return [
        ("e-mail, whole", some.email),
        ("e-mail, start", prefix),
        ("last name (1 member in 30)", "Moreau"),
        ("last name, accents folded", "fernandez"),
        ("first and last name", "lea moreau"),
        ("two letters", "mo"),
        ("member id", str(some.id)),
        ("Stripe customer id", some.stripe_customer_id),
        ("nothing matches", "zzqxv"),
    ]


def fmt_ms(value: float) -> str:
    if value != value:  # not measured
        return "-"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def run(engine: Engine, repeat: int, old_repeat: int) -> list[dict[str, Any]]:
    rows = []
    for label, query in queries(engine):
        load_before = load_average()
        if old_repeat:
            o_first, o_wall, o_cpu, o_out = timed(lambda q=query: old_search(engine, q), old_repeat)
        else:
            o_first = o_wall = o_cpu = float("nan")
            o_out = None
        n_first, n_wall, n_cpu, page = timed(lambda q=query: search_page(engine, q), repeat)
        total = ("more than " if page.more_than else "") + f"{page.total:,}"
        rows.append({"label": label, "query": query, "old_found": "not run" if o_out is None else
                     f"{len(o_out)} (first 50)" if len(o_out) >= 50 else str(len(o_out)), "new_total": total, "old_first": o_first, "old_wall": o_wall,
                     "old_cpu": o_cpu, "new_first": n_first, "new_wall": n_wall, "new_cpu": n_cpu,
                     "load": f"{load_before} → {load_average()}"})
        print(f"{label:32} old {o_wall:8.1f} ms  new {n_wall:7.2f} ms  total {total}", file=sys.stderr, flush=True)
    return rows


def report(rows: list[dict[str, Any]], db: str, count: int, repeat: int, old_repeat: int, build_s: float | None,
           existing: str | None = None) -> str:
    import platform

    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = (f"--database-url URL --old-repeat {old_repeat}" if existing else f"--members {count} --db {db}")
    lines = [f"### {db}, {count:,} members" + (f" ({existing})" if existing else ""), "",
             f"Measured {when} on {cpu_model()}, Python {platform.python_version()}, with "
             f"`python -m bench.search_bench {command}` (first call, then the median of "
             f"{repeat} calls new and {old_repeat} old; CPU = this process's time"
             + (", SQLite works inside it" if db == "sqlite" else ", the PostgreSQL server's not counted") + ")."
             + (f" Building the table took {build_s:.0f} s." if build_s else ""), "",
             "| query | text | old: found | old first / median ms (CPU) | new: total | new first / median ms (CPU) "
             "| load (1/5/15 min) before → after |",
             "|---|---|---|---:|---|---:|---|"]
    for r in rows:
        shown = r["query"] if len(r["query"]) < 40 else r["query"][:37] + "…"
        lines.append(f"| {r['label']} | `{shown}` | {r['old_found']} | {fmt_ms(r['old_first'])} / "
                     f"**{fmt_ms(r['old_wall'])}** ({fmt_ms(r['old_cpu'])}) | {r['new_total']} | "
                     f"{fmt_ms(r['new_first'])} / **{fmt_ms(r['new_wall'])}** ({fmt_ms(r['new_cpu'])}) | {r['load']} |")
    return "\n".join(lines) + "\n"


def write_docs(block: str, db: str) -> None:
    """Replace this database's subsection under SECTION in docs/benchmarks.md (kept otherwise)."""
    path = ROOT / "docs" / "benchmarks.md"
    doc = path.read_text()
    heading = block.splitlines()[0]
    start = doc.index(SECTION)
    end = doc.find("\n## ", start + len(SECTION))
    end = len(doc) if end < 0 else end + 1
    section = doc[start:end]
    lines = section.split("\n")
    kept, skipping = [], False
    for line in lines:
        if line.startswith("### "):
            skipping = line.split(" (")[0] == heading.split(" (")[0]
        if not skipping:
            kept.append(line)
    section = "\n".join(kept).rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(doc[:start] + section + doc[end:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.search_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=1_000_000)
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--data-dir", type=Path, default=Path("/tmp"))
    p.add_argument("--regenerate", action="store_true")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--old-repeat", type=int, default=2)
    p.add_argument("--write-docs", action="store_true", help="merge the results into docs/benchmarks.md")
    p.add_argument("--database-url", help="search this existing, populated database (keys from "
                   "MEMBERDESK_ENCRYPTION_KEYS); nothing is built")
    args = p.parse_args(argv)
    existing = None
    if args.database_url:
        import os

        keys = [k.strip() for k in os.environ.get("MEMBERDESK_ENCRYPTION_KEYS", "").split(",") if k.strip()]
        crypto.set_keyring(crypto.KeyRing(keys or [KEY]))
        engine = make_engine(args.database_url)
        with Session(engine) as s:
            args.members = s.scalar(select(func.count()).select_from(Member)) or 0
            payments = s.scalar(select(func.count()).select_from(Payment)) or 0
        args.db = engine.dialect.name
        existing = f"a whole demo world: {payments:,} payments"
        build_s = None
    else:
        crypto.set_keyring(crypto.KeyRing([KEY]))
        url, exists = database(args.db, args.members, args.pg_url, args.data_dir, args.regenerate)
        engine = make_engine(url)
        upgrade(engine)
        build_s = None if exists else build(engine, args.members)
    rows = run(engine, args.repeat, args.old_repeat)
    block = report(rows, args.db, args.members, args.repeat, args.old_repeat, build_s, existing)
    print(block)
    if args.write_docs:
        write_docs(block, args.db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
