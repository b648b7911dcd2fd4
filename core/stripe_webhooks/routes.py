"""The HTTP side served beside the dashboard (``dashboard/serve.py`` hands these to ``st.App``):

- ``POST /stripe/webhook``: verify, record, answer at once (200), wake the background pass;
  a delivery that is not genuine gets 400 and writes nothing; a database that cannot record it
  gets 503, so Stripe delivers it again later.
- ``GET /healthz``: ``core.health.check`` as JSON; 503 when the database is unreachable.

Plain Starlette (no Streamlit): the database work runs in the thread pool, never on the event
loop that also carries the dashboard's websockets.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from core import health
from core.comp_ends import Ender
from core.db import connect
from core.metrics.kept import Keeper
from core.settings import SettingsError, load_settings
from core.stripe_gateway import build_client
from core.stripe_webhooks.apply_loop import ApplyLoop
from core.stripe_webhooks.receive import MAX_BODY, WebhookRejected, receive

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/stripe/webhook"
HEALTH_PATH = "/healthz"


class _Service:
    """The process's engine, signing secret and background loop, set up by ``lifespan``."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.secret = ""
        self.loop: ApplyLoop | None = None
        self.keeper: Keeper | None = None
        self.ender: Ender | None = None
        self.problem = "The server is starting."

    def start(self) -> None:
        try:
            cfg = load_settings()
            self.engine = connect(cfg)
        except SettingsError as exc:
            self.problem = str(exc)
            log.error("webhooks and health check disabled: %s", exc)
            return
        except Exception as exc:  # e.g. a SQLite folder that cannot be created: the pages say more
            self.problem = "The database cannot be opened."
            log.error("webhooks and health check disabled: the database cannot be opened (%s)", type(exc).__name__)
            return
        self.secret = cfg.stripe_webhook_secret
        if not self.secret:
            log.warning("STRIPE_WEBHOOK_SECRET is not set: %s refuses every delivery", WEBHOOK_PATH)
        self.loop = ApplyLoop(self.engine, lambda: build_client(cfg))
        self.loop.start()
        self.problem = ""

    def stop(self) -> None:
        if self.ender is not None:
            self.ender.stop()
            self.ender = None
        if self.keeper is not None:
            self.keeper.stop()
            self.keeper = None
        if self.loop is not None:
            self.loop.stop()
            self.loop = None


SERVICE = _Service()


@asynccontextmanager
async def lifespan(_app: Any) -> AsyncIterator[None]:
    await run_in_threadpool(SERVICE.start)
    if SERVICE.engine is not None:
        # Pay for imports and the first pages' answers before the server says it is ready, so the
        # first person after a restart does not (core.warmup).
        from core.warmup import warm

        try:
            took = await run_in_threadpool(warm, SERVICE.engine)
        except Exception as exc:  # an unmigrated or unreachable database: the pages and /healthz say so
            log.warning("warm-up skipped: %s", type(exc).__name__)
        else:
            log.info("warm-up done in %.1f s (%s)", sum(took.values()),
                     ", ".join(f"{k} {v:.2f} s" for k, v in took.items()))
        # The Overview's cards, answered every minute ahead of whoever opens it next.
        SERVICE.keeper = Keeper(SERVICE.engine)
        SERVICE.keeper.start()
        # Complimentary memberships have no Stripe event to end them: ended here, every minute.
        SERVICE.ender = Ender(SERVICE.engine)
        SERVICE.ender.start()
    try:
        yield
    finally:
        await run_in_threadpool(SERVICE.stop)


async def stripe_webhook(request: Request) -> JSONResponse:
    if SERVICE.engine is None:
        return JSONResponse({"error": SERVICE.problem}, status_code=503)
    payload = await _body(request)
    if payload is None:
        return JSONResponse({"error": "The body is larger than any Stripe event."}, status_code=400)
    try:
        got = await run_in_threadpool(receive, SERVICE.engine, payload, request.headers.get("stripe-signature"),
                                      SERVICE.secret)
    except WebhookRejected as exc:
        log.info("webhook rejected: %s", exc)
        return JSONResponse({"error": str(exc)}, status_code=400)
    except Exception as exc:  # the database did not take it: ask Stripe to deliver again later
        log.warning("webhook not recorded: %s", type(exc).__name__)
        return JSONResponse({"error": "The event could not be recorded; deliver it again later."}, status_code=503)
    if got.new and SERVICE.loop is not None:
        SERVICE.loop.wake()
    return JSONResponse({"received": got.event_id, "duplicate": not got.new})


async def _body(request: Request) -> bytes | None:
    """The request body, or None once it passes ``MAX_BODY`` (read no further: not Stripe)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def healthz(_request: Request) -> JSONResponse:
    if SERVICE.engine is None:  # settings or database unusable; the sentence names no secret
        return JSONResponse({"status": "unavailable", "database": {"reachable": False}, "error": SERVICE.problem},
                            status_code=503, headers={"Cache-Control": "no-store"})
    ok, report = await run_in_threadpool(health.check, SERVICE.engine)
    return JSONResponse(report, status_code=200 if ok else 503, headers={"Cache-Control": "no-store"})


ROUTES = [
    Route(WEBHOOK_PATH, stripe_webhook, methods=["POST"]),
    Route(HEALTH_PATH, healthz, methods=["GET"]),
]
