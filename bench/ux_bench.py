"""The user's experience, measured in a browser: ``python -m bench.ux_bench``.

One command, public tools only (``python -m cli run``, Playwright driving Debian's Chromium), and
only the product's public surface (its start command, HTTP, what the browser shows), so it keeps
working while the server's start and the pages' reads change underneath:

1. a scratch folder, database and Stripe sandbox; ``python -m cli run --demo`` (what ``make run`` calls;
   ``--demo`` because a scratch database is not the embedded default) generates ``make run``'s demo world on first start (``--members``, default 5,000, seed 42) and
   serves the dashboard and the sandbox; time to healthy is measured (first start and restarts);
2. per role (support, finance, manager, admin): restart the server, sign in (the first page after
   a restart: *cold*), open every page the role sees from the navigation (the first visit since
   the restart: *first*), then the pages in turn again (*warm*: median and p95 of ``--warm`` rounds, 5; each visit comes from another page);
3. member search on the Members page (each query typed once: nothing cached);
4. a staff change end to end: a support agent cancels a membership at the period's end and undoes
   it (Preview, then Confirm until "Done." shows: Stripe's sandbox and our rows);
5. ``--sessions`` concurrent staff sessions walking their pages ``--rounds`` times: p50/p95 page
   time. ``--drive websocket`` (default): each session speaks Streamlit's websocket protocol
   (``bench.ws_session``) with a cookie from a sign-in through the form, as ten people's browsers
   on their own computers; ``--drive browser``: each its own browser context in this machine's
   Chromium, signing in together (the renderers then share the server's 2 cores);
6. the server's CPU time beside each figure (the Streamlit process; the database server's not), its
   RSS after each step and at peak, and the load average
   beside every figure. Times are of the day they run at (the Overview opens on "Month to date").

Progress goes to stderr as each figure comes (flushed, with the load), the report to stdout at the
end. Every wait has a timeout: a page after 180 s, a step (one role's pages, the searches, the
change, the concurrent sessions) after ``--step-timeout`` (1,800 s), closing the browser after
30 s. A page or step that fails is said at once (with a screenshot in the temporary folder's
``memberdesk-ux-failures``), listed under "Problems seen", and the run goes on with the rest; a
concurrent session stops after two failed pages in a row. A "Sign in" press the server lost under
load (the form back, idle, still asking) is pressed again, as a person would.

A page's time runs from the click (or the sign-in) until the script run it started has ended, as
the browser received it on the websocket (Streamlit's ``script_finished``; ``Runs``), and the page
has drawn that end (Streamlit's ``data-test-script-state`` back to ``notRunning``, seen at the next
animation frame); charts may still paint after that. Beside it, a visit's *first screen*: from the
click until the window is full of the new page (one of its elements starts below the window's
bottom edge, or the run has ended) and every chart reaching into the window has drawn
(``FIRST_SCREEN``): what a person sees before scrolling, while the parts below may still come. A
staff change's time runs from Confirm until its "Done." shows (after the rerun that shows it). The browser runs on the same 2 cores as the server.

Options: ``--db sqlite|postgresql`` (PostgreSQL: a scratch database, dropped afterwards),
``--members N``, ``--sessions N``, ``--write-docs`` (replace this database and size's browser
table in docs/benchmarks.md; other sizes' tables stay), ``--keep`` (keep the scratch folder and
database).

``--database-url URL`` measures an existing, populated database instead (a world too large to
generate on every run, e.g. the L world of ``python -m bench.demo_bench --keep``): nothing is
generated, ``python -m cli run`` starts on it as it is (its first start is reported as such),
its encryption keys come from ``MEMBERDESK_ENCRYPTION_KEYS``. The demo sign-ins are created when
missing. The sandbox starts on a scratch state holding the catalogue and the one member the staff
change is made on, simulated again from the demo world that was loaded (``--world-seed``,
``--world-now``, ``--world-profile``: what the generator was given); when that member's Stripe
customer does not match the database's, the staff change is not measured and the report says so.
The database keeps what the benchmark writes (sign-ins, sessions, the change and its undo).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from bench.machine import cpu_model, free_port, load_average

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROLES = {"support": "support-demo-pass", "finance": "finance-demo-pass", "manager": "manager-demo-pass",
         "admin": "admin-demo-pass"}
SECTION = "## The user's experience in the browser"
COOKIE = "memberdesk_auth"  # the sign-in cookie's default name (the server's environment sets no other)
STEPS = ("pages", "search", "change", "concurrent")
FAILURES = Path(tempfile.gettempdir()) / "memberdesk-ux-failures"  # a screenshot of a step that failed
PAGE_TIMEOUT_MS = 180_000  # a page slower than this counts as this long, and as a problem (--page-timeout)
STEP_TIMEOUT_S = 1800.0  # a step still running after this long is ended and reported (--step-timeout)
CLOSE_TIMEOUT_S = 30.0  # closing a browser context or the browser: a hung one is left behind, not waited on
GIVE_UP_AFTER = 2  # a concurrent session whose pages fail this many times in a row stops (its server is gone)
SAID = re.compile(r"members? matche?s?|No member matches")
CHANGED_MEANWHILE = re.compile(r"changed after you opened the form")
SEARCHES = ["moreau", "fernandez", "lea moreau", "{email}", "{email_start}", "{customer}", "{member_id}"]

# Counts the messages the page's JavaScript has been handed on its current websocket (from the
# first byte of every document; reset per socket, as ``Runs`` counts them). The listener is added
# before Streamlit's own, so when the count is reached Streamlit has been handed them too.
COUNT = """
(() => {
  const Native = window.WebSocket;
  window.__mdReceived = 0;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      window.__mdReceived = 0;
      this.addEventListener('message', (e) => { if (typeof e.data !== 'string') window.__mdReceived++; });
    }
  };
})();
"""
# The page has been handed the run's last message and shows its outcome: Streamlit's own marker on
# the app back to notRunning and, when given, the address the page moved to or a text the run
# writes (the page's word joiners, which keep e-mail addresses from becoming links, left out),
# polled once an animation frame. (The marker alone cannot tell: it reads notRunning before and
# after a short run, and React commits the run's elements a moment after the messages came.)
DRAWN = """({n, path, text}) => window.__mdReceived >= n
  && document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state') === 'notRunning'
  && (!path || location.pathname.replace(/\\/$/, '') === path)
  && (!text || (document.querySelector('[data-testid=stMain]')?.innerText || '').replaceAll('\\u2060', '').includes(text))"""


# The first screen is shown: the page has been handed the run's first message (``new_session``:
# the previous page's elements are stale from then on) and shows the new address; the new run's
# elements fill the window (one of them starts below its bottom edge) or the run has ended; and
# every chart that reaches into the window has drawn (plotly's SVG is there). Elements arrive in
# the page's order, so what is above the fold is then all drawn; the charts and tables below it
# may still be coming.
FIRST_SCREEN = """({n, path}) => {
  if (window.__mdReceived < n || (path && location.pathname.replace(/\\/$/, '') !== path)) return false;
  const main = document.querySelector('[data-testid=stMain]');
  if (!main) return false;
  const fold = window.innerHeight;
  const fresh = [...main.querySelectorAll('[data-testid=stElementContainer][data-stale=false]')];
  const ended = document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state') === 'notRunning';
  if (!ended && !fresh.some((e) => e.getBoundingClientRect().top >= fold)) return false;
  return fresh.every((e) => {
    const chart = e.querySelector('[data-testid=stPlotlyChart]');
    return !chart || chart.getBoundingClientRect().top >= fold || !!chart.querySelector('.main-svg');
  });
}"""


class Runs:
    """The script runs of one browser page, as the browser receives them: Streamlit's own messages
    on the page's websocket (``new_session`` opens a run, ``script_finished`` closes it), read with
    Streamlit's protobuf classes, for every document the page loads.

    Why not the page's ``data-test-script-state`` alone: when a run's messages reach the browser in
    one batch (a short run on a busy server, whose messages wait for the event loop together), the
    page draws "notRunning" straight after "notRunning" and the attribute never changes. Timed by
    the attribute, such a click looked lost: the benchmark waited 15 s and clicked again, although
    the page had changed at once (seen on the websocket: the run's new_session, elements and
    script_finished within a second of the click, and the address already the new page's)."""

    def __init__(self, page: Any) -> None:
        self.first_ms: float | None = None  # the last timed action's first screen (``timed``)
        self.log: list[tuple[float, str]] = []  # (perf_counter, "started" | "finished" | "rerun")
        self.counts: list[int] = []  # beside each log entry: the binary messages on its socket so far
        self._frames = 0
        self._news = asyncio.Event()
        page.on("websocket", self._opened)

    def _opened(self, ws: Any) -> None:
        self._frames = 0  # a new socket (a new document): the page's count starts again too
        ws.on("framereceived", self._received)

    def _received(self, payload: str | bytes) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        if not isinstance(payload, bytes | bytearray):
            return
        self._frames += 1
        msg = ForwardMsg()
        try:
            msg.ParseFromString(bytes(payload))
        except Exception:  # noqa: BLE001 - not a message of Streamlit's: not a run's
            return
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            self.log.append((time.perf_counter(), "started"))
        elif kind == "script_finished":
            # A run that ends because st.rerun() asked for another is followed by that one.
            early = msg.script_finished == ForwardMsg.FINISHED_EARLY_FOR_RERUN
            self.log.append((time.perf_counter(), "rerun" if early else "finished"))
        else:
            return
        self.counts.append(self._frames)
        self._news.set()

    def started_count(self, mark: int) -> int | None:
        """The page's message count at the first run after ``mark`` (its ``new_session``)."""
        return next((n for (_, what), n in zip(self.log[mark:], self.counts[mark:], strict=True) if what == "started"),
                    None)

    def mark(self) -> int:
        """Where the log is now: the runs after this one are the ones an action starts."""
        return len(self.log)

    def started(self, mark: int) -> float | None:
        """When the first run after ``mark`` began (perf_counter), or None."""
        return next((t for t, what in self.log[mark:] if what == "started"), None)

    def settled(self, mark: int) -> bool:
        """A run began after ``mark``, and the last one has ended with no other asked for."""
        since = self.log[mark:]
        return any(what == "started" for _, what in since) and since[-1][1] == "finished"

    async def wait(self, ready: Any, timeout_ms: float, what: str) -> None:
        deadline = time.perf_counter() + timeout_ms / 1000
        while not ready():
            self._news.clear()
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"{what}: not within {timeout_ms / 1000:,.0f} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._news.wait(), left)


RUNS: weakref.WeakKeyDictionary[Any, Runs] = weakref.WeakKeyDictionary()


async def settle(page: Any, mark: int, timeout_ms: float = PAGE_TIMEOUT_MS, path: str = "", text: str = "") -> None:
    """Returns once the runs started after ``mark`` have ended, and the page has been handed their
    last message and shows the outcome (see DRAWN: ``path``, the address a navigation leads to;
    ``text``, a text the run writes). The websocket reports a frame when it arrives, before the
    page's JavaScript has taken it and React has drawn it."""
    runs = RUNS[page]
    await runs.wait(lambda: runs.settled(mark), timeout_ms, "the script run to end")
    await page.wait_for_function(DRAWN, arg={"n": runs.counts[-1], "path": path, "text": text}, polling="raf",
                                 timeout=timeout_ms)


def load() -> str:
    return load_average("/")


def say(message: str) -> None:
    """Progress on stderr as each figure or failure comes (flushed: a run that waits shows where)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message} (load {load()})", file=sys.stderr, flush=True)


# --- the server, through its public start command -------------------------------------------------

class ServerFailed(RuntimeError):
    """The server stopped while starting, or was not healthy in time."""


class Server:
    """``python -m cli run`` in its own process group; restartable; RSS of its Streamlit child."""

    def __init__(self, env: dict[str, str], port: int, members: int, log: Path, *, demo: bool):
        self.env, self.port, self.members, self.log = env, port, members, log
        self.demo = demo  # a scratch database is not the embedded default: ask for the demo world
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{port}"

    def start(self, timeout: float = 1800) -> float:
        """Start and wait until healthy; seconds from the command to the first healthy answer."""
        t = time.perf_counter()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli", "run", "--port", str(self.port), "--demo-members", str(self.members),
                 "--healthy-within", f"{timeout:.0f}", *(["--demo"] if self.demo else [])],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        while time.perf_counter() - t < timeout:
            if self.proc.poll() is not None:
                raise ServerFailed(f"the server stopped while starting; see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.base}/_stcore/health", timeout=2):
                    return time.perf_counter() - t
            except OSError:
                time.sleep(0.2)
        raise ServerFailed(f"the server was not healthy within {timeout:.0f} s; see {self.log}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _streamlit_pid(self) -> int | None:
        if self.proc is None:
            return None
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == self.proc.pid and b"streamlit" in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except (OSError, ValueError, IndexError):
                continue
        return None

    def cpu_ms(self) -> float | None:
        """CPU time (user + system, every thread) the Streamlit process has used so far; the
        database server's own processes are not in it."""
        pid = self._streamlit_pid()
        if pid is None:
            return None
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def rss_mib(self) -> float | None:
        pid = self._streamlit_pid()
        if pid is None:
            return None
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None


class PeakRss:
    """The server's RSS sampled twice a second in a thread while a step runs."""

    def __init__(self, server: Server):
        self.server, self.peak, self._stop = server, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.server.rss_mib() or 0.0)
            self._stop.wait(0.5)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- the browser ----------------------------------------------------------------------------------

@dataclass
class Figure:
    what: str
    role: str
    ms: float
    load: str
    note: str = ""
    cpu: float | None = None  # the server's CPU time in the same span (Streamlit process)
    p95: float | None = None  # of repeated visits (``ms`` is then their median)
    first: float | None = None  # the first screen shown (median if repeated; see FIRST_SCREEN)


async def with_cpu(server: Server, work: Any) -> tuple[Any, float | None]:
    """(what ``work`` returns, the server's CPU milliseconds while it ran)."""
    before = server.cpu_ms()
    out = await work
    after = server.cpu_ms()
    return out, (after - before) if before is not None and after is not None else None


def median_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def p95(values: list[float]) -> float:
    """The 95th percentile, interpolated between the measured values (5 visits: near the slowest)."""
    if len(values) < 2:
        return max(values or [0.0])
    return statistics.quantiles(values, n=20, method="inclusive")[18]


@dataclass
class Results:
    started: str = ""
    machine: str = ""
    world: str = ""
    starts: list[Figure] = field(default_factory=list)
    pages: list[Figure] = field(default_factory=list)
    searches: list[Figure] = field(default_factory=list)
    changes: list[Figure] = field(default_factory=list)
    concurrent: dict[str, Any] = field(default_factory=dict)
    rss: list[tuple[str, float | None, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, where: list[Figure], figure: Figure) -> None:
        where.append(figure)
        spread = f", p95 {ms(figure.p95)}" if figure.p95 is not None else ""
        cpu = f", server CPU {ms(figure.cpu)}" if figure.cpu is not None else ""
        first = f", first screen {ms(figure.first)}" if figure.first is not None else ""
        say(f"{figure.what} ({figure.role}): {ms(figure.ms)}{spread}{first}{cpu}" + (f"; {figure.note}" if figure.note else ""))

    def problem(self, text: str) -> None:
        self.problems.append(text)
        say(f"PROBLEM: {text}")


SLOW_MS = 3_000  # a page slower than this says where it waited
THINK_S = float(os.environ.get("UX_THINK_S", "0"))  # pause before each navigation click (not timed)


async def timed(page: Any, action: Any, timeout_ms: float = PAGE_TIMEOUT_MS, tries: int = 3, path: str = "",
                text: str = "") -> float:
    """Milliseconds from ``action()`` until the run it starts has ended and the page shows it
    (see ``Runs`` and ``settle``: ``path`` and ``text``, what the page must show). When no run begins within 15 s of the action (a click the page did not take),
    it is repeated as a person would, at most ``tries`` times; the time counts from the first."""
    runs = RUNS[page]
    mark = runs.mark()
    t0 = time.perf_counter()
    clicked = t0
    for attempt in range(tries):
        await action()
        clicked = time.perf_counter()
        try:
            await runs.wait(lambda: runs.started(mark) is not None, 15_000, "a run to begin")
            break
        except TimeoutError:
            if attempt == tries - 1:
                raise
            say(f"no run began within 15 s of the click (attempt {attempt + 1}, the page's address now "
                f"{page.url.split('/')[-1] or '/'}); clicking again")
    # The first screen, watched beside the whole run (it is usually shown before the run ends).
    shown: list[float] = []
    first = asyncio.create_task(page.wait_for_function(
        FIRST_SCREEN, arg={"n": runs.started_count(mark), "path": path}, polling="raf", timeout=timeout_ms))
    first.add_done_callback(lambda task: shown.append(time.perf_counter()) if not task.cancelled() else None)
    try:
        await settle(page, mark, timeout_ms, path, text)
        took = (time.perf_counter() - t0) * 1000
        await first
        runs.first_ms = (shown[0] - t0) * 1000
    finally:
        first.cancel()
    if took > SLOW_MS:
        # Where a slow one waited: for the element to take the click (Playwright waits until it is
        # visible, stable and not covered), for the run to begin (the request reaching the server
        # and its first message coming back), or for the run and the drawing.
        began = runs.started(mark) or clicked
        say(f"slow: {took:,.0f} ms = click taken after {(clicked - t0) * 1000:,.0f} ms, the run began "
            f"{(began - clicked) * 1000:,.0f} ms later and was drawn {(t0 + took / 1000 - began) * 1000:,.0f} ms "
            f"after that")
    return took


async def timed_goto(page: Any, url: str, timeout_ms: float = PAGE_TIMEOUT_MS) -> float:
    """Milliseconds from asking for ``url`` until its first script run has ended and is drawn."""
    mark = RUNS[page].mark()
    t = time.perf_counter()
    await page.goto(url, timeout=timeout_ms, wait_until="commit")
    await settle(page, mark, timeout_ms)
    return (time.perf_counter() - t) * 1000


async def problems_on(page: Any, where: str) -> list[str]:
    found = []
    if await page.locator("[data-testid=stException]").count():
        found.append(f"{where}: a traceback is shown")
    text = await page.locator("[data-testid=stMain]").inner_text(timeout=PAGE_TIMEOUT_MS)
    if "Traceback" in text:
        found.append(f"{where}: 'Traceback' in the page text")
    return found


async def failed(res: Results, page: Any, what: str, exc: BaseException) -> None:
    """One measurement that failed: said at once, with a screenshot, and the run goes on."""
    res.problem(f"{what} failed: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}")
    shot = FAILURES / (re.sub(r"[^a-z0-9]+", "-", what.lower()).strip("-") + ".png")
    try:
        await asyncio.wait_for(page.screenshot(path=str(shot), full_page=True, timeout=30_000), 40)
        say(f"screenshot: {shot}")
    except Exception:  # a page that cannot be drawn has nothing to show
        pass


async def sign_in(page: Any, base: str, role: str) -> float:
    await open_sign_in(page, base)
    return await submit_sign_in(page, role)


async def open_sign_in(page: Any, base: str) -> None:
    # Not until "load": what counts is the form showing and its run ended (waited for below).
    await page.goto(base, timeout=PAGE_TIMEOUT_MS, wait_until="commit")
    await page.get_by_label("Username").wait_for(timeout=PAGE_TIMEOUT_MS)
    await page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=PAGE_TIMEOUT_MS)


SIGN_IN_AGAIN = """() => {
  const app = document.querySelector('[data-testid=stApp]');
  return !document.querySelector('[data-testid=stSidebarNav] a') && !!app
    && app.getAttribute('data-test-script-state') === 'notRunning'
    && !!document.querySelector('input[autocomplete=username]');
}"""


async def submit_sign_in(page: Any, role: str, tries: int = 3) -> float:
    """Milliseconds from pressing "Sign in" until the navigation shows and the run that draws the
    first page has ended (signing in takes a run of its own, cookie and rerun, before the page's).
    Under load a press can be lost (the form is back, idle, still asking): as a person would, the
    form is filled and pressed again, at most ``tries`` times; the time counts from the first."""
    t = time.perf_counter()
    mark = RUNS[page].mark()
    nav = page.locator("[data-testid=stSidebarNav] a").first
    for attempt in range(tries):
        await page.get_by_label("Username").fill(role)
        await page.get_by_label("Password", exact=True).fill(ROLES[role])
        await page.get_by_role("button", name="Sign in").click()
        left = PAGE_TIMEOUT_MS - (time.perf_counter() - t) * 1000
        # Either the navigation shows, or the form is back and idle for 5 s: pressed for nothing.
        signed_in = asyncio.ensure_future(nav.wait_for(timeout=max(left, 1)))
        lost = asyncio.ensure_future(wait_lost(page, max(left, 1)))
        await asyncio.wait({signed_in, lost}, return_when=asyncio.FIRST_COMPLETED)
        for task in (signed_in, lost):
            task.cancel()
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: the outcome is read below
        if signed_in.done() and not signed_in.cancelled() and signed_in.exception() is None:
            break
        if attempt == tries - 1 or left <= 0:
            raise TimeoutError(f"signing in as {role}: no navigation after {attempt + 1} presses of Sign in")
        say(f"{role}: Sign in pressed again (the form came back without signing in)")
    await settle(page, mark)
    return (time.perf_counter() - t) * 1000


async def wait_lost(page: Any, timeout_ms: float) -> None:
    """Returns once the sign-in form has stood idle, not signed in, for 5 s in a row."""
    deadline = time.perf_counter() + timeout_ms / 1000
    idle_since = None
    while time.perf_counter() < deadline:
        if await page.evaluate(SIGN_IN_AGAIN):
            idle_since = idle_since or time.perf_counter()
            if time.perf_counter() - idle_since >= 5:
                return
        else:
            idle_since = None
        await asyncio.sleep(0.5)
    raise TimeoutError("signing in took too long")


async def nav_links(page: Any) -> list[tuple[str, str]]:
    """(title, href) of every page in the navigation, in order."""
    out = []
    for a in await page.query_selector_all("[data-testid=stSidebarNav] a"):
        href = await a.get_attribute("href") or ""
        title = (await a.inner_text()).strip().splitlines()[-1].strip()
        if (title, href) not in out:
            out.append((title, href))
    return out


async def open_page(page: Any, href: str) -> float:
    link = page.locator(f'[data-testid=stSidebarNav] a[href="{href}"]').first
    await asyncio.sleep(THINK_S)
    # The visit ends when the page shows the link's address (a click answered with another page
    # is not timed as a visit: it runs out of time and is reported).
    return await timed(page, lambda: link.click(timeout=PAGE_TIMEOUT_MS),
                       path=urlsplit(urljoin(page.url, href)).path.rstrip("/"))


async def new_page(browser: Any) -> tuple[Any, Any]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    context.set_default_navigation_timeout(PAGE_TIMEOUT_MS)
    await context.add_init_script(COUNT)
    page = await context.new_page()
    RUNS[page] = Runs(page)
    return context, page


async def close(what: Any) -> None:
    """Close a browser context (or the browser) without waiting on one that hangs."""
    try:
        await asyncio.wait_for(what.close(), CLOSE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - a context that will not close is left to the browser's end
        say(f"closing {type(what).__name__} failed: {type(exc).__name__}")


async def role_pass(browser: Any, server: Server, role: str, warm: int, res: Results) -> None:
    """Sign in (cold), each page's first visit, then each page ``warm`` times: median and p95.
    A page that fails is reported and the pass goes on with the next one."""
    context, page = await new_page(browser)
    try:
        try:
            await open_sign_in(page, server.base)
            ms_, cpu = await with_cpu(server, submit_sign_in(page, role))
            links = await nav_links(page)
        except Exception as exc:
            await failed(res, page, f"{role} sign-in", exc)
            return
        res.add(res.pages, Figure("sign-in → first page", role, ms_, load(),
                                  f"cold: first after a restart ({links[0][0] if links else '?'})", cpu))
        for title, href in links[1:]:
            try:
                ms_, cpu = await with_cpu(server, open_page(page, href))
                res.add(res.pages, Figure(title, role, ms_, load(), "first visit", cpu, first=RUNS[page].first_ms))
                for found in await problems_on(page, f"{role} {title}"):
                    res.problem(found)
            except Exception as exc:
                await failed(res, page, f"{role} {title} first visit", exc)
        # Warm: the role's pages in turn, ``warm`` rounds, each visit coming from another page as a
        # person moves between them. (Clicking the link of the page already shown, as this did
        # before, sometimes starts no run at all: about one click in sixty waited for the 15 s
        # retry below, a wait no one meets who moves between pages.)
        order = links[1:] + links[:1]
        if len(order) > 1 and order[0] == links[-1]:
            order = order[1:] + order[:1]
        runs_of: dict[str, list[tuple[float, float | None, float | None]]] = {title: [] for title, _ in order}
        failing: set[str] = set()
        for _ in range(warm):
            for title, href in order:
                if title in failing:
                    continue
                try:
                    took, cpu = await with_cpu(server, open_page(page, href))
                    runs_of[title].append((took, cpu, RUNS[page].first_ms))
                except Exception as exc:
                    await failed(res, page, f"{role} {title} warm visit {len(runs_of[title]) + 1}", exc)
                    failing.add(title)
        for title, _ in order:
            runs = runs_of[title]
            if runs:
                times = [r[0] for r in runs]
                res.add(res.pages, Figure(title, role, statistics.median(times), load(),
                                          f"warm, median of {len(runs)}", median_or_none([r[1] for r in runs]),
                                          p95=p95(times) if len(runs) > 1 else None,
                                          first=median_or_none([r[2] for r in runs])))
    finally:
        await close(context)


async def search_pass(browser: Any, server: Server, queries: list[str], res: Results) -> None:
    context, page = await new_page(browser)
    try:
        await sign_in(page, server.base, "support")
        members = next(h for t, h in await nav_links(page) if t == "Members")
        await open_page(page, members)
        box = page.get_by_role("textbox", name="Find a member")
        for query in queries:
            try:
                await box.fill(query, timeout=PAGE_TIMEOUT_MS)
                ms_, cpu = await with_cpu(server, timed(page, lambda: box.press("Enter", timeout=PAGE_TIMEOUT_MS),
                                                         text=f"“{query}”"))
                main = await page.locator("[data-testid=stMain]").inner_text(timeout=PAGE_TIMEOUT_MS)
                said = next((line for line in main.splitlines() if SAID.search(line)), "?")
                res.add(res.searches, Figure(query, "support", ms_, load(), said.strip()[:90], cpu))
            except Exception as exc:
                await failed(res, page, f"search {query!r}", exc)
    except Exception as exc:
        await failed(res, page, "member search", exc)
    finally:
        await close(context)


async def change_pass(browser: Any, server: Server, member_id: int, res: Results) -> None:
    context, page = await new_page(browser)
    try:
        await sign_in(page, server.base, "support")
        await signed_in_cookie(context)
        ms_, cpu = await with_cpu(server, timed_goto(page, f"{server.base}/members?member={member_id}"))
        await page.get_by_text("Make a change").wait_for(timeout=PAGE_TIMEOUT_MS)
        res.add(res.changes, Figure("member page (deep link, signed in by cookie)", "support", ms_, load(), cpu=cpu))
        for action, what in (("Cancel the membership", "cancel at period end"),
                             ("Undo a scheduled cancellation", "undo the cancellation")):
            await choose_action(page, action)
            await page.get_by_label("Comment (required)").fill("Benchmark: the member asked for it.")
            preview, preview_cpu, again = await preview_change(page, server)
            cpu0 = server.cpu_ms()
            t = time.perf_counter()
            await page.get_by_role("button", name="Confirm change").click()
            outcome = page.get_by_text(re.compile(r"^Done")).or_(page.locator("[data-testid=stAlertContentError]"))
            await outcome.first.wait_for(timeout=PAGE_TIMEOUT_MS)
            confirm = (time.perf_counter() - t) * 1000
            cpu1 = server.cpu_ms()
            confirm_cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
            shown = await page.get_by_text(re.compile(r"^Done")).count()
            await page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]")
            res.add(res.changes, Figure(f"{what}: Preview", "support", preview, load(),
                                        "" if not again else f"Preview pressed {again + 1} times: the member changed "
                                        "meanwhile (the sandbox's webhook of the previous change)", preview_cpu))
            res.add(res.changes, Figure(f"{what}: Confirm → “Done.”", "support", confirm, load(),
                                        "" if shown else "“Done.” not shown", confirm_cpu))
            if not shown:
                res.problem(f"staff change '{what}' did not show Done.")
    except Exception as exc:
        await failed(res, page, "staff change", exc)
    finally:
        await close(context)


async def signed_in_cookie(context: Any, timeout_s: float = PAGE_TIMEOUT_MS / 1000) -> None:
    """Wait until the browser holds the sign-in cookie. The page's cookie component writes it after
    the navigation shows, late under load: a deep link opened before that finds no cookie and shows
    the sign-in form."""
    deadline = time.perf_counter() + timeout_s
    while not any(c["name"] == COOKIE for c in await context.cookies()):
        if time.perf_counter() > deadline:
            raise TimeoutError(f"no sign-in cookie ({COOKIE}) after {timeout_s:.0f} s")
        await asyncio.sleep(0.25)


async def choose_action(page: Any, action: str, tries: int = 4) -> None:
    """Open the Action list and pick ``action``. A rerun landing on the click (the sign-in cookie
    component's, or the page's own) closes the list again: as a person would, it is opened again."""
    box = page.locator("[data-testid=stSelectbox]").filter(has_text="Action").first
    option = page.get_by_role("option", name=action).first
    for attempt in range(tries):
        await page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]")
        await box.click()
        try:
            await option.wait_for(timeout=10_000)
        except Exception:
            if attempt == tries - 1:
                raise
            continue
        await timed(page, lambda: option.click())
        return


async def preview_change(page: Any, server: Server, tries: int = 6) -> tuple[float, float | None, int]:
    """Press Preview until the Confirm button shows: (milliseconds, server CPU, extra presses). The
    form refuses a member that changed after it opened (here: the sandbox's webhook of the
    previous change arriving, late on a busy machine); a person presses Preview again."""
    total, cpu_total = 0.0, 0.0
    confirm, stale = page.get_by_role("button", name="Confirm change"), page.get_by_text(CHANGED_MEANWHILE)
    for attempt in range(tries):
        t, before = time.perf_counter(), server.cpu_ms()
        await page.get_by_role("button", name="Preview").click()
        # The refusal reruns the page (st.rerun) before it shows: wait for one answer or the other.
        await confirm.or_(stale).first.wait_for(timeout=PAGE_TIMEOUT_MS)
        await page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]")
        after = server.cpu_ms()
        total += (time.perf_counter() - t) * 1000
        cpu_total += (after - before) if before is not None and after is not None else 0.0
        if await confirm.count():
            return total, cpu_total, attempt
        await asyncio.sleep(2)  # a person reads the warning and the state shown before pressing again
    return total, cpu_total, tries - 1


async def one_session(browser: Any, server: Server, number: int, role: str, rounds: int, times: list[float],
                      res: Results) -> None:
    """One person's session: sign in, then every page of the role ``rounds`` times. Its page times
    go into ``times`` as they come (a step that is ended early keeps what was measured). A failed
    page counts as PAGE_TIMEOUT_MS; after GIVE_UP_AFTER failures in a row the session stops."""
    name = f"concurrent session {number} ({role})"
    context, page = await new_page(browser)
    done, in_a_row = 0, 0
    try:
        try:
            times.append(await sign_in(page, server.base, role))
            links = await nav_links(page)
            say(f"{name}: signed in, first page in {ms(times[-1])}")
        except Exception as exc:
            await failed(res, page, f"{name} sign-in", exc)
            times.append(PAGE_TIMEOUT_MS)
            return
        for _ in range(rounds):
            for title, href in links[1:] + links[:1]:
                try:
                    times.append(await open_page(page, href))
                    done, in_a_row = done + 1, 0
                except Exception as exc:  # one slow page is a figure, not the end of the session
                    await failed(res, page, f"{name} {title}", exc)
                    times.append(PAGE_TIMEOUT_MS)
                    in_a_row += 1
                    if in_a_row >= GIVE_UP_AFTER:
                        res.problem(f"{name} stopped after {in_a_row} failed pages in a row")
                        return
        say(f"{name}: signed in and {done} pages")
    finally:
        await close(context)


async def signed_in_cookies(browser: Any, server: Server, role: str) -> dict[str, str]:
    """The cookies of a browser that signed in as ``role`` through the form."""
    context, page = await new_page(browser)
    try:
        await sign_in(page, server.base, role)
        await page.wait_for_function(f"document.cookie.includes('{COOKIE}=')", timeout=PAGE_TIMEOUT_MS)
        return {c["name"]: c["value"] for c in await context.cookies(server.base)}
    finally:
        await close(context)


async def one_ws_session(server: Server, cookies: dict[str, str], number: int, role: str, rounds: int,
                         times: list[float], res: Results, titled: list[tuple[str, float]] | None = None) -> None:
    """One person's session over Streamlit's websocket protocol (``bench.ws_session``): a tab
    opened with the sign-in cookie (its first page), then every page of the role ``rounds``
    times. Failures count as in ``one_session``."""
    from bench.ws_session import Session

    name = f"concurrent session {number} ({role}, websocket)"
    done, in_a_row = 0, 0
    async with Session(server.base, cookies) as tab:
        first = await tab.open(None)
        times.append(first.ms)
        if titled is not None:
            titled.append(("first page (cookie)", first.ms))
        if not first.pages:
            raise RuntimeError(f"{name}: the first page shows no navigation (not signed in by the cookie)")
        for _ in range(rounds):
            for page in first.pages[1:] + first.pages[:1]:
                await asyncio.sleep(THINK_S)
                try:
                    run = await tab.open(page)
                except Exception as exc:  # one slow page is a figure, not the end of the session
                    res.problem(f"{name} {page.title} failed: {type(exc).__name__}: {exc}"[:300])
                    times.append(PAGE_TIMEOUT_MS)
                    in_a_row += 1
                    if in_a_row >= GIVE_UP_AFTER:
                        res.problem(f"{name} stopped after {in_a_row} failed pages in a row")
                        return
                    continue
                times.append(run.ms)
                if titled is not None:
                    titled.append((page.title, run.ms))
                done, in_a_row = done + 1, 0
                if run.page_hash != page.script_hash:
                    res.problem(f"{name}: asked for {page.title}, the server ran another page")
                for shown in run.exceptions:
                    res.problem(f"{name} {page.title}: a traceback is shown: {shown}")
    say(f"{name}: first page and {done} pages")


async def concurrent_pass(browser: Any, server: Server, sessions: int, rounds: int, drive: str,
                          res: Results) -> None:
    roles = list(ROLES)
    cookies: list[dict[str, str]] = []
    if drive == "websocket":  # signed in one by one through the form first; not timed
        for i in range(sessions):
            cookies.append(await signed_in_cookies(browser, server, roles[i % len(roles)]))
    before = load()
    times: list[float] = []
    titled: list[tuple[str, float]] = []  # (page, ms), websocket sessions: which pages the slow tail is
    t = time.perf_counter()
    try:
        with PeakRss(server) as peak:
            if drive == "websocket":
                work = [one_ws_session(server, cookies[i], i + 1, roles[i % len(roles)], rounds, times, res, titled)
                        for i in range(sessions)]
            else:
                work = [one_session(browser, server, i + 1, roles[i % len(roles)], rounds, times, res)
                        for i in range(sessions)]
            runs = await asyncio.gather(*work, return_exceptions=True)
        failed_ = [repr(r)[:200] for r in runs if isinstance(r, BaseException)]
        for f in failed_:
            res.problem(f"concurrent session failed: {f}")
    finally:  # also when the step's time ran out: what was measured is kept
        ordered = sorted(times)
        q = statistics.quantiles(ordered, n=20) if len(ordered) >= 20 else [max(ordered or [0])] * 19
        res.concurrent = {"sessions": sessions, "rounds": rounds, "drive": drive, "pages": len(ordered),
                          "p50": statistics.median(ordered or [0]), "p95": q[18], "max": max(ordered or [0]),
                          "wall": time.perf_counter() - t, "peak_rss": peak.peak, "load": f"{before} → {load()}",
                          "failed": sum(1 for x in ordered if x >= PAGE_TIMEOUT_MS)}
        tail = [title for title, took in titled if took >= q[18]]
        res.concurrent["tail"] = ", ".join(f"{title} {tail.count(title)}" for title in sorted(set(tail), key=tail.count,
                                                                                              reverse=True))
        c = res.concurrent
        say(f"{sessions} concurrent sessions: {c['pages']} page times, p50 {ms(c['p50'])}, p95 {ms(c['p95'])}, "
            f"max {ms(c['max'])}, {c['wall']:.0f} s, RSS peak {c['peak_rss']:.0f} MiB"
            + (f"; at or above the p95: {c['tail']}" if c["tail"] else ""))


async def step(res: Results, what: str, work: Any, timeout_s: float) -> None:
    """Run one step within ``timeout_s``; a failure or a step that runs out of time is reported
    beside the figures instead of ending the run."""
    say(f"{what} ...")
    try:
        await asyncio.wait_for(work, timeout_s)
    except TimeoutError:
        res.problem(f"{what} did not finish within {timeout_s:.0f} s (ended there)")
    except Exception as exc:  # the bench reports what it could not measure and goes on
        res.problem(f"{what} failed: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}")


async def restart(server: Server, role: str, res: Results) -> bool:
    """Restart the server (in a thread: the browser's connection is served meanwhile)."""
    server.stop()
    try:
        seconds = await asyncio.to_thread(server.start)
    except ServerFailed as exc:
        server.stop()
        res.problem(f"restart before {role}: {exc}")
        return False
    res.add(res.starts, Figure("restart → healthy", role, seconds * 1000, load()))
    return True


async def drive(server: Server, args: argparse.Namespace, env: dict[str, str], res: Results) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=120_000)
        try:
            for role in args.roles if "pages" in args.steps else []:
                if not await restart(server, role, res):
                    continue
                with PeakRss(server) as peak:
                    await step(res, f"{role}'s pages", role_pass(browser, server, role, args.warm, res),
                               args.step_timeout)
                res.rss.append((f"after {role}'s pages", peak.peak, load()))
            if not server.running() and not await restart(server, "the other steps", res):
                return
            try:
                samples = await asyncio.to_thread(sample_ids, env["DATABASE_URL"])
            except Exception as exc:  # noqa: BLE001 - the searches need them; the rest goes on
                res.problem(f"sample members for the searches: {type(exc).__name__}: {exc}"[:300])
                samples = {}
            if "search" in args.steps and samples:
                await step(res, "member search", search_pass(browser, server, [q.format(**samples) for q in SEARCHES],
                                                             res), args.step_timeout)
                res.rss.append(("after the searches", server.rss_mib(), load()))
            subscriber = samples.get("subscriber") if args.database_url is None else args.subscriber
            if subscriber and "change" in args.steps:
                await step(res, "staff change", change_pass(browser, server, int(subscriber), res), args.step_timeout)
            elif "change" in args.steps:
                res.problem(f"staff change not measured: {args.no_change or 'no active membership'}")
            if args.sessions and "concurrent" in args.steps:
                await step(res, f"{args.sessions} concurrent sessions",
                           concurrent_pass(browser, server, args.sessions, args.rounds, args.drive, res),
                           args.step_timeout)
                if res.concurrent:
                    res.rss.append((f"after {args.sessions} concurrent sessions (peak during)",
                                    res.concurrent["peak_rss"], res.concurrent["load"]))
        finally:
            await close(browser)


def sample_ids(url: str) -> dict[str, str]:
    """A member to search for and one whose active subscription a support agent may cancel."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        row = conn.execute(text("SELECT id, email, stripe_customer_id FROM members WHERE stripe_customer_id "
                                "IS NOT NULL ORDER BY id LIMIT 1 OFFSET 100")).one()
        sub = conn.execute(text("SELECT member_id FROM subscriptions WHERE status = 'active' AND "
                                "cancel_at_period_end = :f ORDER BY member_id LIMIT 1"), {"f": False}).scalar()
    engine.dispose()
    return {"member_id": str(row[0]), "email": row[1], "email_start": row[1].split("@")[0][:-2],
            "customer": row[2], "subscriber": str(sub or "")}


# --- the report -----------------------------------------------------------------------------------

def ms(value: float) -> str:
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def cpu_ms(value: float | None) -> str:
    return "?" if value is None else ms(value)


def report(res: Results, args: argparse.Namespace) -> str:
    if args.database_url:
        what = f"{args.existing_members:,} members (an existing database)"
        source = (f"--database-url URL --world-seed {args.world_seed} --world-now {args.world_now} "
                  f"--world-profile {args.world_profile}")
    else:
        what = f"{args.members:,} members (make run's demo world{'' if args.members == 5000 else ', larger'})"
        source = f"--members {args.members}"
    lines = [f"### {args.db}, {what}",
             "", f"Measured {res.started} on {res.machine} with `python -m bench.ux_bench --db {args.db} {source} "
             f"--roles {' '.join(args.roles)} --steps {' '.join(args.steps)} --sessions {args.sessions} "
             f"--rounds {args.rounds} --warm {args.warm}`; {res.world}. Load = 1/5/15-minute load average when the "
             "figure was taken (2 cores, shared; the browser runs on them too). *Server CPU* = the Streamlit "
             "process's CPU time in the same span (every thread, 10 ms steps; the database server's processes "
             "not counted): the rest of a time is the browser, the database and waiting for a core.", ""]
    lines += ["| step | role | time | load | note |", "|---|---|---:|---|---|"]
    for f in res.starts:
        lines.append(f"| {f.what} | {f.role} | {ms(f.ms)} | {f.load} | {f.note} |")
    if res.pages:  # a table only for a step that ran
        lines += ["", "| page | role | whole page (median if repeated) | p95 | first screen | server CPU | load | how |",
                  "|---|---|---:|---:|---:|---:|---|---|"]
    for f in res.pages:
        spread = "" if f.p95 is None else ms(f.p95)
        first = "" if f.first is None else ms(f.first)
        lines.append(f"| {f.what} | {f.role} | {'**' + ms(f.ms) + '**'} | {spread} | {first} | {cpu_ms(f.cpu)} "
                     f"| {f.load} | {f.note} |")
    if res.searches:
        lines += ["", "| member search (Members page, typed, Enter) | time | server CPU | load | the page said |",
                  "|---|---:|---:|---|---|"]
    for f in res.searches:
        lines.append(f"| `{f.what}` | **{ms(f.ms)}** | {cpu_ms(f.cpu)} | {f.load} | {f.note} |")
    if res.changes:
        lines += ["", "| staff change, end to end (support, sandbox Stripe) | time | server CPU | load | note |",
                  "|---|---:|---:|---|---|"]
        for f in res.changes:
            lines.append(f"| {f.what} | **{ms(f.ms)}** | {cpu_ms(f.cpu)} | {f.load} | {f.note} |")
    if res.concurrent:
        c = res.concurrent
        how = (f"{c['sessions']} sessions over Streamlit's websocket protocol (bench/ws_session.py: no browser "
               f"on this machine; each signed in through the form first, roles in turn), opening the app with "
               f"the sign-in cookie together, then every page of the role {c['rounds']} times; a page's time runs "
               f"until its run's last message has arrived (drawing not counted)"
               if c["drive"] == "websocket" else
               f"{c['sessions']} browser contexts in one Chromium on this machine (each its own cookies and "
               f"websocket; roles in turn), signing in together, then every page of the role {c['rounds']} times")
        lines += ["", f"Concurrent sessions: {how}: {c['pages']} page times, **p50 {ms(c['p50'])}, p95 {ms(c['p95'])}**, max {ms(c['max'])}; "
                  f"{c['wall']:.0f} s in all; server RSS peak {c['peak_rss']:.0f} MiB; load {c['load']}"
                  + (f"; {c['failed']} page(s) failed (counted as {ms(PAGE_TIMEOUT_MS)})" if c["failed"] else "")
                  + (f"; the pages at or above the p95: {c['tail']}" if c.get("tail") else "")
                  + "."]
    if res.rss:
        lines += ["", "| server RSS (Streamlit process) | MiB | load |", "|---|---:|---|"]
    for what, rss, ld in res.rss:
        lines.append(f"| {what} | {rss:.0f} | {ld} |" if rss else f"| {what} | ? | {ld} |")
    lines += ["", "Problems seen: " + ("; ".join(res.problems) if res.problems else "none (no traceback on any page).")]
    return "\n".join(lines) + "\n"


def _table_key(heading: str) -> str:
    """"### postgresql, 5,000 members (...)" -> "### postgresql, 5,000 members": one table per
    database and size."""
    return heading.split(" (")[0].strip()


def write_docs(block: str) -> None:
    path = ROOT / "docs" / "benchmarks.md"
    doc = path.read_text()
    heading = _table_key(block.splitlines()[0])
    start = doc.index(SECTION)
    end = doc.find("\n## ", start + len(SECTION))
    end = len(doc) if end < 0 else end + 1
    kept, skipping = [], False
    for line in doc[start:end].split("\n"):
        if line.startswith("### "):
            skipping = _table_key(line) == heading
        if not skipping:
            kept.append(line)
    path.write_text(doc[:start] + "\n".join(kept).rstrip("\n") + "\n\n" + block + "\n" + doc[end:])


# --- the command ----------------------------------------------------------------------------------

def scratch_env(folder: Path, db: str, pg_url: str) -> tuple[dict[str, str], str | None]:
    from cryptography.fernet import Fernet

    pg_db = None
    if db == "sqlite":
        url = f"sqlite:///{folder / 'memberdesk.db'}"
    else:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        pg_db = f"memberdesk_ux_{os.getpid()}"
        base = make_url(pg_url).set(drivername="postgresql+psycopg")
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{pg_db}"'))
        admin.dispose()
        url = make_url(pg_url).set(database=pg_db).render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "MEMBERDESK_", "DATABASE_URL"))}
    env.update({"DATABASE_URL": url, "MEMBERDESK_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
                "MEMBERDESK_COOKIE_KEY": "ux-bench-" + "x" * 60,
                "MEMBERDESK_SECRETS_FILE": str(folder / "secrets.toml"),
                "MEMBERDESK_SANDBOX_STATE": str(folder / "sandbox.db"),
                "STRIPE_API_BASE": f"http://127.0.0.1:{free_port()}", "STRIPE_API_KEY": "sk_test_uxbench"})
    return env, pg_db


def existing_env(folder: Path, url: str) -> dict[str, str]:
    """The server's environment on an existing database (its keys from this environment)."""
    keys = os.environ.get("MEMBERDESK_ENCRYPTION_KEYS", "")
    if not keys.strip():
        raise SystemExit("error: --database-url needs the database's MEMBERDESK_ENCRYPTION_KEYS in the environment")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "MEMBERDESK_", "DATABASE_URL"))}
    env.update({"DATABASE_URL": url, "MEMBERDESK_ENCRYPTION_KEYS": keys,
                "MEMBERDESK_COOKIE_KEY": "ux-bench-" + "x" * 60,
                "MEMBERDESK_SECRETS_FILE": str(folder / "secrets.toml"),
                "MEMBERDESK_SANDBOX_STATE": str(folder / "sandbox.db"),
                "STRIPE_API_BASE": f"http://127.0.0.1:{free_port()}", "STRIPE_API_KEY": "sk_test_uxbench"})
    return env


def prepare_existing(env: dict[str, str], args: argparse.Namespace) -> tuple[str, int, int | None, str]:
    """Demo sign-ins and a sandbox state for an existing database: (the world as counted, its
    members, the member the staff change may be made on or None, why not)."""
    from sqlalchemy import text

    from core import crypto
    from core.db import make_engine
    from demo import World, create_demo_staff, simulate_member
    from demo.stream import catalogue_objects, objects_of
    from demo.world import PROFILES
    from stripe_sandbox.store import SandboxStore

    crypto.set_keyring(crypto.KeyRing([k.strip() for k in env["MEMBERDESK_ENCRYPTION_KEYS"].split(",") if k.strip()]))
    engine = make_engine(env["DATABASE_URL"])
    try:
        created = create_demo_staff(engine)
        if created:
            print(f"demo sign-ins created: {', '.join(created)}", file=sys.stderr, flush=True)
        with engine.connect() as conn:
            counts = {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
                      for t in ("members", "payments", "membership_changes")}
            members = counts["members"]
            row = conn.execute(text(
                "SELECT m.id, m.stripe_customer_id FROM subscriptions s JOIN members m ON m.id = s.member_id "
                "WHERE s.status = 'active' AND s.cancel_at_period_end = :f ORDER BY s.member_id LIMIT 1"),
                {"f": False}).first()
    finally:
        engine.dispose()
    world = (f"an existing database: {counts['members']:,} members, {counts['payments']:,} payments, "
             f"{counts['membership_changes']:,} membership changes")
    store = SandboxStore(Path(env["MEMBERDESK_SANDBOX_STATE"]))
    try:
        store.import_objects(catalogue_objects())
        if row is None:
            return world, members, None, "no active membership to change"
        if args.world_now is None:
            return world, members, None, "the demo world's --world-now was not given"
        now = datetime.fromisoformat(args.world_now)
        now = now if now.tzinfo else now.replace(tzinfo=UTC)
        # Ids follow the member's index in a database the demo loaded into empty tables.
        story = simulate_member(World(seed=args.world_seed, members=members, now=now,
                                      profile=PROFILES[args.world_profile]), row[0] - 1)
        if story.customer is None or story.customer.get("id") != row[1]:
            return world, members, None, (f"member {row[0]} is not the demo world's (seed {args.world_seed}, now "
                                 f"{args.world_now}, {args.world_profile} profile)")
        store.import_objects(objects_of(story))
    finally:
        store.close()
    return world, members, row[0], ""


def drop_pg(pg_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(make_url(pg_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ux_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--members", type=int, default=5000, help="demo world size (make run's: 5,000)")
    p.add_argument("--roles", nargs="+", choices=tuple(ROLES), default=list(ROLES))
    p.add_argument("--warm", type=int, default=5, help="warm visits per page (median and p95)")
    p.add_argument("--sessions", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--drive", choices=("websocket", "browser"), default="websocket",
                   help="the concurrent sessions: Streamlit's websocket protocol (each person's browser on its own "
                        "computer; default) or browser contexts in this machine's Chromium")
    p.add_argument("--step-timeout", type=float, default=STEP_TIMEOUT_S, metavar="SECONDS",
                   help=f"a step (one role's pages, the searches, the change, the concurrent sessions) still "
                        f"running after this long is ended and reported (default {STEP_TIMEOUT_S:.0f})")
    p.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS), help="what to measure (default: all)")
    p.add_argument("--write-docs", action="store_true")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--database-url", help="measure this existing, populated database (nothing generated; keys "
                   "from MEMBERDESK_ENCRYPTION_KEYS); --db follows it")
    p.add_argument("--world-seed", type=int, default=1, help="with --database-url: the demo world's seed")
    p.add_argument("--world-now", help="with --database-url: the demo world's today (as given to the generator)")
    p.add_argument("--world-profile", choices=("default", "benchmark"), default="benchmark",
                   help="with --database-url: the demo world's profile")
    args = p.parse_args(argv)
    if args.database_url:
        args.db = "postgresql" if args.database_url.startswith("postgresql") else "sqlite"
    if not Path(CHROMIUM).exists():
        print(f"error: {CHROMIUM} is missing (apt-get install -y chromium)", file=sys.stderr)
        return 2
    folder = Path(tempfile.mkdtemp(prefix="memberdesk-ux-"))
    FAILURES.mkdir(exist_ok=True)
    res = Results(started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), machine=f"{os.cpu_count()} cores "
                  f"({cpu_model()}), Python {platform.python_version()}")
    if args.database_url:
        env, pg_db = existing_env(folder, args.database_url), None
        say("counting the existing world and preparing the sandbox ...")
        res.world, args.existing_members, args.subscriber, args.no_change = prepare_existing(env, args)
        say(res.world + (f"; the staff change is made on member {args.subscriber}" if args.subscriber
                         else f"; no staff change: {args.no_change}"))
    else:
        env, pg_db = scratch_env(folder, args.db, args.pg_url)
    server = Server(env, free_port(), args.members, folder / "server.log", demo=not args.database_url)
    try:
        load_before = load()
        say(f"first start: python -m cli run (server log: {server.log}) ...")
        try:
            first = server.start()
        except ServerFailed as exc:
            raise SystemExit(f"error: {exc}") from None
        res.add(res.starts, Figure("first start → healthy (migrate, start)" if args.database_url else
                                 "first start → healthy (migrate, generate the demo world, start)", "-",
                                 first * 1000, f"{load_before} → {load()}"))
        if not args.database_url:
            res.world = f"demo world of {args.members:,} members generated by the first start"
        try:
            asyncio.run(drive(server, args, env, res))
        except KeyboardInterrupt:  # Ctrl-C: the report of what was measured so far still follows
            res.problem("interrupted (Ctrl-C) before the last step ended")
        say("done; the report follows")
    finally:
        server.stop()
        if pg_db and not args.keep:
            drop_pg(args.pg_url, pg_db)
        if args.keep:
            print(f"scratch folder kept: {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    block = report(res, args)
    print(block)
    if args.write_docs:
        write_docs(block)
    return 1 if res.problems else 0


if __name__ == "__main__":
    sys.exit(main())
