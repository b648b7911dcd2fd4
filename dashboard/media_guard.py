"""Downloads only for the signed in: an ASGI middleware in front of Streamlit's ``/media/`` route.

Streamlit serves a download button's file (every CSV export) at ``/media/<hash>.csv`` to anyone
who has the address, signed in or not, for as long as it keeps the file. An export of member
data whose address leaked (download history, a proxy's log) stayed readable after its owner
signed out. Here a ``/media/`` request passes only with the sign-in cookie of a live session of an
active account, checked as the pages check it (the cookie's signature and expiry, then the
session row and the account in the database); anything else gets 403 and a sentence.

Plain Starlette: the database read runs in the thread pool, never on the event loop that also
carries the dashboard's websockets.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import jwt
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from core import staff
from core.db import connect
from core.settings import SettingsError, load_settings

log = logging.getLogger(__name__)

MEDIA = "/media/"


def signed_in(cookies: dict[str, str]) -> bool:
    """Whether these cookies hold the sign-in of a live session of an active account."""
    try:
        cfg = load_settings()
        key = cfg.require_cookie_key()
    except SettingsError:
        return False
    raw = cookies.get(cfg.cookie_name)
    if not raw:
        return False
    try:
        claims: Any = jwt.decode(raw, key, algorithms=["HS256"])
    except jwt.PyJWTError:
        return False
    if not (isinstance(claims, dict) and isinstance(claims.get("username"), str) and isinstance(claims.get("sid"), str)
            and isinstance(claims.get("exp_date"), int | float) and claims["exp_date"] > time.time()):
        return False
    try:
        account = staff.session_account(connect(cfg), claims["sid"], claims["username"])
    except Exception as exc:  # a database that cannot answer refuses, as the pages do
        log.warning("media download refused: the session could not be checked (%s)", type(exc).__name__)
        return False
    return account.session.live and account.active


class SignedInMedia:
    """403 for ``/media/`` without a live sign-in (a ``server.baseUrlPath`` in front is covered)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and MEDIA in scope["path"]
                and not await run_in_threadpool(signed_in, Request(scope).cookies)):
            await PlainTextResponse("Sign in to Memberdesk to download this file.", status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)
