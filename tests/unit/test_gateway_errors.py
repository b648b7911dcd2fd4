"""The gateway turns Stripe's exceptions into sentences staff can read, and derives stable keys."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import stripe

from core.settings import Settings, SettingsError
from core.stripe_gateway import (
    API_VERSION,
    ClientOptions,
    GatewayError,
    build_client,
    from_stripe_error,
    idempotency_key,
    make_client,
    translate_errors,
)


def _card_error(decline_code: str) -> stripe.CardError:
    body = {"error": {"type": "card_error", "code": "card_declined", "decline_code": decline_code,
                      "message": "Your card was declined."}}
    return stripe.CardError("Your card was declined.", None, "card_declined", http_status=402, json_body=body)


class TestTranslation:
    @pytest.mark.parametrize(
        ("decline", "words", "retryable"),
        [
            ("insufficient_funds", "insufficient funds", True),
            ("lost_card", "reported lost", False),
            ("stolen_card", "reported stolen", False),
            ("expired_card", "expired", False),
            ("generic_decline", "without a reason", True),
            ("processing_error", "processing error", True),
        ],
    )
    def test_card_declines_say_why(self, decline: str, words: str, retryable: bool) -> None:
        err = from_stripe_error(_card_error(decline))
        assert err.kind == "card_declined"
        assert err.decline_code == decline
        assert err.code == "card_declined"
        assert words in err.sentence
        assert err.retryable is retryable

    def test_rate_limit_is_retryable(self) -> None:
        err = from_stripe_error(stripe.RateLimitError("Too many requests", http_status=429))
        assert err.kind == "rate_limited" and err.retryable and "rate limited" in err.sentence

    def test_missing_object_names_it(self) -> None:
        exc = stripe.InvalidRequestError("No such customer: 'cus_123'", "id", "resource_missing", http_status=404)
        err = from_stripe_error(exc)
        assert err.kind == "not_found" and "customer cus_123" in err.sentence and not err.retryable

    def test_authentication(self) -> None:
        err = from_stripe_error(stripe.AuthenticationError("Invalid API Key provided", http_status=401))
        assert err.kind == "authentication" and "STRIPE_API_KEY" in err.sentence

    def test_server_error_is_retryable(self) -> None:
        err = from_stripe_error(stripe.APIError("boom", http_status=500))
        assert err.kind == "unreachable" and err.retryable

    def test_invalid_request_hides_card_numbers(self) -> None:
        exc = stripe.InvalidRequestError("Bad number 4242424242424242", "number", "invalid_number", http_status=400)
        err = from_stripe_error(exc)
        assert "4242424242424242" not in err.sentence and err.kind == "invalid_request"

    def test_unreachable_server_through_the_real_client(self) -> None:
        client = make_client("sk_test_x", api_base="http://127.0.0.1:1",
                             options=ClientOptions(max_network_retries=0, connect_timeout=0.5))
        with pytest.raises(GatewayError) as info, translate_errors():
            client.v1.customers.list()
        assert info.value.kind == "unreachable" and info.value.retryable
        assert isinstance(info.value.__cause__, stripe.APIConnectionError)

    @pytest.mark.parametrize(("status", "body", "ctype", "words", "retryable"), [
        (404, b"404 page not found", "text/plain; charset=utf-8", '(HTTP 404, text/plain, server BaseHTTP', False),
        (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html", '"502 Bad Gateway"', True),
    ])
    def test_an_answer_that_is_not_json_says_what_answered(self, status, body, ctype, words, retryable) -> None:
        # A real HTTP server that is not Stripe (a wrong STRIPE_API_BASE, a proxy), through the real client.
        class NotStripe(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server hook
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = HTTPServer(("127.0.0.1", 0), NotStripe)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            client = make_client("sk_test_x", api_base=f"http://127.0.0.1:{server.server_port}",
                                 options=ClientOptions(max_network_retries=0, connect_timeout=2))
            with pytest.raises(GatewayError) as info, translate_errors():
                client.v1.customers.list()
        finally:
            server.shutdown()
            server.server_close()
        sentence = info.value.sentence
        assert words in sentence and "STRIPE_API_BASE" in sentence, sentence
        assert "internal error" not in sentence
        assert info.value.retryable is retryable


class TestClient:
    def test_no_key_is_a_settings_error(self) -> None:
        with pytest.raises(SettingsError, match="STRIPE_API_KEY"):
            build_client(Settings(stripe_api_key=""))

    def test_pinned_to_library_version(self) -> None:
        assert stripe.api_version == API_VERSION


class TestIdempotencyKey:
    def test_same_action_same_key(self) -> None:
        assert idempotency_key("chg_1") == idempotency_key("chg_1")
        assert idempotency_key("chg_1") != idempotency_key("chg_2")
        assert idempotency_key("chg_1", step="refund") != idempotency_key("chg_1")
        assert len(idempotency_key("x" * 1000)) < 255

    def test_empty_action_refused(self) -> None:
        with pytest.raises(ValueError):
            idempotency_key(" ")
