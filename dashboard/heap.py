"""Keep the loaded program out of the garbage collection Streamlit runs after every script run.

Streamlit runs a full ``gc.collect()`` after every script run (``runner.postScriptGC``, on by
default, and kept on: it bounds what reference cycles a run leaves behind). With pandas,
SQLAlchemy, plotly and our modules loaded, that collection walks ~190,000 objects: 100-200 ms of
CPU on this machine after every page, more than a light page's own run, holding the interpreter
lock meanwhile, so every other session waits too. Those objects live as long as the process:
``gc.freeze()`` moves them to the permanent generation and the collection after each run walks
only what the runs create.

``freeze_imports()`` is called at the top of every run. It freezes again only when modules were
imported since the last time (a page's first visit after a start), so the objects of other
sessions alive at those few moments are all it can keep from the collector, and only if they end
up in a reference cycle: freed objects without cycles are freed by their reference counts as
before.

(An earlier version of this was taken out because navigation clicks seemed to start no run. They
did start one: the benchmark watched the page's script-state attribute, which does not change when
a run is short enough for its messages to arrive together. The benchmark now reads the runs from
the websocket; docs/benchmarks.md has the evidence.)
"""

from __future__ import annotations

import gc
import sys
import threading

_frozen_at = 0  # len(sys.modules) when this process last froze its heap
_freezing = threading.Lock()


def freeze_imports() -> None:
    """Freeze the heap if modules were imported since the last freeze (see the module doc)."""
    global _frozen_at
    if len(sys.modules) == _frozen_at:
        return
    with _freezing:
        if len(sys.modules) != _frozen_at:
            gc.freeze()
            _frozen_at = len(sys.modules)
