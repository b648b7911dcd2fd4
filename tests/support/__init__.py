"""Everything tests share, imported one way: ``from tests.support.<module> import ...``.

- ``db``: the test key, the backends (SQLite, PostgreSQL), scratch databases, table snapshots.
- ``factories``: one row at a time (``make_member``, ``make_payment``, ...).
- ``worlds``: whole worlds (the small hand-built one, random lives, a Stripe sandbox world), staff.
- ``payloads``: Stripe objects and events as the mapping, the store and the webhook receive them.
- ``sandbox``, ``changes_world``: the Stripe sandbox process and a member mirrored from it.
- ``servers``, ``apptest``, ``browser``: a real dashboard server, AppTest runs, Chromium and the
  steps a person takes.

Fixtures defined here are registered in ``tests/conftest.py`` (``pytest_plugins``); test modules
ask for them by name and never import them.
"""
