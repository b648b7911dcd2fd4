"""Bulk loading of the demo world into our database.

``load_demo(engine, members=..., seed=..., now=...)`` generates members in chunks, maps every
Stripe object through ``core.stripe_mapping`` (``demo.rows``), and inserts each chunk in one
transaction: ``executemany`` on SQLite, ``COPY`` on PostgreSQL. Column types still apply (times
as UTC, phone/address/billing details encrypted with the active key ring) because every value
goes through its column type's bind processor. Ids continue after the highest id already in each
table; PostgreSQL sequences are moved past them at the end.

Memory stays flat: only one chunk (and, with ``workers=2``, the chunk being built) is in memory.
Events are not written to the ``stripe_events`` ledger (an encrypted payload per event would
double the load time); they go to the sandbox (``sandbox=``), whose event list is the one the
sync reads.
"""

from __future__ import annotations

import gc
import multiprocessing
import multiprocessing.pool
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select, text

from core.db import session_scope
from core.db.maintenance import analyze
from core.models import Base, Tier
from core.stripe_store import apply
from demo import objects
from demo.catalogue import TIERS
from demo.encode import Encoder
from demo.fastload import fresh_load, is_fresh
from demo.rows import LOCAL_IDS, TABLES, Catalogue, chunk_rows
from demo.simulate import Story, simulate_member
from demo.world import PROFILES, World, default_now

CHUNK = 2000
DEFER_INDEXES_FROM = 50_000


@dataclass
class LoadStats:
    members: int
    seconds: float
    rows: dict[str, int] = field(default_factory=dict)


def _in_order(pool: multiprocessing.pool.Pool, jobs: Iterable[Any], *, ahead: int) -> Iterator[Any]:
    """``pool.imap(_build, jobs)`` with at most ``ahead`` chunks built and not yet inserted.

    ``imap`` hands out every job at once: when the workers build faster than this process and the
    database insert (a busy machine, a slow disk), finished chunks pile up here without bound; at a
    million members that took this process to 20 GB and the kernel killed it."""
    queued: deque[multiprocessing.pool.AsyncResult[Any]] = deque()
    for job in jobs:
        queued.append(pool.apply_async(_build, (job,)))
        if len(queued) >= ahead:
            yield queued.popleft().get()
    while queued:
        yield queued.popleft().get()


@contextmanager
def gc_paused() -> Iterator[None]:
    """The generator builds millions of small acyclic dicts; the cycle collector only slows it."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def setup_catalogue(engine: Engine, now: datetime) -> Catalogue:
    """Tiers and prices through the Stripe store (the same path as a sync), plus the free tier."""
    with session_scope(engine) as session:
        for code, name, rank, product in TIERS:
            if product is None and session.scalar(select(Tier).where(Tier.code == code)) is None:
                session.add(Tier(code=code, name=name, rank=rank, created_at=now))
        session.flush()
        for obj in objects.products() + objects.prices():
            apply(session, obj, state_at=now, source="demo")
    tiers, prices = Base.metadata.tables["tiers"], Base.metadata.tables["prices"]
    with engine.connect() as conn:
        tier_rows = conn.execute(select(tiers.c.id, tiers.c.stripe_product_id, tiers.c.rank)).all()
        price_rows = conn.execute(select(prices.c.id, prices.c.stripe_price_id)).all()
    return Catalogue(price_ids={r.stripe_price_id: r.id for r in price_rows if r.stripe_price_id},
                     tier_ids={r.stripe_product_id: r.id for r in tier_rows if r.stripe_product_id},
                     ranks={r.id: r.rank for r in tier_rows}, now=now)


def _build(args: tuple[World, int, int, Catalogue, Any]) -> tuple[dict[str, list[list]], list[Story] | None]:
    world, start, stop, cat, (dialect_cls, keep) = args
    with gc_paused():
        stories = [simulate_member(world, i, events=keep) for i in range(start, stop)]
        rows = chunk_rows(stories, cat)
        enc = _encoder(dialect_cls)
        return {t: enc.encode(t, rows.pop(t)) for t in TABLES}, (stories if keep else None)


_ENCODERS: dict[type, Encoder] = {}


def _encoder(dialect_cls: type) -> Encoder:
    """One encoder per process and dialect (it caches formatted times)."""
    if dialect_cls not in _ENCODERS:
        _ENCODERS[dialect_cls] = Encoder(dialect_cls(), TABLES)
    return _ENCODERS[dialect_cls]


def _next_ids(engine: Engine) -> dict[str, int]:
    out = {}
    with engine.connect() as conn:
        for name in TABLES:
            t = Base.metadata.tables[name]
            out[name] = (conn.execute(select(func.max(t.c.id))).scalar() or 0) + 1
    return out


def _offset(table: str, rows: list[list], columns: list[str], base: dict[str, int]) -> list[list]:
    """Chunk-local ids -> global ids, in place."""
    shifts = [(columns.index(col), base[ref]) for col, ref in LOCAL_IDS[table].items()]
    for values in rows:
        for pos, add in shifts:
            if values[pos] is not None:
                values[pos] += add
    return rows


def _insert(conn: Any, dialect: str, table: str, columns: list[str], tuples: Sequence[Sequence[Any]]) -> None:
    if not tuples:
        return
    raw = conn.connection.driver_connection
    names = ", ".join(columns)
    if dialect == "postgresql":
        with raw.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for tup in tuples:
                copy.write_row(tup)
    else:
        cur = raw.cursor()
        cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})", tuples)
        cur.close()


def load_demo(engine: Engine, *, members: int = 5000, seed: int = 1, now: datetime | None = None,
              progress: Callable[[str], None] | None = None, chunk: int = CHUNK, workers: int = 1,
              on_chunk: Callable[[list[Story]], None] | None = None, profile: str = "default",
              defer_indexes: bool | None = None) -> LoadStats:
    """Generate and load ``members`` members (the profile's years up to ``now``); returns row counts.

    ``on_chunk`` receives each chunk's stories after it is committed (the CLI feeds the sandbox
    with it). ``workers=2`` builds chunks in a second process while the first inserts.
    ``profile``: ``default`` or ``benchmark`` (``demo.world.PROFILES``).
    ``defer_indexes``: load into empty tables with their secondary indexes built at the end
    (``demo.fastload``); by default only for big loads (``DEFER_INDEXES_FROM`` members), where
    it pays, so a small load killed half-way never leaves a database without its indexes."""
    if members < 0:
        raise ValueError("the number of members cannot be negative")
    started = time.perf_counter()
    now = now or default_now()
    world = World(seed=seed, members=members, now=now, profile=PROFILES[profile])
    cat = setup_catalogue(engine, world.now)
    base = _next_ids(engine)
    enc = _encoder(type(engine.dialect))
    dialect = engine.dialect.name
    stats = LoadStats(members=members, seconds=0.0, rows=dict.fromkeys(TABLES, 0))
    jobs = [(world, a, min(a + chunk, members), cat, (type(engine.dialect), on_chunk is not None))
            for a in range(0, members, chunk)]

    def consume(conn: Connection, results: Iterator[tuple[dict[str, list[list]], list[Story] | None]]) -> None:
        for (tables, stories), job in zip(results, jobs, strict=True):
            with conn.begin():
                for name in TABLES:
                    _insert(conn, dialect, name, enc.columns[name],
                            _offset(name, tables[name], enc.columns[name], base))
            for name in TABLES:
                base[name] += len(tables[name])
                stats.rows[name] += len(tables[name])
            del tables
            if on_chunk is not None and stories is not None:
                on_chunk(stories)
            if progress is not None:
                progress(f"  {job[2]:,}/{members:,} members loaded ({time.perf_counter() - started:.1f} s)")

    if defer_indexes is None:
        defer_indexes = members >= DEFER_INDEXES_FROM
    if defer_indexes:
        with engine.connect() as conn:
            defer_indexes = is_fresh(conn, TABLES)
    with fresh_load(engine, TABLES) if defer_indexes else engine.connect() as conn, gc_paused():
        if workers > 1 and len(jobs) > 1:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                consume(conn, _in_order(pool, jobs, ahead=2 * workers))
        else:
            consume(conn, (_build(job) for job in jobs))
        if defer_indexes and progress is not None:
            progress(f"  building indexes ({time.perf_counter() - started:.1f} s)")
    if dialect == "postgresql":
        with engine.begin() as conn:
            for name in TABLES + ("tiers", "prices"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                  f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {name}), false)"))
    # The tables grew from nothing: without statistics the rollup build that follows plans for
    # empty tables (on PostgreSQL with autovacuum off it stalled for over 11 minutes at a million
    # members on one INSERT), and so does every page.
    took = analyze(engine, why="the demo load")
    if progress is not None:
        progress(f"  planner statistics gathered ({took:.1f} s)")
    stats.seconds = time.perf_counter() - started
    return stats
