"""Chromium through Playwright against a real server, and the steps a person takes in it.

- Fixtures ``browser`` (session scope: Debian's Chromium) and ``page`` (a fresh context per test),
  registered in ``tests/conftest.py``; browser tests are marked ``@pytest.mark.browser`` and
  ``@pytest.mark.xdist_group("browser")``.
- ``LateReruns(page)``: reruns the page asks for on its own land right after the next click's
  run has started (the worst timing a loaded machine can give).
- ``wait_idle(page)``: wait until the script has finished running (a click on an element the
  running script is about to redraw can miss it). ``sign_in``/``sign_in_as``,
  ``choose``/``pick_option`` (select boxes), ``make_change`` (a membership change through its
  form), ``preview`` (Preview and its answer), ``refund_again`` (the same refund typed twice is
  stopped).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROLE_ACCOUNTS = {"support": ("support", "support-demo-pass"), "finance": ("finance", "finance-demo-pass"),
                 "manager": ("manager", "manager-demo-pass"), "admin": ("admin", "admin-demo-pass")}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IDLE = "[data-testid=stApp][data-test-script-state=notRunning]"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page, 1280 px wide."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(30_000)  # generous: the suite shares two cores with other work
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()


def wait_idle(page: Any, timeout: float = 30_000) -> None:
    """Wait until the script has finished running (a click during a rerun can be dropped)."""
    page.wait_for_selector(IDLE, timeout=timeout)
    page.wait_for_timeout(300)
    page.wait_for_selector(IDLE, timeout=timeout)


class LateReruns:
    """What a loaded machine does at its worst, on purpose: every rerun the page asks for on its own
    (a message to the server carrying no click or submit, e.g. a component reporting its value) is
    held back and delivered right behind the person's next click or submit. Streamlit
    (``runner.fastReruns``) then stops the click's run and starts one from widget state whose click
    is already reset, so the click is lost. An app that never reruns on its own passes.

    ``LateReruns(page)`` before ``page.goto``; ``arm(skip=n)`` lets the next ``n`` clicks through
    as usual and holds what comes after them until the click after those."""

    def __init__(self, page: Any) -> None:
        self.held: list[Any] = []
        self.delivered = 0
        self._armed = False
        self._skip = 0
        page.route_web_socket("**/_stcore/stream", self._route)

    def arm(self, *, skip: int = 0) -> None:
        self._armed, self._skip = True, skip

    def _route(self, ws: Any) -> None:
        from streamlit.proto.BackMsg_pb2 import BackMsg

        server = ws.connect_to_server()

        def from_page(message: Any) -> None:
            msg = BackMsg.FromString(message if isinstance(message, bytes) else message.encode())
            clicked = any(w.WhichOneof("value") == "trigger_value" and w.trigger_value
                          for w in msg.rerun_script.widget_states.widgets)
            if self._armed and msg.WhichOneof("type") == "rerun_script" and not clicked:
                self.held.append(message)
                return
            server.send(message)
            if self._armed and clicked:
                if self._skip:
                    self._skip -= 1
                    return
                self._armed = False
                for held in self.held:
                    server.send(held)
                self.delivered += len(self.held)

        ws.on_message(from_page)  # what the server sends goes to the page unchanged


def sign_in(page: Any, username: str, password: str) -> None:
    page.get_by_role("textbox", name="Username").wait_for()
    wait_idle(page)
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_timeout(300)
    wait_idle(page)


def sign_in_as(page: Any, role: str) -> None:
    """Sign in with a role's demo account and wait until the browser holds the sign-in cookie:
    the page's cookie component writes it a moment after the page shows, late under load, and a
    link opened before that finds the sign-in form again (as a person's would)."""
    from tests.support.servers import COOKIE_NAME

    username, password = ROLE_ACCOUNTS[role]
    sign_in(page, username, password)
    for _ in range(300):
        if any(c["name"] == COOKIE_NAME for c in page.context.cookies()):
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"no sign-in cookie ({COOKIE_NAME}) 30 s after signing in as {role}")


# ------------------------------------------------------------------ steps a person takes

def fill_new_account(page: Any, username: str, name: str, role: str, password: str) -> None:
    """Fill the Admin page's "Create account" form (e-mail ``<username>@example.com``) and press it."""
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Full name", exact=True).fill(name)
    page.get_by_label("E-mail", exact=True).fill(f"{username}@example.com")
    roles = page.locator("[data-testid=stMultiSelect]").first.locator("input")
    roles.click()
    roles.fill(role)
    roles.press("Enter")
    page.keyboard.press("Escape")
    page.get_by_label("First password", exact=True).fill(password)
    page.get_by_role("button", name="Create account").click()


def pick_option(page: Any, box: Any, option: str) -> None:
    """Open a select box and pick ``option``; a click during a rerun can be dropped, so try again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(4):
        wait_idle(page)
        box.click()
        try:
            page.get_by_role("option", name=option).first.click(timeout=5_000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
            if attempt == 3:
                raise
    wait_idle(page)


def choose(page: Any, label: str, option: str) -> None:
    """Pick ``option`` in the select box labelled ``label``."""
    pick_option(page, page.locator("[data-testid=stSelectbox]").filter(has_text=label).first, option)


def preview(page: Any, answer: Any) -> None:
    """Click Preview and wait for ``answer`` (a locator): one click is enough, the page never
    reruns on its own (``LateReruns``)."""
    page.get_by_role("button", name="Preview").click()
    wait_idle(page)
    answer.wait_for()


def make_change(page: Any, action: str, comment: str, fill: dict[str, str] | None = None) -> None:
    """A membership change through the member page's form: the action, its fields and a comment,
    Preview, Confirm, and the "Done." answer."""
    choose(page, "Action", action)
    for label, value in (fill or {}).items():
        page.get_by_label(label).fill(value)
    page.get_by_label("Comment (required)").fill(comment)
    preview(page, page.get_by_role("button", name="Confirm change"))
    confirm_change(page)


def confirm_change(page: Any) -> None:
    """Confirm the previewed change and wait for its "Done." answer (shown once, on this rerun)."""
    page.get_by_role("button", name="Confirm change").click()
    wait_idle(page)
    page.get_by_text("Done.").first.wait_for()


def refund_again(page: Any, amount: str, comment: str, *, earlier_by: str) -> Any:
    """The same refund (in USD) typed again on the reset form: Preview stops it and names the
    earlier one (made by ``earlier_by``), with no Confirm button. Returns the warning's locator."""
    page.get_by_label("Amount (USD)").fill(amount)
    page.get_by_label("Comment (required)").fill(comment)
    warning = page.get_by_text(f"A refund of ${amount} on this payment was made by {earlier_by}")
    preview(page, warning)
    assert page.get_by_role("button", name="Confirm change").count() == 0
    return warning
