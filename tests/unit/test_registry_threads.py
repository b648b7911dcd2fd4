"""The metrics registry loads its modules once, whichever threads ask first: a page's worklists are
read beside its numbers, and two sessions open pages together after a restart."""

from __future__ import annotations

import subprocess
import sys

from tests.support.servers import ROOT

SCRIPT = """
import threading
from core.metrics import registry
start, errors = threading.Barrier(8), []
def ask():
    start.wait()
    try:
        registry.get("failure_rate")
    except Exception as exc:
        errors.append(str(exc))
threads = [threading.Thread(target=ask) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(len(errors), errors[:1])
"""


def test_threads_asking_at_once_all_find_every_metric():
    # Each run is a fresh interpreter: the registry has not been loaded there.
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("0 "), out.stdout
