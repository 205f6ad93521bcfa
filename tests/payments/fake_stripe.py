"""A local fake of Stripe's API for the adapter's tests: a real HTTP server that checks every request as Stripe's
API reference documents it and answers with the documented PaymentIntent and Refund shapes.

Checked on every request: ``Authorization: Bearer sk_test_...``; on every ``POST``: a form-encoded body
(``application/x-www-form-urlencoded``, bracket notation decoded), an ``Idempotency-Key`` (at most 255 characters),
known parameters only (Stripe answers 400 "Received unknown parameter"), required ones present and of their type
(amounts positive integers, currencies three lower-case letters, ``metadata`` a map of strings). Idempotency as Stripe
keeps it: the same key and parameters get the first answer again, the same key with other parameters 400
``idempotency_error``. Test payment methods as in Stripe's test mode (``pm_card_visa``, declines, 3-D Secure).

Reads (``GET``, parameters in the query string, no body): a PaymentIntent by id, and the lists
``/v1/payment_intents`` and ``/v1/refunds`` (``payment_intent`` or ``charge`` to filter refunds) as Stripe pages them:
newest first, ``limit`` 1 to 100 (10 by default), ``starting_after`` / ``ending_before`` an object id of the list,
answered as ``{"object": "list", "data": [...], "has_more": ..., "url": ...}``. A refund can be made to fail
afterwards (:meth:`FakeStripe.fail_refund`), as a card refund does when the card was closed: its ``status`` becomes
``failed`` with a ``failure_reason``, and its amount is refundable again.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from typing import Any
from urllib.parse import parse_qsl

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.support.browser import free_port

DECLINES = {
    "pm_card_chargeDeclined": ("card_declined", "generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": ("card_declined", "insufficient_funds",
                                                "Your card has insufficient funds."),
    "pm_card_chargeDeclinedExpiredCard": ("expired_card", "expired_card", "Your card has expired."),
}
THREE_DS = {"pm_card_authenticationRequired", "pm_card_threeDSecure2Required"}
CARDS = {"pm_card_visa": ("visa", "4242"), "pm_card_mastercard": ("mastercard", "4444"),
         **{pm: ("visa", "0002") for pm in DECLINES}, **{pm: ("visa", "3184") for pm in THREE_DS}}
CREATE_PARAMS = {"amount", "currency", "payment_method", "confirm", "capture_method", "return_url", "metadata",
                 "expand", "description", "customer", "payment_method_types", "automatic_payment_methods"}
_CURRENCY = re.compile(r"^[a-z]{3}$")


class StripeError(Exception):
    def __init__(self, status: int, type_: str, message: str, *, code: str | None = None, param: str | None = None,
                 **extra: Any) -> None:
        self.status = status
        self.body = {"error": {"type": type_, "message": message, "code": code, "param": param, **extra}}


def decode_form(body: bytes) -> dict[str, Any]:
    """Stripe's bracket notation back into nested objects (``metadata[k]=v`` -> {"metadata": {"k": "v"}};
    ``expand[0]=x`` -> {"expand": ["x"]})."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body)):
        parts = re.findall(r"[^\[\]]+", key)
        if not parts or key.count("[") != key.count("]"):
            raise StripeError(400, "invalid_request_error", f"Invalid parameter name {key!r}", param=key)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    for name, value in list(out.items()):  # lists arrive as maps with the keys 0, 1, ...
        if isinstance(value, dict) and value and all(k.isdigit() for k in value):
            out[name] = [value[k] for k in sorted(value, key=int)]
    return out


def _int(params: dict[str, Any], name: str, *, required: bool = False) -> int | None:
    value = params.get(name)
    if value is None:
        if required:
            raise StripeError(400, "invalid_request_error", f"Missing required param: {name}.", param=name,
                              code="parameter_missing")
        return None
    if not isinstance(value, str) or not value.isdigit() or int(value) <= 0:
        raise StripeError(400, "invalid_request_error", f"Invalid positive integer: {value!r}", param=name,
                          code="parameter_invalid_integer")
    return int(value)


class FakeStripe:
    """The fake's state, what it was sent, and knobs (fail the next request with a 500, drop it)."""

    def __init__(self) -> None:
        self.intents: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, tuple[str, int, dict[str, Any]]] = {}
        self.requests: list[dict[str, Any]] = []
        self.fail_next: int | None = None  # answer the next request with this status before doing anything
        self.lock = threading.Lock()
        self.app = self._build()

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
        async def any_route(path: str, request: Request) -> JSONResponse:
            body = await request.body()
            try:
                status, answer = self.handle(request.method, "/" + path, dict(request.headers), body,
                                             request.url.query.encode())
            except StripeError as exc:
                status, answer = exc.status, exc.body
            return JSONResponse(answer, status_code=status, headers={"Request-Id": "req_" + secrets.token_hex(7)})

        return app

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes,
               query: bytes = b"") -> tuple[int, dict[str, Any]]:
        with self.lock:
            auth = headers.get("authorization", "")
            if not re.fullmatch(r"Bearer sk_test_[A-Za-z0-9_]+", auth):
                raise StripeError(401, "invalid_request_error", "Invalid API Key provided.")
            if method == "GET":
                if body:
                    raise StripeError(400, "invalid_request_error", "A GET request has its parameters in the query "
                                      "string, not in a body.")
                params = decode_form(query)
                self.requests.append({"method": "GET", "path": path, "params": params, "headers": headers})
                if self.fail_next is not None:
                    status, self.fail_next = self.fail_next, None
                    raise StripeError(status, "api_error", "Something went wrong on Stripe's end.")
                return self.read(path, params)
            if method != "POST":
                raise StripeError(405, "invalid_request_error", f"{method} is not allowed on {path}")
            if body and headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
                raise StripeError(400, "invalid_request_error", "Request bodies are form-encoded.")
            key = headers.get("idempotency-key")
            if not key or len(key) > 255:
                raise StripeError(400, "invalid_request_error", "An Idempotency-Key (at most 255 characters) is "
                                  "required by this fake on every POST.")
            params = decode_form(body)
            self.requests.append({"method": "POST", "path": path, "params": params, "headers": headers})
            if self.fail_next is not None:
                status, self.fail_next = self.fail_next, None
                raise StripeError(status, "api_error", "Something went wrong on Stripe's end.")
            fingerprint = orjson.dumps([path, params], option=orjson.OPT_SORT_KEYS).decode()
            if key in self.keys:
                first, status, answer = self.keys[key]
                if first != fingerprint:
                    raise StripeError(400, "idempotency_error", "Keys for idempotent requests can only be used "
                                      "with the same parameters they were first used with.")
                return status, answer
            try:
                status, answer = self.route(path, params)
            except StripeError as exc:
                status, answer = exc.status, exc.body
            if status < 500:
                self.keys[key] = (fingerprint, status, answer)
            return status, answer

    def route(self, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path == "/v1/payment_intents":
            return self.create(params)
        if m := re.fullmatch(r"/v1/payment_intents/(pi_\w+)/capture", path):
            return self.capture(m[1], params)
        if m := re.fullmatch(r"/v1/payment_intents/(pi_\w+)/cancel", path):
            return self.cancel(m[1], params)
        if path == "/v1/refunds":
            return self.refund(params)
        raise StripeError(404, "invalid_request_error", f"Unrecognized request URL (POST: {path}).")

    # ---------------------------------------------------------------- reads

    def read(self, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if m := re.fullmatch(r"/v1/payment_intents/(pi_\w+)", path):
            self._unknown(params, {"expand", "client_secret"})
            return 200, self._out(self._intent(m[1]), params)
        if path == "/v1/payment_intents":
            self._unknown(params, {"customer", "created", "ending_before", "expand", "limit", "starting_after"})
            return 200, self._page(path, list(self.intents.values()), params)
        if path == "/v1/refunds":
            self._unknown(params, {"charge", "created", "ending_before", "expand", "limit", "payment_intent",
                                   "starting_after"})
            rows = [r for r in self.refunds.values()
                    if params.get("payment_intent") in (None, r["payment_intent"])
                    and params.get("charge") in (None, r["charge"])]
            return 200, self._page(path, rows, params)
        raise StripeError(404, "invalid_request_error", f"Unrecognized request URL (GET: {path}).")

    def _page(self, url: str, rows: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        """One page of a list, newest first (creation order: ``created`` has whole seconds only)."""
        limit = _int(params, "limit") or 10
        if limit > 100:
            raise StripeError(400, "invalid_request_error", "This value must be less than or equal to 100.",
                              param="limit", code="parameter_invalid_integer")
        rows = rows[::-1]  # dicts keep creation order
        ids = [r["id"] for r in rows]
        for cursor in ("starting_after", "ending_before"):
            if cursor in params and params[cursor] not in ids:
                raise StripeError(400, "invalid_request_error", f"No such object: '{params[cursor]}'", param=cursor,
                                  code="resource_missing")
        if "starting_after" in params:
            rows = rows[ids.index(params["starting_after"]) + 1:]
            page = rows[:limit]
        elif "ending_before" in params:
            rows = rows[:ids.index(params["ending_before"])]
            page = rows[-limit:]
        else:
            page = rows[:limit]
        return {"object": "list", "data": page, "has_more": len(rows) > len(page), "url": url}

    def fail_refund(self, refund_id: str, reason: str = "expired_or_canceled_card") -> None:
        """The refund fails after it was accepted (Stripe: ``charge.refund.updated``): its money stays charged."""
        with self.lock:
            self.refunds[refund_id].update(status="failed", failure_reason=reason,
                                           failure_balance_transaction="txn_" + secrets.token_hex(12))

    # ---------------------------------------------------------------- endpoints

    def _unknown(self, params: dict[str, Any], allowed: set[str]) -> None:
        for name in params:
            if name not in allowed:
                raise StripeError(400, "invalid_request_error", f"Received unknown parameter: {name}", param=name,
                                  code="parameter_unknown")

    def _metadata(self, params: dict[str, Any]) -> dict[str, str]:
        metadata = params.get("metadata", {})
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise StripeError(400, "invalid_request_error", "Invalid metadata", param="metadata")
        if any(len(k) > 40 or len(v) > 500 for k, v in metadata.items()):
            raise StripeError(400, "invalid_request_error", "Metadata keys are at most 40 characters, values 500.",
                              param="metadata")
        return metadata

    def create(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self._unknown(params, CREATE_PARAMS)
        amount = _int(params, "amount", required=True)
        currency = params.get("currency")
        if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
            raise StripeError(400, "invalid_request_error", "Invalid currency: three lower-case letters.",
                              param="currency", code="parameter_missing" if currency is None else "invalid_currency")
        if params.get("capture_method", "automatic") not in ("automatic", "automatic_async", "manual"):
            raise StripeError(400, "invalid_request_error", "Invalid capture_method", param="capture_method")
        confirm = params.get("confirm", "false")
        if confirm not in ("true", "false"):
            raise StripeError(400, "invalid_request_error", "Invalid boolean", param="confirm")
        pm = params.get("payment_method")
        if confirm == "true" and not params.get("return_url"):
            raise StripeError(400, "invalid_request_error", "A `return_url` must be specified because this Payment "
                              "Intent is configured to automatically accept the payment methods enabled in the "
                              "Dashboard, some of which may require a full page redirect to succeed.",
                              param="return_url")
        if pm is not None and pm not in CARDS:
            raise StripeError(400, "invalid_request_error", f"No such PaymentMethod: '{pm}'", param="payment_method",
                              code="resource_missing")
        pi: dict[str, Any] = {
            "id": "pi_" + secrets.token_hex(12), "object": "payment_intent", "amount": amount, "amount_capturable": 0,
            "amount_received": 0, "currency": currency, "capture_method": params.get("capture_method", "automatic"),
            "confirmation_method": "automatic", "created": int(time.time()), "livemode": False,
            "metadata": self._metadata(params), "next_action": None, "last_payment_error": None,
            "payment_method": pm, "latest_charge": None, "status": "requires_payment_method",
            "canceled_at": None, "cancellation_reason": None, "client_secret": "pi_secret_" + secrets.token_hex(8),
        }
        self.intents[pi["id"]] = pi
        if confirm == "true" and pm is not None:
            if pm in DECLINES:
                code, decline, message = DECLINES[pm]
                error = {"type": "card_error", "code": code, "decline_code": decline, "message": message,
                         "charge": "ch_" + secrets.token_hex(12)}
                pi["last_payment_error"] = error
                raise StripeError(402, "card_error", message, code=code, decline_code=decline,
                                  charge=error["charge"], payment_intent=self._out(pi, params))
            if pm in THREE_DS:
                pi["status"] = "requires_action"
                pi["next_action"] = {"type": "redirect_to_url", "redirect_to_url": {
                    "url": f"https://hooks.stripe.com/3d_secure_2/hosted?payment_intent={pi['id']}",
                    "return_url": params["return_url"]}}
            elif pi["capture_method"] == "manual":
                pi["status"], pi["amount_capturable"] = "requires_capture", amount
            else:
                pi["status"], pi["amount_received"] = "succeeded", amount
            pi["latest_charge"] = "ch_" + secrets.token_hex(12)
        elif pm is not None:
            pi["status"] = "requires_confirmation"
        return 200, self._out(pi, params)

    def _out(self, pi: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        out = dict(pi)
        if "payment_method" in params.get("expand", []) and pi["payment_method"]:
            brand, last4 = CARDS[pi["payment_method"]]
            out["payment_method"] = {"id": pi["payment_method"], "object": "payment_method", "type": "card",
                                     "card": {"brand": brand, "last4": last4, "exp_month": 12, "exp_year": 2034}}
        return out

    def _intent(self, ref: str) -> dict[str, Any]:
        if ref not in self.intents:
            raise StripeError(404, "invalid_request_error", f"No such payment_intent: '{ref}'",
                              code="resource_missing", param="intent")
        return self.intents[ref]

    def capture(self, ref: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self._unknown(params, {"amount_to_capture", "expand", "metadata", "final_capture"})
        pi = self._intent(ref)
        if pi["status"] != "requires_capture":
            raise StripeError(400, "invalid_request_error", f"This PaymentIntent could not be captured because it "
                              f"has a status of {pi['status']}.", code="payment_intent_unexpected_state")
        amount = _int(params, "amount_to_capture") or pi["amount_capturable"]
        if amount > pi["amount_capturable"]:
            raise StripeError(400, "invalid_request_error", "The amount to capture is more than the amount "
                              "capturable.", code="amount_too_large", param="amount_to_capture")
        pi.update(status="succeeded", amount_received=amount, amount_capturable=0)
        return 200, self._out(pi, params)

    def cancel(self, ref: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self._unknown(params, {"cancellation_reason", "expand"})
        if params.get("cancellation_reason") not in (None, "duplicate", "fraudulent", "requested_by_customer",
                                                     "abandoned"):
            raise StripeError(400, "invalid_request_error", "Invalid cancellation_reason",
                              param="cancellation_reason")
        pi = self._intent(ref)
        if pi["status"] not in ("requires_payment_method", "requires_capture", "requires_confirmation",
                                "requires_action", "processing"):
            raise StripeError(400, "invalid_request_error", f"You cannot cancel this PaymentIntent because it has a "
                              f"status of {pi['status']}.", code="payment_intent_unexpected_state")
        pi.update(status="canceled", amount_capturable=0, canceled_at=int(time.time()),
                  cancellation_reason=params.get("cancellation_reason"))
        return 200, self._out(pi, params)

    def refund(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self._unknown(params, {"payment_intent", "charge", "amount", "reason", "metadata", "expand"})
        if not params.get("payment_intent") and not params.get("charge"):
            raise StripeError(400, "invalid_request_error", "One of charge or payment_intent is required.",
                              code="parameter_missing")
        if params.get("reason") not in (None, "duplicate", "fraudulent", "requested_by_customer"):
            raise StripeError(400, "invalid_request_error", "Invalid reason", param="reason")
        pi = self._intent(params["payment_intent"])
        if pi["status"] != "succeeded":
            raise StripeError(400, "invalid_request_error", "This PaymentIntent has no successful charge to refund.",
                              code="charge_not_refundable")
        refunded = sum(r["amount"] for r in self.refunds.values()
                       if r["payment_intent"] == pi["id"] and r["status"] not in ("failed", "canceled"))
        left = pi["amount_received"] - refunded
        amount = _int(params, "amount") or left
        if left <= 0:
            raise StripeError(400, "invalid_request_error", "Charge has already been refunded.",
                              code="charge_already_refunded")
        if amount > left:
            raise StripeError(400, "invalid_request_error", f"Refund amount ({amount}) is greater than unrefunded "
                              f"amount on charge ({left})", code="amount_too_large", param="amount")
        refund = {"id": "re_" + secrets.token_hex(12), "object": "refund", "amount": amount,
                  "balance_transaction": "txn_" + secrets.token_hex(12), "charge": pi["latest_charge"],
                  "created": int(time.time()), "currency": pi["currency"], "metadata": self._metadata(params),
                  "payment_intent": pi["id"], "reason": params.get("reason"), "receipt_number": None,
                  "source_transfer_reversal": None, "status": "succeeded", "transfer_reversal": None}
        self.refunds[refund["id"]] = refund
        return 200, refund


class Served:
    """The fake on a free local port (a real uvicorn), for as long as the test needs it."""

    def __init__(self, fake: FakeStripe) -> None:
        self.fake = fake
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(fake.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake Stripe did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
