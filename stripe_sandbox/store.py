"""The sandbox's state: Stripe objects as JSON in one SQLite file, keyed by id.

Guarantees:
- every object lives in one row of ``objects`` (id, object type, customer, created, status, ref,
  seq, JSON body); ``seq`` grows with every write of a new id, so lists are ordered newest first by
  ``(created, seq)`` exactly like Stripe's lists, and ``starting_after`` / ``ending_before`` are
  stable cursors;
- ``import_objects`` / ``import_events`` load many objects in one transaction (the demo world,
  ~100k objects, takes seconds) and replace objects with the same id;
- the file survives restarts; nothing is cached in memory, so a store opened by another process
  (an import while the server runs) is seen by the next request.

Columns used for listing: ``customer`` (the owning customer id; the customer's own id for a
customer), ``status`` (subscription/invoice/charge status; the event type for an event), ``ref``
(the main parent: invoice -> subscription, charge/dispute -> payment intent/charge, refund ->
charge, price -> product, payment intent -> invoice).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from stripe_sandbox.balance import full_shape
from stripe_sandbox.complete import complete

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    object TEXT NOT NULL,
    customer TEXT,
    created INTEGER NOT NULL,
    status TEXT,
    ref TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS objects_type_created ON objects (object, created, seq);
-- A customer's (or a parent's) objects of one type in list order: without the order columns SQLite
-- walks every object of the type through objects_type_created instead.
CREATE INDEX IF NOT EXISTS objects_customer_listed ON objects (customer, object, created, seq);
CREATE INDEX IF NOT EXISTS objects_ref_listed ON objects (ref, object, created, seq);
DROP INDEX IF EXISTS objects_customer;
DROP INDEX IF EXISTS objects_ref;
CREATE TABLE IF NOT EXISTS idempotency (
    api_key TEXT NOT NULL,
    key TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    params_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (api_key, key)
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""


def _customer_of(obj: dict[str, Any]) -> str | None:
    if obj.get("object") == "customer":
        return obj.get("id")
    cus = obj.get("customer") or (obj.get("_sandbox") or {}).get("customer")
    if isinstance(cus, dict):
        return cus.get("id")
    if cus is None and obj.get("object") == "event":
        inner = (obj.get("data") or {}).get("object") or {}
        return _customer_of(inner) if inner else None
    return cus


def _id_of(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("id")
    return value


def _ref_of(obj: dict[str, Any]) -> str | None:
    kind = obj.get("object")
    if kind == "invoice":
        parent = obj.get("parent") or {}
        details = parent.get("subscription_details") or {}
        return _id_of(details.get("subscription")) or _id_of(obj.get("subscription"))
    if kind in ("refund", "dispute"):
        return _id_of(obj.get("charge"))
    if kind == "charge":
        return _id_of(obj.get("payment_intent"))
    if kind == "price":
        return _id_of(obj.get("product"))
    if kind == "invoice_payment":
        return _id_of(obj.get("invoice"))
    if kind == "invoiceitem":
        details = (obj.get("parent") or {}).get("subscription_details") or {}
        return _id_of(details.get("subscription")) or _id_of(obj.get("subscription"))
    if kind == "event":
        inner = (obj.get("data") or {}).get("object") or {}
        return inner.get("id")
    if kind == "balance_transaction":
        return _id_of(obj.get("source"))
    return None


def _status_of(obj: dict[str, Any]) -> str | None:
    if obj.get("object") == "event":
        return obj.get("type")
    status = obj.get("status")
    return status if isinstance(status, str) else None


def _created_of(obj: dict[str, Any]) -> int:
    # invoice items carry ``date`` instead of ``created``
    return int(obj.get("created") or obj.get("date") or 0)


_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False, ensure_ascii=False).encode


def row_values(obj: dict[str, Any]) -> tuple[Any, ...]:
    """The column values of one object (without seq)."""
    return (
        obj["id"], obj.get("object") or "unknown", _customer_of(obj), _created_of(obj),
        _status_of(obj), _ref_of(obj), 1 if obj.get("deleted") else 0,
        _encode(obj),
    )


class SandboxStore:
    """SQLite file holding the sandbox's objects. Thread-safe: one connection behind one lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self.lock = threading.RLock()
        self._depth = 0

    # -- transactions -------------------------------------------------------------------------
    def transaction(self) -> _Tx:
        """``with store.transaction():`` groups writes; nested uses join the outer one."""
        return _Tx(self)

    def scratch(self) -> _Scratch:
        """``with store.scratch():`` runs writes inside the current transaction and then undoes them."""
        return _Scratch(self)

    def close(self) -> None:
        with self.lock:
            self._conn.close()

    # -- bulk import (the demo world) ---------------------------------------------------------
    def import_objects(self, objects: Iterable[dict[str, Any]]) -> int:
        """Insert or replace Stripe objects (dicts with ``id`` and ``object``); returns the count.

        Give every invoice all its lines in ``lines.data``: the API embeds the first 10 and pages
        the rest. Events may be passed here too; ``import_events`` is the same with a type check.
        Partial objects are stored completed (``complete``: the fields they left out, filled in as
        every answer would fill them), so reads do not redo it.
        """
        return self._bulk(objects, expect=None)

    def import_events(self, events: Iterable[dict[str, Any]]) -> int:
        """Insert or replace Stripe event objects; returns the count."""
        return self._bulk(events, expect="event")

    def _bulk(self, objects: Iterable[dict[str, Any]], expect: str | None) -> int:
        count = 0
        sql = ("INSERT INTO objects (id, object, customer, created, status, ref, deleted, data) "
               "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET object=excluded.object, "
               "customer=excluded.customer, created=excluded.created, status=excluded.status, "
               "ref=excluded.ref, deleted=excluded.deleted, data=excluded.data")

        def rows() -> Iterator[tuple[Any, ...]]:
            nonlocal count
            for obj in objects:
                if not isinstance(obj, dict) or not obj.get("id") or not obj.get("object"):
                    raise ValueError("Every imported object needs an 'id' and an 'object' type.")
                if expect and obj["object"] != expect:
                    raise ValueError(f"Expected {expect} objects, got {obj['object']} ({obj['id']}).")
                count += 1
                if not expect and obj["object"] in ("charge", "refund") and isinstance(
                        obj.get("balance_transaction"), dict):
                    # Stored like Stripe holds it: its own object, the charge naming its id.
                    txn = full_shape(obj["balance_transaction"], source=obj["id"], created=int(obj.get("created") or 0),
                                     kind=obj["object"])
                    yield row_values(txn)
                    obj = {**obj, "balance_transaction": txn["id"]}
                if not expect and obj["object"] == "dispute":
                    for txn in obj.get("balance_transactions") or []:
                        if isinstance(txn, dict) and txn.get("id"):
                            yield row_values(txn)
                if not expect and obj["object"] == "invoice":
                    # Its payments are objects of their own too (the invoice payments API lists them).
                    for pay in (obj.get("payments") or {}).get("data") or []:
                        if isinstance(pay, dict) and pay.get("id"):
                            yield row_values({**pay, "invoice": pay.get("invoice") or obj["id"]})
                yield row_values(obj if expect else complete(obj))

        with self.lock:
            # A bulk load is redone if the process dies mid-way, so skip the fsyncs.
            self._conn.execute("PRAGMA synchronous=OFF")
            try:
                with self.transaction():
                    self._conn.executemany(sql, rows())
            finally:
                self._conn.execute("PRAGMA synchronous=NORMAL")
        return count

    # -- single objects -----------------------------------------------------------------------
    def get(self, obj_id: str) -> dict[str, Any] | None:
        with self.lock:
            row = self._conn.execute("SELECT data FROM objects WHERE id = ?", (obj_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, obj: dict[str, Any]) -> None:
        """Insert or update one object (an update keeps its list position)."""
        with self.lock:
            self._conn.execute(
                "INSERT INTO objects (id, object, customer, created, status, ref, deleted, data) "
                "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET customer=excluded.customer, "
                "status=excluded.status, ref=excluded.ref, deleted=excluded.deleted, data=excluded.data",
                row_values(obj),
            )

    def count(self, object_type: str | None = None) -> int:
        with self.lock:
            if object_type:
                return self._conn.execute("SELECT count(*) FROM objects WHERE object = ?", (object_type,)).fetchone()[0]
            return self._conn.execute("SELECT count(*) FROM objects").fetchone()[0]

    # -- lists --------------------------------------------------------------------------------
    def query(self, object_type: str, *, where: list[tuple[str, list[Any]]] | None = None,
              limit: int = 10, starting_after: str | None = None, ending_before: str | None = None,
              include_deleted: bool = False) -> tuple[list[dict[str, Any]], bool]:
        """One page, newest first. ``where`` holds SQL fragments on the columns with their args.

        Returns (objects, has_more). Raises KeyError(cursor) when a cursor id is unknown.
        """
        clauses = ["object = ?"]
        args: list[Any] = [object_type]
        if not include_deleted:
            clauses.append("deleted = 0")
        for frag, fargs in where or []:
            clauses.append(frag)
            args.extend(fargs)
        order = "created DESC, seq DESC"
        reverse = False
        with self.lock:
            if starting_after or ending_before:
                cursor = starting_after or ending_before
                row = self._conn.execute("SELECT created, seq FROM objects WHERE id = ?", (cursor,)).fetchone()
                if row is None:
                    raise KeyError(cursor)
                if starting_after:
                    clauses.append("(created < ? OR (created = ? AND seq < ?))")
                else:
                    clauses.append("(created > ? OR (created = ? AND seq > ?))")
                    order = "created ASC, seq ASC"
                    reverse = True
                args.extend([row[0], row[0], row[1]])
            sql = f"SELECT data FROM objects WHERE {' AND '.join(clauses)} ORDER BY {order} LIMIT ?"
            rows = self._conn.execute(sql, [*args, limit + 1]).fetchall()
        has_more = len(rows) > limit
        objs = [json.loads(r[0]) for r in rows[:limit]]
        if reverse:
            objs.reverse()
        return objs, has_more

    def select(self, object_type: str, where: list[tuple[str, list[Any]]] | None = None) -> list[dict[str, Any]]:
        """Every matching object (internal use: billing scans), oldest first."""
        clauses = ["object = ?", "deleted = 0"]
        args: list[Any] = [object_type]
        for frag, fargs in where or []:
            clauses.append(frag)
            args.extend(fargs)
        with self.lock:
            rows = self._conn.execute(
                f"SELECT data FROM objects WHERE {' AND '.join(clauses)} ORDER BY created, seq", args).fetchall()
        return [json.loads(r[0]) for r in rows]

    # -- idempotency --------------------------------------------------------------------------
    def idem_get(self, api_key: str, key: str) -> tuple[str, str, str, int, str, float] | None:
        with self.lock:
            return self._conn.execute(
                "SELECT method, path, params_hash, status, body, created FROM idempotency WHERE api_key=? AND key=?",
                (api_key, key)).fetchone()

    def idem_put(self, api_key: str, key: str, method: str, path: str, params_hash: str,
                 status: int, body: str, created: float) -> None:
        with self.lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO idempotency VALUES (?,?,?,?,?,?,?,?)",
                (api_key, key, method, path, params_hash, status, body, created))

    # -- meta / reset -------------------------------------------------------------------------
    def meta_get(self, key: str, default: str | None = None) -> str | None:
        with self.lock:
            row = self._conn.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return row[0] if row else default

    def meta_set(self, key: str, value: str) -> None:
        with self.lock:
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def reset(self) -> None:
        """Forget every object, idempotency key and setting."""
        with self.lock, self.transaction():
            for table in ("objects", "idempotency", "meta"):
                self._conn.execute(f"DELETE FROM {table}")


class _Tx:
    def __init__(self, store: SandboxStore) -> None:
        self.store = store

    def __enter__(self) -> _Tx:
        self.store.lock.acquire()
        if self.store._depth == 0:
            self.store._conn.execute("BEGIN IMMEDIATE")
        self.store._depth += 1
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.store._depth -= 1
        try:
            if self.store._depth == 0:
                self.store._conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.store.lock.release()


class _Scratch:
    def __init__(self, store: SandboxStore) -> None:
        self.store = store

    def __enter__(self) -> _Scratch:
        self.store.lock.acquire()
        self.store._conn.execute("SAVEPOINT scratch")
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self.store._conn.execute("ROLLBACK TO scratch")
            self.store._conn.execute("RELEASE scratch")
        finally:
            self.store.lock.release()
