"""Downloads only for whoever made them: an ASGI middleware in front of Streamlit's ``/media/``.

Streamlit serves a download button's file (every CSV export) at ``/media/<hash>.csv`` to anyone
who has the address, signed in or not, for as long as it keeps the file. An export of member
data whose address leaked (download history, a proxy's log) stayed readable after its owner
signed out, and to a colleague whose role may not open the page it came from. Here a ``/media/``
request passes only with the sign-in cookie of a live session of an active account (checked as the
pages check it: the cookie's signature and expiry, then the session row and the account in the
database), of the person whose press made that file (``claim``, called by the one download path,
``dashboard.widgets.csv_download``); anything else gets 403 and a sentence.

Plain Starlette: the database read runs in the thread pool, never on the event loop that also
carries the dashboard's websockets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
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
_KEPT = 10_000  # files remembered (Streamlit keeps a file while a session shows its button)
_owners: OrderedDict[str, set[str]] = OrderedDict()
_lock = threading.Lock()


def file_id(data: bytes, mimetype: str, filename: str) -> str:
    """The id Streamlit gives these bytes in its address (a digest of the data, type and name)."""
    from streamlit.runtime.memory_media_file_storage import _calculate_file_id  # the id it serves under

    return _calculate_file_id(data, mimetype, filename)


def claim(data: bytes, mimetype: str, filename: str, username: str) -> None:
    """``username`` made this file: its address works for them (two people making the same bytes
    share the address, and both may fetch it)."""
    key = file_id(data, mimetype, filename)
    with _lock:
        _owners.setdefault(key, set()).add(username)
        _owners.move_to_end(key)
        while len(_owners) > _KEPT:
            _owners.popitem(last=False)


def _owns(path: str, username: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    with _lock:
        return username in _owners.get(name.split(".", 1)[0], ())


def signed_in(cookies: dict[str, str], path: str = "") -> bool:
    """Whether these cookies hold the sign-in of a live session of an active account that made the
    file at ``path`` (any signed-in person when ``path`` is empty)."""
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
    return account.session.live and account.active and (not path or _owns(path, claims["username"]))


def is_download(path: str) -> bool:
    """``/media/<file>`` (after a ``server.baseUrlPath``): Streamlit's downloads. Not its own
    ``/static/media/`` fonts and icons, which every page needs before anyone signs in (a check for
    "/media/" anywhere in the path refused them, and the icons showed as their names)."""
    from streamlit import config

    base = "/" + str(config.get_option("server.baseUrlPath") or "").strip("/")
    if base != "/" and path.startswith(base + "/"):
        path = path[len(base):]
    return path.startswith(MEDIA)


class SignedInMedia:
    """403 for ``/media/`` without a live sign-in of the file's maker (a ``server.baseUrlPath`` in
    front is covered)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and is_download(scope["path"])
                and not await run_in_threadpool(signed_in, Request(scope).cookies, scope["path"])):
            await PlainTextResponse("Sign in to Memberdesk to download this file.", status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)
