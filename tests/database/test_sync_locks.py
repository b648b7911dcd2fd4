"""Two sync runs at once never both write: one holds the lock, the other is refused and says who."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.models.stripe_sync import RunLock, SyncRun
from core.permissions import Actor
from core.stripe_gateway import ClientOptions, make_client
from core.sync import locks, run_sync, status
from core.timeutil import utc_now

OPERATOR = Actor.operator("test")  # syncs act as a named operator


class TestLock:
    def test_second_acquire_is_refused_naming_the_holder(self, engine: Engine) -> None:
        first = locks.acquire(engine, "t", holder="cron-a:1")
        try:
            with pytest.raises(locks.LockBusy, match="cron-a:1"):
                locks.acquire(engine, "t", holder="web-b:2")
        finally:
            first.release()
        again = locks.acquire(engine, "t", holder="web-b:2")
        again.release()
        with Session(engine) as s:
            assert s.scalars(select(RunLock)).all() == []

    def test_lock_held_by_another_process_is_refused(self, engine: Engine, database_url: str) -> None:
        # A second, real process holds the lock while this one tries.
        code = (
            "import sys,time\n"
            "from core.db import make_engine\n"
            "from core.sync import locks\n"
            f"e = make_engine({database_url!r})\n"
            "l = locks.acquire(e, 't', holder='other-process:9')\n"
            "print('held', flush=True)\n"
            "sys.stdin.readline()\n"
            "l.release()\n"
        )
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
            with pytest.raises(locks.LockBusy, match="other-process:9"):
                locks.acquire(engine, "t", holder="me:1")
        finally:
            assert proc.stdin is not None
            proc.stdin.write("\n")
            proc.stdin.flush()
            proc.wait(timeout=20)
        locks.acquire(engine, "t", holder="me:1").release()

    def test_expired_sqlite_lock_is_taken_over(self, engine: Engine) -> None:
        if engine.dialect.name != "sqlite":
            pytest.skip("PostgreSQL's advisory lock dies with its session instead of expiring")
        old = locks.acquire(engine, "t", holder="dead:1", ttl=timedelta(seconds=1), now=utc_now() - timedelta(minutes=5))
        assert old.holder == "dead:1"
        fresh = locks.acquire(engine, "t", holder="alive:2")
        fresh.release()

    def test_lock_of_a_killed_process_on_this_host_is_taken_over_at_once(self, engine: Engine,
                                                                        database_url: str) -> None:
        # A real process takes the lock with its default holder (this host, its pid) and is killed
        # with SIGKILL: it never releases. Its row is still unexpired, yet the next run takes over.
        code = (
            "import sys\n"
            "from core.db import make_engine\n"
            "from core.sync import locks\n"
            f"e = make_engine({database_url!r})\n"
            "l = locks.acquire(e, 't')\n"
            "print(l.holder, flush=True)\n"
            "sys.stdin.readline()\n"
        )
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        holder = proc.stdout.readline().strip()
        assert holder == f"{socket.gethostname()}:{proc.pid}"
        with pytest.raises(locks.LockBusy, match=holder):  # alive: refused
            locks.acquire(engine, "t", holder="me:1")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=20)
        taken = _acquire_once_the_session_is_gone(engine)
        try:
            assert locks.current_holder(engine, "t")[0] == "me:1"
        finally:
            taken.release()

    def test_unexpired_lock_of_another_host_is_not_taken_over(self, engine: Engine) -> None:
        if engine.dialect.name != "sqlite":
            pytest.skip("PostgreSQL's advisory lock dies with its session instead of expiring")
        other = locks.acquire(engine, "t", holder="other-host.example:1")
        try:
            with pytest.raises(locks.LockBusy, match="other-host.example:1"):
                locks.acquire(engine, "t", holder="me:1")
        finally:
            other.release()


class TestSkippedRun:
    def test_run_while_locked_is_recorded_skipped_and_writes_nothing(self, engine: Engine) -> None:
        client = make_client("sk_test_x", api_base="http://127.0.0.1:1", options=ClientOptions(max_network_retries=0))
        held = locks.acquire(engine, "stripe_sync", holder="cron:42")
        try:
            result = run_sync(engine, client, holder="web:7", actor=OPERATOR)
        finally:
            held.release()
        assert result.status == "skipped"
        assert "Another sync is running" in result.message and "cron:42" in result.message
        with Session(engine) as s:
            runs = s.scalars(select(SyncRun)).all()
        assert [(r.status, r.holder) for r in runs] == [("skipped", "web:7")]

    def test_unreachable_stripe_is_a_failed_run(self, engine: Engine) -> None:
        client = make_client("sk_test_x", api_base="http://127.0.0.1:1",
                             options=ClientOptions(max_network_retries=0, connect_timeout=0.5))
        result = run_sync(engine, client, actor=OPERATOR)
        assert result.status == "failed" and "could not be reached" in result.message
        snap = status(engine)
        assert snap.last_run is not None and snap.last_run.status == "failed"
        assert snap.last_success is None and snap.data_through is None
        assert snap.running_holder is None  # the lock was released


def _acquire_once_the_session_is_gone(engine: Engine) -> locks.Lock:
    """SQLite: at once (the holder's pid is dead). PostgreSQL: the advisory lock goes with the
    killed client's session, which the server ends when it sees the socket close, a moment after
    the process died (under load, after the next statement here): retried for a few seconds."""
    deadline = time.monotonic() + (10 if engine.dialect.name == "postgresql" else 0)
    while True:
        try:
            return locks.acquire(engine, "t", holder="me:1")
        except locks.LockBusy:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
