"""Memberdesk's server: the dashboard plus its HTTP endpoints, in one process.

``streamlit run dashboard/serve.py`` (what ``make run`` does) finds the ``st.App`` below and serves
it with uvicorn: the dashboard (``dashboard/app.py``, Streamlit's own routes) and, beside it,
``POST /stripe/webhook`` and ``GET /healthz`` (``core.stripe_webhooks.routes``). Streamlit's
``/_stcore/metrics`` is not served: it answers anyone, signed in or not (``HiddenPaths``); the
downloads at ``/media/`` need a live sign-in (``dashboard/media_guard.py``).

Like ``app.py``, this file lives in ``dashboard/`` with no ``pages/`` folder beside it: Streamlit
auto-serves such a folder without the sign-in (docs/security.md).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the launcher's folder is on the path, the project root is not
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.types import ASGIApp, Receive, Scope, Send  # noqa: E402

from core import log_privacy  # noqa: E402
from core.stripe_webhooks import routes  # noqa: E402
from dashboard.media_guard import SignedInMedia  # noqa: E402
from dashboard.sockets import nodelay_on_listening_sockets  # noqa: E402

log = logging.getLogger(__name__)

# Streamlit routes nobody may reach: the metrics endpoint needs no sign-in and tells anyone how many
# sessions are open and how much the caches hold. Matched at the end of the path so a
# server.baseUrlPath in front (``/memberdesk/_stcore/metrics``) is covered too.
HIDDEN_SUFFIXES = ("/_stcore/metrics",)


class HiddenPaths:
    """ASGI middleware: 404 for ``HIDDEN_SUFFIXES`` (any method), everything else passes through.
    It runs before Streamlit's own routing, so the route behind it is never reached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/").endswith(HIDDEN_SUFFIXES):
            await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)
            return
        await self.app(scope, receive, send)


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    # The listening socket is bound before the lifespan starts and accepts nothing until it is over.
    log.info("TCP_NODELAY set on %d listening socket(s)", nodelay_on_listening_sockets())
    async with routes.lifespan(app):
        yield


log_privacy.install()  # before the first request: no traceback in this server's log names a member's data
app = st.App(Path(__file__).resolve().parent / "app.py", routes=routes.ROUTES, lifespan=lifespan,
             middleware=[Middleware(HiddenPaths), Middleware(SignedInMedia)])
