"""A local, stateful, Stripe-compatible HTTP server for development, demos and tests.

``stripe_sandbox.store.SandboxStore`` holds the state (one SQLite file); ``stripe_sandbox.server``
serves Stripe's HTTP API on 127.0.0.1 over it. See docs/sandbox.md.
"""
