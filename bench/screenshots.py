"""Screenshots of every dashboard page on the demo data: ``python -m bench.screenshots``.

What it does, start to end, without touching your own database or secrets:
1. makes a scratch folder with a fresh SQLite database, migrates it and generates the demo world
   (``python -m cli demo``), which also creates the demo sign-ins;
2. starts ``streamlit run dashboard/app.py`` on a free local port in its own process group;
3. drives Debian's Chromium (``/usr/bin/chromium``) with Playwright: signs in as the demo admin
   (who sees every page), reads the page links from the navigation and saves one full-page
   PNG per page, 1280 px wide, into ``docs/screenshots/<page>.png``;
4. stops the server and removes the scratch folder.

Options: ``--members N`` (demo size, default 3000), ``--out DIR``, ``--keep`` (keep the scratch
folder), ``--database-url URL`` (use an existing, already populated database instead).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.machine import free_port

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTH, HEIGHT = 1280, 900
MAX_HEIGHT = 6000
IDLE = "[data-testid=stApp][data-test-script-state=notRunning]"
ADMIN = ("admin", "admin-demo-pass")


def scratch_env(folder: Path, database_url: str | None) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = dict(os.environ)
    env.update({
        "DATABASE_URL": database_url or f"sqlite:///{folder / 'memberdesk.db'}",
        "MEMBERDESK_ENCRYPTION_KEYS": env.get("MEMBERDESK_ENCRYPTION_KEYS") or Fernet.generate_key().decode(),
        "MEMBERDESK_COOKIE_KEY": "screenshots-" + "x" * 60,
        "MEMBERDESK_SECRETS_FILE": str(folder / "secrets.toml"),  # never read the developer's secrets
        "STRIPE_API_BASE": "",
        "STRIPE_API_KEY": "",
    })
    return env


def prepare(env: dict[str, str], members: int) -> None:
    py = [sys.executable, "-m", "cli"]
    subprocess.run([*py, "migrate"], check=True, cwd=ROOT, env=env)
    subprocess.run([*py, "demo", "--members", str(members), "--seed", "42"], check=True, cwd=ROOT, env=env)


def start_server(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the dashboard stopped while starting: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    stop_server(proc)
    raise SystemExit("the dashboard did not answer within 60 seconds")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def wait_idle(page, timeout: float = 60_000) -> None:
    page.wait_for_selector(IDLE, timeout=timeout)
    page.wait_for_timeout(400)  # let charts finish their first paint
    page.wait_for_selector(IDLE, timeout=timeout)


def sign_in(page, base: str) -> None:
    page.goto(base)
    page.wait_for_selector("input[type=password]", timeout=60_000)
    wait_idle(page)
    page.get_by_role("textbox", name="Username").fill(ADMIN[0])
    page.get_by_role("textbox", name="Password").fill(ADMIN[1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("[data-testid=stSidebarNav] a", timeout=60_000)
    wait_idle(page)


def page_links(page, base: str) -> list[tuple[str, str]]:
    """(slug, url) of every page in the navigation, in order."""
    out: list[tuple[str, str]] = []
    for a in page.query_selector_all("[data-testid=stSidebarNav] a"):
        href = a.get_attribute("href") or ""
        slug = href.rstrip("/").rsplit("/", 1)[-1].split("?")[0] or "overview"
        if slug.startswith("127.0.0.1"):
            slug = "overview"
        url = href if href.startswith("http") else f"{base}/{href.lstrip('/')}"
        if (slug, url) not in out:
            out.append((slug, url))
    return out


def shoot(base: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, accept_downloads=False)
        page = context.new_page()
        sign_in(page, base)
        for slug, url in page_links(page, base):
            page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
            page.goto(url)
            wait_idle(page)
            # Streamlit scrolls inside its main container, not the document: grow the window to
            # the content's height so one picture shows the whole page.
            tall = page.evaluate("() => (document.querySelector('[data-testid=stMain]') || document.body).scrollHeight")
            page.set_viewport_size({"width": WIDTH, "height": max(HEIGHT, min(int(tall) + 40, MAX_HEIGHT))})
            wait_idle(page)
            path = out / f"{slug}.png"
            page.screenshot(path=str(path), full_page=True)
            saved.append(path)
            print(f"saved {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", flush=True)
        browser.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.screenshots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"error: {CHROMIUM} is missing; install Debian's chromium (apt-get install -y chromium).", file=sys.stderr)
        return 2
    folder = Path(tempfile.mkdtemp(prefix="memberdesk-shots-"))
    env = scratch_env(folder, args.database_url)
    proc = None
    try:
        if args.database_url is None:
            prepare(env, args.members)
        port = free_port()
        proc = start_server(env, port)
        saved = shoot(f"http://127.0.0.1:{port}", args.out)
        print(f"{len(saved)} screenshots in {args.out}", flush=True)
        return 0 if saved else 1
    finally:
        if proc is not None:
            stop_server(proc)
        if args.keep:
            print(f"scratch folder kept: {folder}", flush=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
