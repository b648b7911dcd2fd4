"""``python -m cli sandbox``: the local Stripe-compatible server (see docs/sandbox.md)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cli.common import CommandError, progress
from core.settings import DEFAULT_DATA_DIR, DEFAULT_SANDBOX_PORT, SettingsError, load_settings

DEFAULT_KEY = "sk_test_sandbox"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sandbox", help="run the local Stripe-compatible sandbox on 127.0.0.1",
                       description="A stateful Stripe test-mode server for development, the demo and tests.")
    p.add_argument("--port", type=int, default=DEFAULT_SANDBOX_PORT, help="port on 127.0.0.1 (default %(default)s)")
    p.add_argument("--state", default=str(DEFAULT_DATA_DIR / "sandbox.db"), help="SQLite state file")
    p.add_argument("--api-key", default=None,
                   help=f"secret key clients must send (default: STRIPE_API_KEY if it is a test key, else {DEFAULT_KEY})")
    p.add_argument("--webhook-url", default=None, help="POST every event, signed, to this URL")
    p.add_argument("--webhook-secret", default=None, help="signing secret for --webhook-url (whsec_...)")
    p.add_argument("--exit-with-stdin", action="store_true",
                   help="stop when standard input closes (test fixtures: the server never outlives its parent)")
    p.set_defaults(func=run)


def _api_key(arg: str | None) -> str:
    if arg:
        key = arg
    else:
        try:
            key = load_settings().stripe_api_key or DEFAULT_KEY
        except SettingsError:
            key = DEFAULT_KEY
        if not key.startswith("sk_test_"):
            key = DEFAULT_KEY
    if key.startswith(("sk_live_", "rk_live_")):
        raise CommandError("The sandbox refuses live keys: pass a test key (sk_test_...) with --api-key.")
    return key


def run(args: argparse.Namespace) -> int:
    from stripe_sandbox.server import make_server
    from stripe_sandbox.store import SandboxStore

    key = _api_key(args.api_key)
    if args.webhook_url and not args.webhook_secret:
        raise CommandError("--webhook-url needs --webhook-secret (the whsec_... the receiver verifies with).")
    store = SandboxStore(Path(args.state))
    try:
        server, _ = make_server(store, key, args.port, webhook_url=args.webhook_url,
                                webhook_secret=args.webhook_secret)
    except OSError as exc:
        raise CommandError(f"Cannot listen on 127.0.0.1:{args.port} ({exc.strerror}); pick another --port.") from None
    if args.exit_with_stdin:
        import sys
        import threading

        def watch() -> None:
            sys.stdin.buffer.read()  # returns at EOF: the parent is gone
            server.shutdown()

        threading.Thread(target=watch, name="stdin-watch", daemon=True).start()
    logging.getLogger("stripe_sandbox").info("sandbox ready")
    progress(f"Stripe sandbox listening on http://127.0.0.1:{server.server_address[1]} (state: {args.state})")
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        store.close()
    return 0
