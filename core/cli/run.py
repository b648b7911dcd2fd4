"""``python -m core run``: what ``make run`` does after installing the requirements.

1. For the embedded default (no DATABASE_URL and no secrets file), create ``.streamlit/secrets.toml``
   with a fresh encryption key, cookie key and sandbox key (git-ignored). Anywhere else a missing
   key stops here with a sentence.
2. Migrate the database.
3. On first start (no members yet), generate the demo world into the database and the sandbox.
4. Start the local Stripe sandbox beside the dashboard when STRIPE_API_BASE points at it; with a
   real Stripe key configured, use Stripe itself.
5. Print the address and the demo sign-ins, then run Streamlit until interrupted.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from sqlalchemy import func, select

from core.cli.common import CommandError, engine, progress
from core.db import session_scope
from core.db.migrate import upgrade
from core.demo_accounts import DEMO_ACCOUNTS
from core.models import Member
from core.settings import DEFAULT_DATA_DIR, DEFAULT_SECRETS_FILE, ROOT, load_settings

DEMO_MEMBERS = 5000
DEMO_SEED = 42
SANDBOX_STATE = DEFAULT_DATA_DIR / "sandbox.db"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="set up and serve the dashboard (what `make run` calls)", description=__doc__)
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8501)))
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--demo-members", type=int, default=DEMO_MEMBERS)
    p.set_defaults(func=run)


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


def _embedded_default() -> bool:
    return not os.environ.get("DATABASE_URL") and not os.environ.get("MEMBERDESK_ENCRYPTION_KEYS")


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:
        raise CommandError(f"PORT must be a number from 1 to 65535, not {args.port}.")
    started = time.monotonic()
    if _embedded_default() and not DEFAULT_SECRETS_FILE.exists():
        subprocess.run(_python("core", "init-local"), check=True, cwd=ROOT)
    cfg = load_settings()
    eng = engine(cfg, require_schema=False)
    progress("migrating the database ...")
    upgrade(eng)

    with session_scope(eng) as session:
        members = session.scalar(select(func.count()).select_from(Member)) or 0
    sandbox_state = Path(os.environ.get("MEMBERDESK_SANDBOX_STATE", SANDBOX_STATE))
    if members == 0:
        progress(f"first start: generating the demo world ({args.demo_members:,} members, three years) ...")
        demo = _python("core", "demo", "--members", str(args.demo_members), "--seed", str(DEMO_SEED))
        if cfg.uses_sandbox:
            demo += ["--sandbox-state", str(sandbox_state)]
        subprocess.run(demo, check=True, cwd=ROOT)
    else:
        progress(f"database has {members:,} members; keeping them")

    children: list[subprocess.Popen[bytes]] = []
    # A plain `kill` (SIGTERM) ends this process like Ctrl-C does, through the `finally` below,
    # so the sandbox and the dashboard are stopped too instead of left holding their ports.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if cfg.uses_sandbox:
            children.append(_start_sandbox(cfg.stripe_api_base, cfg.stripe_api_key, sandbox_state))
        elif cfg.stripe_api_key:
            progress("using Stripe itself (STRIPE_API_KEY is set and STRIPE_API_BASE is not a local sandbox)")
        dashboard = subprocess.Popen(
            _python("streamlit", "run", str(ROOT / "dashboard" / "app.py"), "--server.port", str(args.port),
                    "--server.address", args.address, "--server.headless", "true"),
            cwd=ROOT,
        )
        children.append(dashboard)
        _wait_healthy(f"http://{args.address}:{args.port}/_stcore/health", dashboard, "the dashboard")
        _print_welcome(args.address, args.port, time.monotonic() - started)
        return dashboard.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _start_sandbox(base: str, api_key: str, state: Path) -> subprocess.Popen[bytes]:
    port = base.rsplit(":", 1)[-1].split("/")[0]
    progress(f"starting the local Stripe sandbox on {base} ...")
    proc = subprocess.Popen(
        _python("core", "sandbox", "--port", port, "--state", str(state), "--api-key", api_key), cwd=ROOT,
    )
    _wait_healthy(f"{base}/v1/customers?limit=1", proc, "the Stripe sandbox", api_key=api_key)
    return proc


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], what: str, api_key: str = "", seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CommandError(f"{what} stopped while starting (exit code {proc.returncode}); see the lines above.")
        try:
            with urllib.request.urlopen(request, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise CommandError(f"{what} did not answer within {seconds:.0f} seconds.")


def _print_welcome(address: str, port: int, seconds: float) -> None:
    lines = [
        "",
        f"Memberdesk is running at http://{address}:{port}  (ready in {seconds:.0f} s; Ctrl-C stops it)",
        "Demo sign-ins (one per role):",
        *[f"  {username:8} / {password:18} {roles}" for username, _name, roles, password in DEMO_ACCOUNTS],
        "",
    ]
    print("\n".join(lines), flush=True)
