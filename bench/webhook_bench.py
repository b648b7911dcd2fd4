"""Webhook latency: a change made through the ``stripe`` client, to the row in our database.

    .venv/bin/python -m bench.webhook_bench [--changes 30] [--db sqlite|postgresql]

Starts the local sandbox (``python -m cli sandbox --webhook-url ...``) and the server as ``make
run`` does (``streamlit run dashboard/serve.py``), each its own process on a free port, on a
scratch database (SQLite file, or a scratch PostgreSQL database from TEST_DATABASE_URL). Then,
one after the other, renames a customer through the real client and polls our ``members`` row
(every 5 ms) until it shows the new name: the time from the API call's answer to the row. No
sync runs; only the webhook can bring the change. Prints median, p95 and max with the load.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from statistics import median, quantiles

import stripe
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bench.machine import free_port
from core import crypto
from core.db import make_engine
from core.db.migrate import upgrade
from core.models import Member

ROOT = Path(__file__).resolve().parent.parent
KEY = "fEhmDxvhCpEu4b16boUlf95HY5t4RM5suyOSd3CeyC8="
API_KEY = "sk_test_webhook_bench_0123456789"
SECRET = "whsec_" + "ab" * 16


def _wait(url: str, seconds: float = 120, api_key: str = "") -> None:
    deadline = time.monotonic() + seconds
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def _pg_admin(create: bool) -> str:
    """Create (or drop) this run's scratch PostgreSQL database; returns its URL."""
    base = make_url(os.environ["TEST_DATABASE_URL"]).set(drivername="postgresql+psycopg")
    name = f"memberdesk_webhook_bench_{os.getpid()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if create:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--changes", type=int, default=30)
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    args = ap.parse_args(argv)
    crypto.set_keyring(crypto.KeyRing([KEY]))
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="webhook-bench-") as tmp:
        url = f"sqlite:///{tmp}/bench.db" if args.db == "sqlite" else _pg_admin(create=True)
        eng = make_engine(url)
        upgrade(eng)
        dash, sandbox = free_port(), free_port()
        secrets = Path(tmp) / "secrets.toml"
        secrets.write_text(
            f'[memberdesk]\ndatabase_url = "{url}"\nencryption_keys = ["{KEY}"]\n'
            f'[authenticator]\ncookie_key = "{"k" * 64}"\n'
            f'[stripe]\napi_key = "{API_KEY}"\napi_base = "http://127.0.0.1:{sandbox}"\nwebhook_secret = "{SECRET}"\n',
            encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMBERDESK_", "STRIPE_", "DATABASE_URL"))}
        env["MEMBERDESK_SECRETS_FILE"] = str(secrets)
        try:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "cli", "sandbox", "--port", str(sandbox), "--state", f"{tmp}/sandbox.db",
                 "--api-key", API_KEY, "--webhook-url", f"http://127.0.0.1:{dash}/stripe/webhook",
                 "--webhook-secret", SECRET], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", "dashboard/serve.py", "--server.port", str(dash),
                 "--server.headless", "true", "--secrets.files", str(secrets)], cwd=ROOT, env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
            _wait(f"http://127.0.0.1:{dash}/healthz")
            _wait(f"http://127.0.0.1:{sandbox}/_sandbox/health", api_key=API_KEY)
            client = stripe.StripeClient(API_KEY, base_addresses={"api": f"http://127.0.0.1:{sandbox}"})
            customer = client.v1.customers.create(params={"email": "bench@example.com", "name": "Bench 0"})
            latencies = []
            load_before = os.getloadavg()
            for i in range(1, args.changes + 1):
                name = f"Bench {i}"
                client.v1.customers.update(customer.id, params={"name": name})
                t0 = time.monotonic()
                while True:
                    with Session(eng) as s:
                        if s.scalar(select(Member.name).where(Member.stripe_customer_id == customer.id)) == name:
                            break
                    if time.monotonic() - t0 > 30:
                        raise RuntimeError(f"change {i} did not arrive within 30 s")
                    time.sleep(0.005)
                latencies.append(time.monotonic() - t0)
            load_after = os.getloadavg()
        finally:
            for p in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=15)
            eng.dispose()
            if args.db == "postgresql":
                _pg_admin(create=False)
    ms = sorted(x * 1000 for x in latencies)
    p95 = quantiles(ms, n=20)[-1] if len(ms) >= 2 else ms[0]
    print(f"{args.db}: {len(ms)} changes, change to row: median {median(ms):.0f} ms, p95 {p95:.0f} ms, "
          f"max {ms[-1]:.0f} ms (load {load_before[0]:.1f} -> {load_after[0]:.1f}; {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
