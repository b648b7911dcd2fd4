"""Faults at the HTTP level (429, 500, timeouts, dropped connections) during backfill and event sync:
the run is recorded failed, nothing is lost or duplicated, and the next run completes. Two runs at
once (two real processes) never both write."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.models import Member, Payment, Subscription
from core.models.stripe_sync import StripeEvent, SyncRun, SyncState
from core.permissions import Actor
from core.stripe_gateway import ClientOptions, make_client
from core.sync import reconcile_totals, run_sync, status
from tests.support.db import TEST_KEY
from tests.support.sandbox import SandboxProcess, gateway_client
from tests.support.worlds import build_stripe_world

OPERATOR = Actor.operator("test")  # syncs act as a named operator

ROOT = Path(__file__).resolve().parents[2]


def _agrees(engine: Engine, sb: SandboxProcess) -> bool:
    rows = reconcile_totals(engine, gateway_client(sb))
    return bool(rows) and all(r.matches for r in rows)


def _runs(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as s:
        return [(r.kind, r.status) for r in s.scalars(select(SyncRun).order_by(SyncRun.id))]


class TestBackfillFaults:
    def test_rate_limit_mid_backfill_fails_the_run_and_the_next_resumes(
        self, engine: Engine, sandbox: SandboxProcess
    ) -> None:
        build_stripe_world(gateway_client(sandbox), 5)
        # Products, prices, customers, cards and subscriptions go through; then Stripe says 429.
        sandbox.fault("/v1/charges", status=429, times=None)
        first = run_sync(engine, gateway_client(sandbox, retries=0), actor=OPERATOR)
        assert first.status == "failed" and "rate limited" in first.message
        with Session(engine) as s:
            cursor = s.get(SyncState, "backfill")
            assert cursor is not None and cursor.backfill_completed_at is None  # left open, to resume
            assert s.get(SyncState, "subscription").backfill_completed_at is not None
            assert s.scalar(select(func.count()).select_from(Member)) == 5
        assert status(engine).data_through is None  # a failed run never counts as fresh data
        sandbox.clear_faults()
        second = run_sync(engine, gateway_client(sandbox), actor=OPERATOR)
        assert second.status == "succeeded", second.message
        assert second.counts.get("resumed_backfill") is True
        assert "charge" in second.counts["backfilled_by_type"] and "customer" not in second.counts["backfilled_by_type"]
        assert _agrees(engine, sandbox)
        assert _runs(engine) == [("full", "failed"), ("full", "succeeded")]

    def test_server_error_and_dropped_connection_then_recovery(self, engine: Engine, sandbox: SandboxProcess) -> None:
        build_stripe_world(gateway_client(sandbox), 3)
        sandbox.fault("/v1/subscriptions", status=500, times=None)
        assert run_sync(engine, gateway_client(sandbox, retries=0), actor=OPERATOR).status == "failed"
        sandbox.clear_faults()
        sandbox.fault("/v1/invoices", mode="drop", times=None)
        dropped = run_sync(engine, gateway_client(sandbox, retries=0), actor=OPERATOR)
        assert dropped.status == "failed" and "could not be reached" in dropped.message
        sandbox.clear_faults()
        assert run_sync(engine, gateway_client(sandbox), actor=OPERATOR).ok
        assert _agrees(engine, sandbox)

    def test_one_transient_error_is_absorbed_by_the_clients_retries(
        self, engine: Engine, sandbox: SandboxProcess
    ) -> None:
        build_stripe_world(gateway_client(sandbox), 3)
        sandbox.fault("/v1/customers", status=500, times=1, should_retry=True)
        result = run_sync(engine, gateway_client(sandbox, retries=2), actor=OPERATOR)
        assert result.ok, result.message
        assert _agrees(engine, sandbox)


class TestEventFaults:
    def test_outage_mid_fetch_keeps_the_cursor_and_loses_nothing(self, engine: Engine, sandbox: SandboxProcess) -> None:
        c = gateway_client(sandbox)
        world = build_stripe_world(c, 3)
        assert run_sync(engine, c, actor=OPERATOR).ok
        with Session(engine) as s:
            cursor_before = s.get(SyncState, "events").last_synced_at
        # Enough new activity for several pages of events.
        for i in range(12):
            cus = c.v1.customers.create(params={"email": f"new{i}@example.com", "payment_method": "pm_card_visa",
                                                "invoice_settings": {"default_payment_method": "pm_card_visa"}})
            c.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": world.prices["premium_usd"]}]})
        sandbox.fault("/v1/events", status=500, skip=1, times=None)  # the first page arrives, then 500s
        failed = run_sync(engine, gateway_client(sandbox, retries=0), actor=OPERATOR)
        assert failed.status == "failed" and failed.kind == "incremental"
        with Session(engine) as s:
            assert s.get(SyncState, "events").last_synced_at == cursor_before  # not moved
            stored = s.scalar(select(func.count()).select_from(StripeEvent))
        sandbox.clear_faults()
        fetched_again = run_sync(engine, c, actor=OPERATOR)
        assert fetched_again.ok, fetched_again.message
        with Session(engine) as s:
            ledger_ids = s.scalars(select(StripeEvent.id)).all()
            assert len(ledger_ids) == len(set(ledger_ids)) > stored
            assert s.scalar(select(func.count()).where(StripeEvent.processed_at.is_(None))) == 0
            assert s.scalar(select(func.count()).select_from(Subscription)) == 15
            assert s.scalar(select(func.count()).where(Payment.invoice_id.is_(None))) == 0
        assert _agrees(engine, sandbox)
        assert [s for _, s in _runs(engine)] == ["succeeded", "failed", "succeeded"]

    def test_timeout_is_a_failed_run(self, engine: Engine, sandbox: SandboxProcess) -> None:
        c = gateway_client(sandbox)
        build_stripe_world(c, 2)
        assert run_sync(engine, c, actor=OPERATOR).ok
        impatient = make_client(sandbox.api_key, api_base=sandbox.url,
                                options=ClientOptions(max_network_retries=0, read_timeout=1, connect_timeout=1))
        sandbox.fault("/v1/events", mode="delay", seconds=2.5, times=1)
        timed_out = run_sync(engine, impatient, actor=OPERATOR)
        assert timed_out.status == "failed" and "could not be reached" in timed_out.message
        sandbox.clear_faults()
        assert run_sync(engine, c, actor=OPERATOR).ok


class TestConcurrentRuns:
    def test_two_processes_exactly_one_writes(self, engine: Engine, database_url: str, sandbox: SandboxProcess) -> None:
        build_stripe_world(gateway_client(sandbox), 2)
        # Hold the first list call (within the client's 30 s read timeout) so the first process still
        # holds the lock while the second starts, even on a busy machine; released once it is done.
        sandbox.fault("/v1/products", mode="delay", seconds=25, times=1)
        env = {**os.environ, "DATABASE_URL": database_url, "STRIPE_API_KEY": sandbox.api_key,
               "STRIPE_API_BASE": sandbox.url, "MEMBERDESK_ENCRYPTION_KEYS": TEST_KEY,
               "MEMBERDESK_SECRETS_FILE": str(ROOT / "tests" / "no-such-secrets.toml")}
        cmd = [sys.executable, "-m", "cli", "sync"]
        first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _runs(engine) == []:
            time.sleep(0.05)
        second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        sandbox.clear_faults()  # the held request goes on
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
        assert second.returncode == 1
        assert "Another sync is running" in second.stdout
        statuses = sorted(s for _, s in _runs(engine))
        assert statuses == ["skipped", "succeeded"]
        with Session(engine) as s:
            skipped = s.scalar(select(SyncRun).where(SyncRun.status == "skipped"))
            winner = s.scalar(select(SyncRun).where(SyncRun.status == "succeeded"))
            assert winner.holder and winner.holder in skipped.error
        assert _agrees(engine, sandbox)


class TestCommand:
    def test_missing_api_key_is_a_usage_error(self, database_url: str) -> None:
        env = {**os.environ, "DATABASE_URL": database_url, "STRIPE_API_KEY": "", "MEMBERDESK_ENCRYPTION_KEYS": TEST_KEY,
               "MEMBERDESK_SECRETS_FILE": str(ROOT / "tests" / "no-such-secrets.toml")}
        done = subprocess.run([sys.executable, "-m", "cli", "sync"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2 and "STRIPE_API_KEY" in done.stderr

    def test_bad_month_is_a_usage_error(self, database_url: str, sandbox: SandboxProcess) -> None:
        env = {**os.environ, "DATABASE_URL": database_url, "STRIPE_API_KEY": sandbox.api_key,
               "STRIPE_API_BASE": sandbox.url, "MEMBERDESK_ENCRYPTION_KEYS": TEST_KEY,
               "MEMBERDESK_SECRETS_FILE": str(ROOT / "tests" / "no-such-secrets.toml")}
        done = subprocess.run([sys.executable, "-m", "cli", "reconcile", "--month", "2026-13"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "2026-03" in done.stderr
