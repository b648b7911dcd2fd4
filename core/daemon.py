"""A server's background thread that can be started and stopped with the server (the Overview's
keeper, the complimentary memberships' ender): subclasses give ``name`` and ``_run``, which loops
until ``_stop`` is set and waits on it between rounds."""

from __future__ import annotations

import threading


class Daemon:
    name = "memberdesk-daemon"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        raise NotImplementedError
