"""The sandbox's HTTP behaviour: idempotency keys, injected faults, restarts, signed webhooks."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import stripe

from stripe_sandbox.store import SandboxStore
from tests.support.sandbox import start_sandbox
from tests.support.servers import free_port


def test_same_idempotency_key_replays_the_first_answer(sandbox):
    client = sandbox.client()
    opts = {"idempotency_key": "refund-action-17"}
    a = client.v1.customers.create(params={"email": "x@example.com"}, options=opts)
    b = client.v1.customers.create(params={"email": "x@example.com"}, options=opts)
    assert a.id == b.id
    assert len(client.v1.customers.list().data) == 1
    with pytest.raises(stripe.IdempotencyError) as err:
        client.v1.customers.create(params={"email": "other@example.com"}, options=opts)
    assert err.value.http_status == 400
    # errors are replayed too: a declined payment is not retried by a replay
    pay = {"amount": 500, "currency": "usd", "payment_method": "pm_card_chargeDeclined", "confirm": True}
    for _ in range(2):
        with pytest.raises(stripe.CardError):
            client.v1.payment_intents.create(params=pay, options={"idempotency_key": "pay-1"})
    assert len(client.v1.charges.list().data) == 1
    # a request refused by parameter validation never started: its key stays free
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.create(params={"emial": "x@example.com"}, options={"idempotency_key": "fix-me"})
    fixed = client.v1.customers.create(params={"email": "x@example.com"}, options={"idempotency_key": "fix-me"})
    assert fixed.email == "x@example.com"


def test_faults_rate_limit_server_error_drop_and_delay(sandbox):
    client = sandbox.client()
    sandbox.fault("/v1/customers", method="GET", status=429, times=2)
    for _ in range(2):
        with pytest.raises(stripe.RateLimitError):
            client.v1.customers.list()
    assert client.v1.customers.list().data == []
    sandbox.fault("/v1/events", status=500)
    with pytest.raises(stripe.APIError) as err:
        client.v1.events.list()
    assert err.value.http_status == 500
    sandbox.fault("/v1/customers", mode="drop")
    with pytest.raises(stripe.APIConnectionError):
        client.v1.customers.list()
    sandbox.fault("/v1/customers", mode="delay", seconds=2)
    slow = stripe.StripeClient(sandbox.api_key, base_addresses={"api": sandbox.url}, max_network_retries=0,
                               http_client=stripe.RequestsClient(timeout=0.5))
    with pytest.raises(stripe.APIConnectionError):
        slow.v1.customers.list()
    sandbox.fault("/v1/", status=500, skip=1, times=None)  # the first passes, every later one fails
    client.v1.customers.list()
    with pytest.raises(stripe.APIError):
        client.v1.customers.list()
    sandbox.clear_faults()
    assert client.v1.customers.list().data == []


def test_apply_then_fail_keeps_the_write_and_a_retry_with_the_key_gets_it(sandbox):
    client = sandbox.client()
    cus = client.v1.customers.create()
    sandbox.fault("/v1/customers", method="POST", mode="apply_then_500")
    opts = {"idempotency_key": "change-99"}
    with pytest.raises(stripe.APIError):
        client.v1.customers.update(cus.id, params={"metadata": {"tier": "platinum"}}, options=opts)
    assert client.v1.customers.retrieve(cus.id).metadata["tier"] == "platinum"
    again = client.v1.customers.update(cus.id, params={"metadata": {"tier": "platinum"}}, options=opts)
    assert again.metadata["tier"] == "platinum"
    updates = client.v1.events.list(params={"type": "customer.updated"}).data
    assert len(updates) == 1
    sandbox.fault("/v1/refunds", mode="apply_then_drop")
    pi = client.v1.payment_intents.create(params={"amount": 900, "currency": "usd", "customer": cus.id,
                                                  "payment_method": "pm_card_visa", "confirm": True})
    with pytest.raises(stripe.APIConnectionError):
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 300}, options={"idempotency_key": "r-1"})
    again = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 300}, options={"idempotency_key": "r-1"})
    assert [r.id for r in client.v1.refunds.list(params={"payment_intent": pi.id}).data] == [again.id]


def test_restart_keeps_state(tmp_path):
    with start_sandbox(tmp_path / "state.db") as sb:
        client = sb.client()
        cus = client.v1.customers.create(params={"email": "keep@example.com"})
        sb.restart()
        assert client.v1.customers.retrieve(cus.id).email == "keep@example.com"
        assert client.v1.events.list().data[0].type == "customer.created"


def test_bulk_import_is_served(sandbox):
    store = SandboxStore(sandbox.state_path)
    n = store.import_objects({"id": f"cus_imp{i:05d}", "object": "customer", "created": 1_700_000_000 + i,
                              "email": f"m{i}@example.com", "metadata": {}, "invoice_settings": {}}
                             for i in range(2000))
    store.import_events([{"id": "evt_imp1", "object": "event", "created": 1_700_000_100, "type": "customer.created",
                          "data": {"object": {"id": "cus_imp00001", "object": "customer"}}}])
    store.close()
    client = sandbox.client()
    assert n == 2000
    got = list(client.v1.customers.list(params={"limit": 100}).auto_paging_iter())
    assert len(got) == 2000 and got[0].id == "cus_imp01999"
    assert client.v1.events.list(params={"created": {"lte": 1_700_000_100}}).data[0].id == "evt_imp1"
    sandbox.event_retention(30)  # like Stripe: the old imported event is no longer listed
    assert client.v1.events.list(params={"created": {"lte": 1_700_000_100}}).data == []


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[str, str]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.received.append((body, self.headers["Stripe-Signature"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhooks_are_signed_so_construct_event_verifies(tmp_path):
    port = free_port()
    receiver = HTTPServer(("127.0.0.1", port), _Receiver)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    secret = "whsec_test_sandbox_secret"
    try:
        with start_sandbox(tmp_path / "wh.db", webhook_url=f"http://127.0.0.1:{port}/hook",
                           webhook_secret=secret) as sb:
            cus = sb.client().v1.customers.create()
            import time
            deadline = time.monotonic() + 10
            while not _Receiver.received and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        receiver.shutdown()
    body, sig = _Receiver.received[0]
    event = stripe.Webhook.construct_event(body, sig, secret)
    assert event.type == "customer.created" and event.data.object.id == cus.id
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, sig, "whsec_wrong")
    assert json.loads(body)["object"] == "event"
