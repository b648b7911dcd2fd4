"""``python -m cli run``: what ``make run`` does after installing the requirements.

1. For the embedded default (no DATABASE_URL and no secrets file), create ``.streamlit/secrets.toml``
   with a fresh encryption key, cookie key, sandbox key and webhook signing secret (git-ignored).
   Anywhere else a missing key stops here with a sentence.
2. Migrate the database.
3. On first start (no members yet), generate the demo world and its demo sign-ins into the
   database and the sandbox: only for the embedded default (SQLite under data/ with the local
   sandbox) or when ``--demo`` asks for it. Anywhere else an empty database stays empty and one
   line says why: the demo sign-ins have public passwords and must never reach a real deployment.
4. Start the local Stripe sandbox beside the dashboard when STRIPE_API_BASE points at it; with a
   real Stripe key configured, use Stripe itself. The sandbox delivers every event, signed with
   STRIPE_WEBHOOK_SECRET, to the dashboard's ``POST /stripe/webhook``. When the sandbox's port (or
   the dashboard's, unless PORT was given) is taken, a free one is used and the line says so;
   SANDBOX_PORT pins the sandbox's port.
5. Serve the dashboard and its endpoints (``dashboard/serve.py``: ``st.App`` under uvicorn), print
   the address, the demo sign-ins (when this is a demo) and how long each step took, then run until
   interrupted.
"""

from __future__ import annotations

import argparse
import os
import secrets as pysecrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import func, select

from cli.common import CommandError, engine, progress
from core.db import session_scope
from core.db.migrate import upgrade
from core.models import Member
from core.settings import DEFAULT_DATA_DIR, DEFAULT_DATABASE_URL, DEFAULT_SECRETS_FILE, ROOT, Settings, load_settings
from demo.accounts import DEMO_ACCOUNTS

DEMO_MEMBERS = 5000
DEMO_SEED = 42
SANDBOX_STATE = DEFAULT_DATA_DIR / "sandbox.db"
DEFAULT_PORT = 8501
HEALTHY_WITHIN = 120.0  # seconds the dashboard has to answer /healthz
PORT_SEARCH = 50  # ports tried after a taken default


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="set up and serve the dashboard (what `make run` calls)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=None,
                   help=f"dashboard port (default: PORT, else {DEFAULT_PORT} or the next free one)")
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--demo-members", type=int, default=None,
                   help=f"size of the demo world generated on first start (default: DEMO_MEMBERS, else {DEMO_MEMBERS})")
    p.add_argument("--demo", action="store_true",
                   help="load the demo world and its sign-ins into an empty database that is not the embedded "
                        "default (the Stripe sandbox must be the local one)")
    p.add_argument("--healthy-within", type=float, default=HEALTHY_WITHIN, metavar="SECONDS",
                   help=f"stop when the dashboard is not healthy within this long (default {HEALTHY_WITHIN:.0f}; "
                        "its start-up warms the first pages' answers, longer on a large database)")
    p.set_defaults(func=run)


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


def _embedded_default() -> bool:
    return not os.environ.get("DATABASE_URL") and not os.environ.get("MEMBERDESK_ENCRYPTION_KEYS")


def _is_demo(cfg: Settings, asked: bool) -> bool:
    """Whether this run may load the demo world (and its public demo sign-ins) into an empty
    database: the embedded default, or when asked for. Asked for beside real Stripe it stops: the
    demo's customers exist only in the local sandbox."""
    if asked and not cfg.uses_sandbox:
        raise CommandError("--demo needs the local Stripe sandbox (STRIPE_API_BASE at 127.0.0.1 or localhost); "
                           "the demo world is never loaded beside real Stripe.")
    return asked or (cfg.database_url == DEFAULT_DATABASE_URL and cfg.uses_sandbox)


class _Steps:
    """Times each step and says so; the welcome lists them all."""

    def __init__(self) -> None:
        self.started = time.monotonic() - _seconds_since_process_start()
        self.done: list[tuple[str, float]] = []

    @contextmanager
    def step(self, name: str, what: str) -> Iterator[None]:
        progress(f"{what} ...")
        t0 = time.monotonic()
        yield
        seconds = time.monotonic() - t0
        self.done.append((name, seconds))
        progress(f"{what}: done in {seconds:.1f} s")

    def summary(self) -> str:
        total = time.monotonic() - self.started
        rest = total - sum(seconds for _name, seconds in self.done)
        parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.done)
        return f"ready in {total:.1f} s not counting the install: {parts}, start-up and checks {rest:.1f} s"


def _seconds_since_process_start() -> float:
    """How long this process has run (Python's own start-up and imports included), on Linux; 0
    elsewhere, where the total then starts at the first step."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def _port_free(port: int, address: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def _pick_port(wanted: int, address: str, what: str, *, pinned: str | None) -> int:
    """``wanted`` when free; a pinned port that is taken stops with a sentence; otherwise the next
    free port after it (said on one line)."""
    if _port_free(wanted, address):
        return wanted
    if pinned:
        raise CommandError(f"Port {wanted} for {what} is taken ({pinned} asks for it): free it or choose another.")
    for port in range(wanted + 1, min(wanted + 1 + PORT_SEARCH, 65536)):
        if _port_free(port, address):
            progress(f"port {wanted} is taken: {what} uses port {port} instead")
            return port
    raise CommandError(f"Ports {wanted} to {wanted + PORT_SEARCH} are all taken; set {what}'s port explicitly.")


def _port_setting(name: str, value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise CommandError(f"{name} must be a number from 1 to 65535, not {value!r}.")
    return port


def run(args: argparse.Namespace) -> int:
    if not args.healthy_within >= 1:
        raise CommandError(f"--healthy-within must be at least 1 second, not {args.healthy_within:g}.")
    steps = _Steps()
    if args.port is not None:
        port = _port_setting("--port", str(args.port))
        port = _pick_port(port, args.address, "the dashboard", pinned="--port")
    elif os.environ.get("PORT"):
        port = _pick_port(_port_setting("PORT", os.environ["PORT"]), args.address, "the dashboard", pinned="PORT")
    else:
        port = _pick_port(DEFAULT_PORT, args.address, "the dashboard", pinned=None)
    if args.demo_members is None:
        raw = os.environ.get("DEMO_MEMBERS") or str(DEMO_MEMBERS)
        args.demo_members = int(raw) if raw.isdigit() else 0
    if args.demo_members < 1:
        raise CommandError("The demo world needs a whole number of members, 1 or more (DEMO_MEMBERS, --demo-members).")
    if _embedded_default() and not DEFAULT_SECRETS_FILE.exists():
        from cli.keys import run_init_local

        with steps.step("local secrets", "creating local secrets"):
            run_init_local(args)
    cfg = load_settings()
    demo_run = _is_demo(cfg, args.demo)
    # Ports first: a pinned port that is taken stops the run before any work is done.
    sandbox_base = _sandbox_base(cfg.stripe_api_base) if cfg.uses_sandbox else ""
    eng = engine(cfg, require_schema=False)
    with steps.step("migrate", "migrating the database"):
        upgrade(eng)

    with session_scope(eng) as session:
        members = session.scalar(select(func.count()).select_from(Member)) or 0
    sandbox_state = Path(os.environ.get("MEMBERDESK_SANDBOX_STATE", SANDBOX_STATE))
    if members == 0 and not demo_run:
        progress("The database has no members, and no demo world or demo sign-ins were loaded into it: it is not "
                 "the embedded default (SQLite under data/ with the local Stripe sandbox) and --demo was not given.")
    elif members == 0:
        demo = _python("cli", "demo", "--members", str(args.demo_members), "--seed", str(DEMO_SEED))
        if cfg.uses_sandbox:
            demo += ["--sandbox-state", str(sandbox_state)]
        with steps.step("demo world", f"first start: generating the demo world ({args.demo_members:,} members, three years)"):
            subprocess.run(demo, check=True, cwd=ROOT)
    else:
        progress(f"database has {members:,} members; keeping them")

    # What the children see: the sandbox's actual address and the signing secret they share.
    env = dict(os.environ)
    webhook_url = f"http://{_local(args.address)}:{port}/stripe/webhook"
    if sandbox_base:
        env["STRIPE_API_BASE"] = sandbox_base
        if not cfg.stripe_webhook_secret:  # a secrets file from before webhooks: one for this run
            env["STRIPE_WEBHOOK_SECRET"] = "whsec_" + pysecrets.token_hex(16)
    secret = env.get("STRIPE_WEBHOOK_SECRET") or cfg.stripe_webhook_secret

    children: list[subprocess.Popen[bytes]] = []
    # A plain `kill` (SIGTERM) ends this process like Ctrl-C does, through the `finally` below,
    # so the sandbox and the dashboard are stopped too instead of left holding their ports.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with steps.step("servers", "starting the Stripe sandbox and the dashboard" if sandbox_base
                        else "starting the dashboard"):
            # Both start at once; each is waited for below.
            sandbox = None
            if sandbox_base:
                sandbox = _start_sandbox(sandbox_base, cfg.stripe_api_key, sandbox_state, webhook_url, secret, env)
                children.append(sandbox)
            elif cfg.stripe_api_key:
                progress("using Stripe itself (STRIPE_API_KEY is set and STRIPE_API_BASE is not a local sandbox)")
            dashboard = subprocess.Popen(
                _python("streamlit", "run", str(ROOT / "dashboard" / "serve.py"), "--server.port", str(port),
                        "--server.address", args.address, "--server.headless", "true"),
                cwd=ROOT, env=env,
            )
            children.append(dashboard)
            if sandbox is not None:
                _wait_healthy(f"{sandbox_base}/v1/customers?limit=1", sandbox, "the Stripe sandbox",
                              api_key=cfg.stripe_api_key)
            # /healthz answers once the server has imported everything its pages need and warmed
            # the first pages' answers; on a busy machine that has taken 30 s, hence the generous
            # limit (--healthy-within: longer for a large database on a busy machine).
            _wait_healthy(f"http://{_local(args.address)}:{port}/healthz", dashboard, "the dashboard",
                          seconds=args.healthy_within)
        _print_welcome(args.address, port, steps.summary(), sandbox_base, demo_run)
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


def _local(address: str) -> str:
    """The address to reach a server bound to ``address`` from this machine."""
    return "127.0.0.1" if address in ("", "0.0.0.0", "::") else address


def _sandbox_base(configured: str) -> str:
    """The sandbox's address: SANDBOX_PORT when set (it must be free), else the configured port,
    else the next free one."""
    parts = urlsplit(configured)
    pinned = os.environ.get("SANDBOX_PORT")
    if pinned:
        port = _pick_port(_port_setting("SANDBOX_PORT", pinned), "127.0.0.1", "the Stripe sandbox", pinned="SANDBOX_PORT")
    else:
        port = _pick_port(parts.port or 80, "127.0.0.1", "the Stripe sandbox", pinned=None)
    return f"{parts.scheme}://{parts.hostname}:{port}"


def _start_sandbox(base: str, api_key: str, state: Path, webhook_url: str, secret: str,
                   env: dict[str, str]) -> subprocess.Popen[bytes]:
    port = base.rsplit(":", 1)[-1]
    progress(f"the local Stripe sandbox listens on {base} and delivers its events to {webhook_url}")
    cmd = _python("cli", "sandbox", "--port", port, "--state", str(state), "--api-key", api_key)
    if secret:
        cmd += ["--webhook-url", webhook_url, "--webhook-secret", secret]
    return subprocess.Popen(cmd, cwd=ROOT, env=env)


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
            time.sleep(0.2)
    raise CommandError(f"{what} did not answer within {seconds:.0f} seconds.")


def _print_welcome(address: str, port: int, summary: str, sandbox_base: str, demo_run: bool) -> None:
    sign_ins = (["Demo sign-ins (one per role):",
                 *[f"  {username:8} / {password:18} {roles}" for username, _name, roles, password in DEMO_ACCOUNTS]]
                if demo_run else ["Sign in with a staff account (`python -m cli staff add`; docs/deploy.md)."])
    lines = [
        "",
        f"Memberdesk is running at http://{address}:{port}  (Ctrl-C stops it)",
        f"  {summary}",
        *([f"  Stripe sandbox: {sandbox_base}; its events arrive at /stripe/webhook"] if sandbox_base else []),
        *sign_ins,
        "",
    ]
    print("\n".join(lines), flush=True)
