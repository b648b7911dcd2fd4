"""What the benchmarks share: what they say about the machine they ran on, a free local port for
their servers, and the alert benches' common options.

A figure means little without the CPU, the core count and how busy the machine was: the benches
print these beside their numbers (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess


def cpu_model() -> str:
    """The CPU's model name from ``lscpu``, else what Python knows."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average(sep: str = " / ") -> str:
    """The 1, 5 and 15 minute load averages, one decimal each."""
    return sep.join(f"{v:.1f}" for v in os.getloadavg())


def memory_gib() -> float:
    """Physical memory in GiB (0 where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def replay_parser(doc: str | None, reuse_help: str) -> argparse.ArgumentParser:
    """The options the alert benches share: the database, reusing its rows, writing the docs."""
    ap = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    ap.add_argument("--database-url", default="")
    ap.add_argument("--reuse", action="store_true", help=reuse_help)
    ap.add_argument("--write-docs", action="store_true")
    return ap
