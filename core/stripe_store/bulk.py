"""``apply_many``: one page of Stripe objects applied with a few reads instead of several per object.

The rows written are exactly those ``apply`` writes one object at a time, because the same handlers
run in the same order; what changes is where their reads come from and how often the database is
asked. Before the page, one query per table fetches the page's own rows by Stripe id (and a customer
page's members by e-mail), and one per parent table fetches the parents the page names
(``core.stripe_store.cache``). The page runs in one savepoint instead of one per object; its new rows
are queued and written with one executemany per table (``pending.py``); the members' ``version``
bumps are written in one executemany, and the columns derived from several objects (``derived.py``)
are settled once at the end of the page.

All or nothing per page: if any object raises (a parent not stored yet, a bad object), the
savepoint is rolled back, nothing of the page remains, and the exception propagates so the caller
can apply the page object by object with ``apply`` (which fetches parents and records failures).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from core.models import Base
from core.stripe_mapping import REFS, map_customer
from core.stripe_store import cache, derived, pending
from core.stripe_store.parents import OBJECT_TABLES

CHUNK = 500  # ids per IN (...) list

# Stripe id prefix -> the parent object a string in an object may name (its table and Stripe id
# column from OBJECT_TABLES).
_PREFIX_OBJECT = {"prod_": "product", "price_": "price", "cus_": "customer", "pm_": "payment_method",
                  "card_": "payment_method", "src_": "payment_method", "sub_": "subscription", "in_": "invoice",
                  "ch_": "charge", "py_": "charge"}
_PREFIX_TABLE: dict[str, tuple[str, str]] = {prefix: OBJECT_TABLES[kind] for prefix, kind in _PREFIX_OBJECT.items()}
_CHILD_TABLES = {"subscriptions": ("subscription_items",), "invoices": ("invoice_lines",)}


_NAMED_ID = re.compile(r'"((?:prod|price|cus|pm|card|src|sub|in|ch|py)_[A-Za-z0-9_]+)"')


def _named_ids(obj: dict) -> list[str]:
    """Every string in ``obj`` shaped like a Stripe id of a parent type (over-inclusive is fine:
    an id that names nothing is simply not found)."""
    return _NAMED_ID.findall(json.dumps(obj, default=str))


def _chunks(values: list[Any]) -> Iterable[list[Any]]:
    for i in range(0, len(values), CHUNK):
        yield values[i:i + CHUNK]


def _prefetch(session: Session, objects: list[dict], page: cache.PageCache, text: str | None) -> None:
    tables = Base.metadata.tables
    own: dict[tuple[str, str], list[str]] = {}
    for obj in objects:
        spec = OBJECT_TABLES.get(obj.get("object", ""))
        if spec and not obj.get("deleted") and isinstance(obj.get("id"), str):
            own.setdefault(spec, []).append(obj["id"])
    for (table, key), ids in own.items():
        t = tables[table]
        rows: dict[str, dict[str, Any] | None] = dict.fromkeys(ids)
        for chunk in _chunks(sorted(set(ids))):
            for r in session.execute(select(t).where(t.c[key].in_(chunk))).mappings():
                rows[r[key]] = dict(r)
        page.rows[(table, key)] = rows
        for sid, row in rows.items():
            if row is not None:
                page.ids.setdefault((table, key), {})[sid] = row["id"]
    emails = {map_customer(obj)["email"] for obj in objects if obj.get("object") == "customer" and not obj.get("deleted")}
    if emails:
        # A new customer is matched to an existing member by e-mail.
        m = tables["members"]
        by_email: dict[str, dict[str, Any] | None] = dict.fromkeys(emails)
        for chunk in _chunks(sorted(emails)):
            for r in session.execute(select(m).where(m.c.email.in_(chunk))).mappings():
                by_email[r["email"]] = dict(r)
        page.rows[("members", "email")] = by_email
    # Parents: only the tables this page's rows (and their lines/items) point at.
    wanted = {(parent, parent_key) for table, _ in own for t in (table, *_CHILD_TABLES.get(table, ()))
              for _fk, parent, parent_key in REFS.get(t, {}).values()}
    named: dict[tuple[str, str], set[str]] = {}
    found = _NAMED_ID.findall(text) if text is not None else [i for obj in objects for i in _named_ids(obj)]
    for sid in set(found):
        spec = _PREFIX_TABLE.get(sid[:sid.find("_") + 1])
        if spec in wanted:
            named.setdefault(spec, set()).add(sid)  # type: ignore[arg-type]
    for (table, key), sids in named.items():
        t = tables[table]
        known = page.ids.setdefault((table, key), {})
        for chunk in _chunks(sorted(sids - known.keys())):
            for our_id, sid in session.execute(select(t.c.id, t.c[key]).where(t.c[key].in_(chunk))):
                known[sid] = our_id


def apply_many(session: Session, objects: list[dict], *, state_at: datetime, source: str = "stripe",
               text: str | None = None) -> list[str]:
    """Apply a page of objects (in order) with the same result as ``apply`` on each; returns their
    outcomes. On any exception nothing of the page is written and the exception propagates.
    ``text``: the JSON the page was parsed from, if at hand (the parents it names are found in it
    instead of in each object encoded again; a parent it leaves out is looked up on its own)."""
    from core import stripe_store

    page = cache.PageCache()
    outcomes: list[str] = []
    with session.begin_nested():
        _prefetch(session, objects, page, text)
        with derived.collecting(session):  # links, attempt numbers, default cards: once per page
            session.info[cache.KEY] = page
            try:
                with pending.deferred(session, block=len(objects)) as queue:
                    for obj in objects:
                        outcomes.append(stripe_store.apply_one(session, obj, state_at=state_at, source=source))
                    queue.flush()  # before the derived columns are settled from the stored rows
            finally:
                session.info.pop(cache.KEY, None)
        if page.bumps:
            m = Base.metadata.tables["members"]
            session.execute(update(m).where(m.c.id == bindparam("member_id"))
                            .values(version=m.c.version + bindparam("bumps")),
                            [{"member_id": k, "bumps": n} for k, n in sorted(page.bumps.items())])
    return outcomes
