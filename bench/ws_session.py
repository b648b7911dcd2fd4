"""One staff session driven over Streamlit's websocket protocol, without a browser.

What a browser tab does between the server and the screen, minus the drawing: it opens
``/_stcore/stream`` with the tab's cookies, asks for a script run of a page (a ``BackMsg`` holding a
``rerun_script`` client state: the page's script hash, no widget state, the tab's URL and time
zone) and reads the ``ForwardMsg`` stream the run sends back until its ``script_finished``. The
messages are Streamlit's own protobuf classes (``streamlit.proto``), the client is the
``websockets`` package Streamlit itself depends on.

Why: ten staff sessions are ten people at ten computers. Driven as ten browser contexts on this
2-core machine, the ten Chromium renderers take the cores the server needs (load 10-14 in every
such run), and the figure says as much about the browser as about the server. Driven here, each
page time is the server's answer as a person's browser receives it: from asking for the page
until the run's last message has arrived. Drawing it is the person's computer's work, measured
once per page in the browser by the rest of ``bench.ux_bench``.

The session signs in with a real sign-in cookie, taken from a browser that signed in through the
form (``bench.ux_bench``): the server's first run reads it from the websocket's handshake like
any other tab's.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.asyncio.client import ClientConnection, connect


@dataclass(frozen=True)
class Page:
    title: str
    script_hash: str
    url_path: str


@dataclass
class Run:
    """What one script run sent: its page, how long it took to arrive whole, what went wrong."""

    ms: float
    page_hash: str = ""
    pages: list[Page] = field(default_factory=list)  # the navigation the run drew (visible pages)
    exceptions: list[str] = field(default_factory=list)  # tracebacks shown on the page


class Session:
    """``async with Session(base, cookies) as s: run = await s.open(page)``."""

    def __init__(self, base: str, cookies: dict[str, str], timezone: str = "UTC") -> None:
        self.base = base.rstrip("/")
        self.cookies = cookies
        self.timezone = timezone
        self._ws: ClientConnection | None = None

    async def __aenter__(self) -> Session:
        url = self.base.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/_stcore/stream"
        headers = {"Origin": self.base, "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        # Streamlit's messages can be large (tables, figures): no frame size limit, as in a browser.
        self._ws = await connect(url, subprotocols=["streamlit"], additional_headers=headers,
                                 max_size=None, open_timeout=60, ping_interval=None)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._ws is not None:
            await self._ws.close()

    async def open(self, page: Page | None, timeout_s: float = 180.0) -> Run:
        """Ask for ``page`` (None: the app's default page, as a fresh tab on ``/``) and wait for the
        last message of the run(s) it starts: a run that ends asking for another (``st.rerun``)
        is followed by that one."""
        assert self._ws is not None
        msg = BackMsg()
        state = msg.rerun_script
        state.page_script_hash = page.script_hash if page else ""
        state.context_info.timezone = self.timezone
        state.context_info.locale = "en-US"
        state.context_info.url = f"{self.base}/{page.url_path if page else ''}"
        t = time.perf_counter()
        await self._ws.send(msg.SerializeToString())
        run = Run(ms=0.0)
        deadline = t + timeout_s
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"no end of the run within {timeout_s:.0f} s")
            data = await asyncio.wait_for(self._ws.recv(), left)
            if not isinstance(data, bytes):
                continue
            fwd = ForwardMsg()
            fwd.ParseFromString(data)
            kind = fwd.WhichOneof("type")
            if kind == "new_session":
                run.page_hash = fwd.new_session.page_script_hash
            elif kind == "navigation":
                run.pages = [
                    Page(p.page_name, p.page_script_hash, p.url_pathname)
                    for p in fwd.navigation.app_pages
                    if not p.is_hidden
                ]
            elif kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                element = fwd.delta.new_element
                if element.WhichOneof("type") == "exception":
                    run.exceptions.append(f"{element.exception.type}: {element.exception.message}"[:200])
            elif kind == "script_finished" and fwd.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                run.ms = (time.perf_counter() - t) * 1000
                return run
