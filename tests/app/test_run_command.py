"""`python -m cli run` (what `make run` calls) stops the processes it started when it is told to
stop with a plain `kill`, as with Ctrl-C: a killed run must not leave the sandbox holding its port.
It loads the demo world (and its public demo sign-ins) only on the embedded default or with
`--demo`, never into a real deployment's empty database."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from core.settings import ROOT
from tests.support.servers import free_port


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_sigterm_stops_the_sandbox_and_the_dashboard(tmp_path: Path) -> None:
    dash, sandbox = free_port(), free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}",
           "MEMBERDESK_ENCRYPTION_KEYS": "fEhmDxvhCpEu4b16boUlf95HY5t4RM5suyOSd3CeyC8=",
           "STRIPE_API_BASE": f"http://127.0.0.1:{sandbox}", "STRIPE_API_KEY": "sk_test_run_command",
           "MEMBERDESK_SANDBOX_STATE": str(tmp_path / "sandbox.db"),
           "MEMBERDESK_SECRETS_FILE": str(tmp_path / "absent.toml")}
    proc = subprocess.Popen([sys.executable, "-m", "cli", "run", "--port", str(dash), "--demo-members", "30"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while not (_listening(dash) and _listening(sandbox)):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "the dashboard and the sandbox did not come up"
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        deadline = time.monotonic() + 15
        while (_listening(dash) or _listening(sandbox)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _listening(sandbox), "the sandbox kept running after the run was stopped"
        assert not _listening(dash), "the dashboard kept running after the run was stopped"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_taken_sandbox_port_moves_the_sandbox_and_its_webhooks_still_reach_the_database(tmp_path: Path) -> None:
    """The configured sandbox port is taken by something else: the run says so, the sandbox takes
    the next free port, the dashboard follows it, and a change made in the sandbox reaches the
    database through the webhook. The welcome lists how long each step took."""
    import re

    import stripe
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from core import crypto
    from core.models import Member

    key = "fEhmDxvhCpEu4b16boUlf95HY5t4RM5suyOSd3CeyC8="
    dash = free_port()
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    db = tmp_path / "run.db"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "MEMBERDESK_ENCRYPTION_KEYS": key,
           "STRIPE_API_BASE": f"http://127.0.0.1:{taken}", "STRIPE_API_KEY": "sk_test_run_command",
           "STRIPE_WEBHOOK_SECRET": "whsec_run_command_test", "PORT": str(dash),
           "MEMBERDESK_SANDBOX_STATE": str(tmp_path / "sandbox.db"),
           "MEMBERDESK_SECRETS_FILE": str(tmp_path / "absent.toml")}
    env.pop("SANDBOX_PORT", None)
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "cli", "run", "--demo", "--demo-members", "30"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_until_running(proc, log_path)
        out = log_path.read_text()
        moved = re.search(rf"port {taken} is taken: the Stripe sandbox uses port (\d+) instead", out)
        assert moved, out
        sandbox = int(moved.group(1))
        assert re.search(r"ready in [\d.]+ s not counting the install: migrate [\d.]+ s, demo world [\d.]+ s, servers [\d.]+ s", out), out
        assert f"http://127.0.0.1:{dash}" in out

        client = stripe.StripeClient("sk_test_run_command", base_addresses={"api": f"http://127.0.0.1:{sandbox}"})
        customer = client.v1.customers.create(params={"email": "run-hook@example.com", "name": "Run Hook"})
        crypto.set_keyring(crypto.KeyRing([key]))
        eng = create_engine(f"sqlite:///{db}")
        try:
            deadline = time.monotonic() + 10
            found = None
            while found is None and time.monotonic() < deadline:
                with Session(eng) as s:
                    found = s.scalar(select(Member.name).where(Member.stripe_customer_id == customer.id))
                time.sleep(0.05)
            assert found == "Run Hook", "the sandbox's webhook did not reach the database"
        finally:
            eng.dispose()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        squatter.close()


def test_a_pinned_sandbox_port_that_is_taken_stops_with_a_sentence(tmp_path: Path) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}",
           "MEMBERDESK_ENCRYPTION_KEYS": "fEhmDxvhCpEu4b16boUlf95HY5t4RM5suyOSd3CeyC8=",
           "STRIPE_API_BASE": "http://127.0.0.1:12111", "STRIPE_API_KEY": "sk_test_run_command",
           "SANDBOX_PORT": str(taken), "PORT": str(free_port()),
           "MEMBERDESK_SANDBOX_STATE": str(tmp_path / "sandbox.db"),
           "MEMBERDESK_SECRETS_FILE": str(tmp_path / "absent.toml")}
    try:
        done = subprocess.run([sys.executable, "-m", "cli", "run", "--demo-members", "5"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=180)
    finally:
        squatter.close()
    assert done.returncode == 2, done.stderr
    assert f"Port {taken} for the Stripe sandbox is taken (SANDBOX_PORT asks for it)" in done.stderr


def test_a_start_limit_under_a_second_is_refused_before_any_work(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}",
           "MEMBERDESK_ENCRYPTION_KEYS": "fEhmDxvhCpEu4b16boUlf95HY5t4RM5suyOSd3CeyC8=",
           "STRIPE_API_BASE": "http://127.0.0.1:12111", "STRIPE_API_KEY": "sk_test_run_command",
           "PORT": str(free_port()), "MEMBERDESK_SANDBOX_STATE": str(tmp_path / "sandbox.db"),
           "MEMBERDESK_SECRETS_FILE": str(tmp_path / "absent.toml")}
    done = subprocess.run([sys.executable, "-m", "cli", "run", "--demo-members", "5", "--healthy-within", "0"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 2, done.stderr
    assert "--healthy-within must be at least 1 second, not 0." in done.stderr
    assert not (tmp_path / "run.db").exists()


def _wait_until_running(proc: subprocess.Popen[str], log_path: Path) -> None:
    deadline = time.monotonic() + 180
    while "Memberdesk is running" not in log_path.read_text():
        assert proc.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, "the run did not come up"
        time.sleep(0.5)


def _live_env(tmp_path: Path) -> dict[str, str]:
    """A real deployment's settings: its own database, real Stripe (a live key, no sandbox)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMBERDESK_", "STRIPE_", "DATABASE_URL"))}
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path / 'prod.db'}",
                "MEMBERDESK_ENCRYPTION_KEYS": "fEhmDxvhCpEu4b16boUlf95HY5t4RM5suyOSd3CeyC8=",
                "MEMBERDESK_COOKIE_KEY": "run-command-" + "k" * 48, "STRIPE_API_KEY": "sk_live_x",
                "MEMBERDESK_SECRETS_FILE": str(tmp_path / "absent.toml"), "DEMO_MEMBERS": "20",
                "PORT": str(free_port())})
    return env


def _rows(db: Path) -> dict[str, int]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("members", "staff_accounts")}


def test_an_empty_production_database_gets_no_demo_world_and_no_demo_sign_ins(tmp_path: Path) -> None:
    """The reviewer's repro: a deployment's own empty database beside a live Stripe key. The run
    migrates and serves it, says in one sentence why no demo was loaded, and prints no demo
    passwords; the database holds no members and no staff accounts."""
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "cli", "run"], cwd=ROOT, env=_live_env(tmp_path),
                                stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_until_running(proc, log_path)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    out = log_path.read_text()
    assert ("The database has no members, and no demo world or demo sign-ins were loaded into it: it is not the "
            "embedded default (SQLite under data/ with the local Stripe sandbox) and --demo was not given.") in out
    assert "demo-pass" not in out and "Demo sign-ins" not in out
    assert _rows(tmp_path / "prod.db") == {"members": 0, "staff_accounts": 0}


def test_asking_for_the_demo_beside_real_stripe_stops_before_any_work(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "cli", "run", "--demo"], cwd=ROOT, env=_live_env(tmp_path),
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 2, done.stderr
    assert "--demo needs the local Stripe sandbox" in done.stderr
    assert not (tmp_path / "prod.db").exists()
