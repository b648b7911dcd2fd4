"""The sandbox store: bulk import, newest-first paging with stable cursors, persistence."""

from stripe_sandbox.store import SandboxStore


def _customers(n, start=1_700_000_000):
    return ({"id": f"cus_{i:06d}", "object": "customer", "created": start + i // 3, "email": f"m{i}@example.com"}
            for i in range(n))


def test_import_and_page_newest_first(tmp_path):
    store = SandboxStore(tmp_path / "s.db")
    assert store.import_objects(_customers(50)) == 50
    seen, cursor = [], None
    while True:
        page, more = store.query("customer", limit=7, starting_after=cursor)
        seen += [o["id"] for o in page]
        if not more:
            break
        cursor = page[-1]["id"]
    assert seen == [f"cus_{i:06d}" for i in reversed(range(50))]
    before, _ = store.query("customer", limit=3, ending_before="cus_000010")
    assert [o["id"] for o in before] == ["cus_000013", "cus_000012", "cus_000011"]


def test_import_replaces_by_id_and_survives_reopen(tmp_path):
    path = tmp_path / "s.db"
    store = SandboxStore(path)
    store.import_objects(_customers(5))
    store.import_objects([{"id": "cus_000001", "object": "customer", "created": 1, "email": "new@example.com"}])
    assert store.import_events([{"id": "evt_1", "object": "event", "created": 5, "type": "customer.created",
                                 "data": {"object": {"id": "cus_000001", "object": "customer"}}}]) == 1
    store.close()
    again = SandboxStore(path)
    assert again.count("customer") == 5
    assert again.get("cus_000001")["email"] == "new@example.com"
    events, _ = again.query("event", where=[("status = ?", ["customer.created"])])
    assert [e["id"] for e in events] == ["evt_1"]


def test_import_refuses_objects_without_id(tmp_path):
    store = SandboxStore(tmp_path / "s.db")
    try:
        store.import_objects([{"object": "customer"}])
    except ValueError as exc:
        assert "id" in str(exc)
    else:
        raise AssertionError("expected ValueError")
    assert store.count() == 0
