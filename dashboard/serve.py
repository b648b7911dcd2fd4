"""Memberdesk's server: the dashboard plus its HTTP endpoints, in one process.

``streamlit run dashboard/serve.py`` (what ``make run`` does) finds the ``st.App`` below and serves
it with uvicorn: the dashboard (``dashboard/app.py``, Streamlit's own routes) and, beside it,
``POST /stripe/webhook`` and ``GET /healthz`` (``core.stripe_webhooks.routes``).

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

from core.stripe_webhooks import routes  # noqa: E402
from dashboard.sockets import nodelay_on_listening_sockets  # noqa: E402

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    # The listening socket is bound before the lifespan starts and accepts nothing until it is over.
    log.info("TCP_NODELAY set on %d listening socket(s)", nodelay_on_listening_sockets())
    async with routes.lifespan(app):
        yield


app = st.App(Path(__file__).resolve().parent / "app.py", routes=routes.ROUTES, lifespan=lifespan)
