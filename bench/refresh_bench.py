"""Rollup refresh benchmark: an incremental refresh from some hours back, old code and new side by side.

    MEMBERDESK_ENCRYPTION_KEYS=... .venv/bin/python -m bench.refresh_bench --database-url URL \\
        [--back 24 240] [--runs 5] [--pairs 2] [--old-src OLD_CHECKOUT]

On an existing database with its rollups built (``python -m cli metrics --refresh``). Each run is
``core.metrics.rollups.refresh(engine, now - back)`` at the wall-clock minute: it redoes everything
written in the last ``back`` hours (the members touched, their segments and movement rows, the
trials and cancellations those writes can move). A generated world's writes end at its ``now``, so
"a day back" holds the writes of the hours between that day's time and midnight; more hours back
stand for a busier day (at 100,000 members, ten days touch about as many members as one day at a
million). Each measurement is a fresh process (``--runs`` refreshes after one to warm up, the
median), old and new alternating ``--pairs`` times, so both meet the same machine. The new side
also prints its steps' times, from the refresh's own log lines.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.machine import cpu_model, load_average


def _measure(url: str, back_hours: float, runs: int) -> dict[str, object]:
    """In this process, with whatever ``core`` is importable: one refresh to warm up, then ``runs``."""
    from core import crypto
    from core.db import make_engine
    from core.metrics.rollups import refresh
    from core.timeutil import utc_now

    keys = [k.strip() for k in os.environ.get("MEMBERDESK_ENCRYPTION_KEYS", "").split(",") if k.strip()]
    if keys:
        crypto.set_keyring(crypto.KeyRing(keys))
    steps: dict[str, list[float]] = {}

    class Steps(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            msg = record.getMessage()
            if msg.startswith("metrics rollups: ") and " took " in msg:
                name, took = msg[len("metrics rollups: "):].split(" took ", 1)
                steps.setdefault(name, []).append(float(took.split("s", 1)[0]) * 1000)

    log = logging.getLogger("core.metrics.rollups")
    log.setLevel(logging.INFO)
    log.addHandler(Steps())
    engine = make_engine(url)
    refresh(engine, utc_now() - timedelta(hours=back_hours))
    steps.clear()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        refresh(engine, utc_now() - timedelta(hours=back_hours))
        times.append((time.perf_counter() - t) * 1000)
    engine.dispose()
    return {"ms": times, "steps": {k: statistics.median(v) for k, v in steps.items()}}


def _side(src: Path, url: str, back: float, runs: int) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    # This file run by its path, importing ``core`` from ``src`` (an older checkout may not have it).
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--database-url", url, "--json", str(back),
                           "--runs", str(runs)], cwd=src, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"the run in {src} failed:\n{proc.stderr[-2000:]}")
    out: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", required=True)
    p.add_argument("--back", type=float, nargs="+", default=[24.0], help="hours back (default 24)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--old-src", type=Path, help="an older checkout, run side by side")
    p.add_argument("--json", type=float, help=argparse.SUPPRESS)  # one side's run: print its timings
    args = p.parse_args(argv)
    if args.json is not None:
        print(json.dumps(_measure(args.database_url, args.json, args.runs)))
        return 0
    here = Path(__file__).resolve().parents[1]
    print(f"Machine: {cpu_model()}, {os.cpu_count()} cores. Started {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
          f"load average {load_average()}.\n")
    print("| hours back | side | median ms per run (of each process) | new code's steps, median ms |")
    print("|---:|---|---|---|")
    for back in args.back:
        for _ in range(args.pairs):
            sides = ([("old", args.old_src)] if args.old_src else []) + [("new", here)]
            for name, src in sides:
                r = _side(src, args.database_url, back, args.runs)
                ms = r["ms"]
                assert isinstance(ms, list)
                steps = r["steps"] if name == "new" else {}
                assert isinstance(steps, dict)
                said = ", ".join(f"{k} {v:,.0f}" for k, v in steps.items())
                print(f"| {back:g} | {name} | {statistics.median(ms):,.0f} ({', '.join(f'{m:,.0f}' for m in ms)}) "
                      f"| {said} |", flush=True)
    print(f"\nEnded {datetime.now(UTC):%H:%M} UTC, load average {load_average()}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
