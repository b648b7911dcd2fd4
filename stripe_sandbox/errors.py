"""Stripe's error object (``{"error": {type, code, decline_code, message, param, doc_url}}``) as an exception."""

from __future__ import annotations

from typing import Any


class StripeError(Exception):
    def __init__(self, status: int, type_: str, message: str, *, code: str | None = None,
                 decline_code: str | None = None, param: str | None = None, extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {
            "type": type_, "message": message, "code": code, "decline_code": decline_code, "param": param,
            "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}" if code else None,
        }
        self.body.update(extra or {})

    def payload(self) -> dict[str, Any]:
        return {"error": {k: v for k, v in self.body.items() if v is not None}}


def invalid(message: str, *, param: str | None = None, code: str | None = None) -> StripeError:
    return StripeError(400, "invalid_request_error", message, code=code or ("parameter_invalid" if param else None),
                       param=param)


def missing_param(param: str) -> StripeError:
    return StripeError(400, "invalid_request_error", f"Missing required param: {param}.",
                       code="parameter_missing", param=param)


def no_such(kind: str, obj_id: str, param: str = "id") -> StripeError:
    return StripeError(404, "invalid_request_error", f"No such {kind}: '{obj_id}'", code="resource_missing",
                       param=param)


def unauthorized(key: str | None) -> StripeError:
    shown = f"{key[:8]}{'*' * 8}{key[-4:]}" if key and len(key) > 12 else "(none)"
    msg = ("You did not provide an API key." if not key else f"Invalid API Key provided: {shown}")
    return StripeError(401, "invalid_request_error", msg)
