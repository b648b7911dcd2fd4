"""A fresh clone's ``make run``, timed to the moment it says it is running, step by step.

    .venv/bin/python -m bench.fresh_start_bench [--installer uv pip] [--demo-members N] [--cold-cache]

For each installer (side by side in one run): ``git clone`` this repository into a temporary
folder, run ``make run INSTALLER=...`` there (a free dashboard port; the sandbox finds its own),
stamp every output line with the seconds since the start, stop when "Memberdesk is running" is
printed, then stop the run with SIGTERM. Reported: the install step (as ``make`` says it), the
steps ``python -m cli run`` reports, the total wall time to ready, the CPU time of the whole
process tree, and the load average before and after. ``--cold-cache`` empties pip's and uv's
caches for the run (a machine that never installed these packages); without it they are whatever
this machine has. The output is a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.machine import free_port, load_average

ROOT = Path(__file__).resolve().parent.parent
READY = "Memberdesk is running"


@dataclass
class Result:
    installer: str
    install_s: float | None = None
    install_with: str = ""
    ready_s: float | None = None
    steps: str = ""
    cpu_s: float = 0.0
    load_before: str = ""
    load_after: str = ""
    lines: list[str] = field(default_factory=list)


def _cpu_children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_once(installer: str, demo_members: int | None, cold_cache: bool, timeout: float) -> Result:
    result = Result(installer, load_before=load_average(" "))
    with tempfile.TemporaryDirectory(prefix="memberdesk-fresh-") as tmp:
        clone = Path(tmp) / "memberdesk"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MEMBERDESK_", "STRIPE_", "DATABASE_URL", "STREAMLIT_", "VIRTUAL_ENV"))}
        env["PORT"] = str(free_port())
        env.pop("SANDBOX_PORT", None)
        if cold_cache:
            env["PIP_NO_CACHE_DIR"] = "1"
            env["UV_NO_CACHE"] = "1"
        cmd = ["make", "run", f"INSTALLER={installer}"]
        if demo_members:
            cmd.append(f"DEMO_MEMBERS={demo_members}")
        cpu0 = _cpu_children()
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                at = time.monotonic() - t0
                result.lines.append(f"{at:6.1f} {line.rstrip()}")
                if m := re.search(r"installing the requirements: done in (\d+) s \(with (\w+)\)", line):
                    result.install_s, result.install_with = float(m.group(1)), m.group(2)
                if m := re.search(r"ready in [\d.]+ s not counting the install: (.*)", line):
                    result.steps = m.group(1)
                if READY in line:
                    result.ready_s = at
                if result.ready_s is not None and result.steps:
                    break
                if at > timeout:
                    break
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        result.cpu_s = _cpu_children() - cpu0
        result.load_after = load_average(" ")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--installer", nargs="+", default=["uv", "pip"], choices=["uv", "pip"])
    ap.add_argument("--demo-members", type=int, default=None, help="DEMO_MEMBERS for the run (default: make run's)")
    ap.add_argument("--cold-cache", action="store_true", help="no pip or uv cache (a machine that never installed)")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--log", type=Path, default=None, help="write every stamped line here")
    args = ap.parse_args(argv)
    results = [run_once("auto" if i == "uv" else "pip", args.demo_members, args.cold_cache, args.timeout)
               for i in args.installer]
    print(f"\nMachine: {os.cpu_count()} cores, {platform.system()} {platform.machine()}, Python "
          f"{platform.python_version()}; demo members: {args.demo_members or 'default'}; "
          f"caches: {'cold' if args.cold_cache else 'as found'}\n")
    print("| installer | install | ready after install (steps) | fresh clone to ready | CPU, whole tree | load average before → after |")
    print("|---|---|---|---|---|---|")
    for r in results:
        install = f"{r.install_s:.0f} s ({r.install_with})" if r.install_s is not None else "?"
        total = f"{r.ready_s:.1f} s" if r.ready_s is not None else "not ready"
        print(f"| {r.installer} | {install} | {r.steps or '?'} | {total} | {r.cpu_s:.1f} s | {r.load_before} → {r.load_after} |")
    if args.log:
        args.log.write_text("\n\n".join("\n".join(r.lines) for r in results) + "\n", encoding="utf-8")
    return 0 if all(r.ready_s is not None for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
