"""Stripe's PaymentIntents API (provider ``stripe``), with separate authorisation and capture.

* authorise: ``POST /v1/payment_intents`` with ``confirm=true`` and ``capture_method=manual`` (create and confirm
  in one call), the payment method's id, ``return_url`` (where 3-D Secure sends the shopper back) and our payment id
  in ``metadata[payment_id]`` (webhooks carry it back);
* capture: ``POST /v1/payment_intents/{id}/capture`` with ``amount_to_capture`` (partial capture releases the rest);
* void: ``POST /v1/payment_intents/{id}/cancel``;
* refund: ``POST /v1/refunds`` with ``payment_intent`` and ``amount`` (partial; Stripe refuses more than captured);
* reading back (audits): ``GET /v1/payment_intents/{id}``, ``GET /v1/payment_intents`` and ``GET /v1/refunds``
  (``payment_intent=`` for one intent's), lists paged with ``limit`` and ``starting_after`` while ``has_more``. What
  a captured intent still holds is ``amount_received`` less its Refund objects' ``amount`` (:func:`refunded`): a
  PaymentIntent has no refunded total, and a refund that ``failed`` or was ``canceled`` gave nothing back.

Requests are form-encoded with Stripe's bracket notation (``metadata[payment_id]=...``, ``expand[0]=...``), carry
``Authorization: Bearer sk_...`` and an ``Idempotency-Key``; amounts are integers in the currency's minor unit
(zero-decimal currencies such as JPY as they are), currencies lower-case. Statuses map to ours: ``requires_capture``
-> authorised, ``requires_action`` -> pending (``next_action.redirect_to_url.url``), ``requires_payment_method``
after a failed attempt -> declined (``last_payment_error.decline_code`` / ``message``), ``succeeded`` -> captured,
``canceled`` -> voided. A card decline on confirmation answers HTTP 402 with a ``card_error`` that holds the
PaymentIntent; that is a decline, not an error. Webhooks: see :mod:`omnijourney.payments.signatures`; besides the
PaymentIntent events, a Refund that fails after it was made (``refund.failed``, ``refund.updated`` or
``charge.refund.updated`` with ``status`` failed or canceled and its ``failure_reason``) gives its money back to the
payment's books (:func:`omnijourney.payments.refunds.failed_later`).

The built-in test provider keeps Stripe's shapes, so :func:`authorisation` and :func:`event` serve it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import httpx
import orjson

from omnijourney.payments import signatures
from omnijourney.payments.providers import (
    Authorisation,
    Captured,
    Method,
    ProviderError,
    ProviderUnavailable,
    Refunded,
    WebhookEvent,
    WebhookInvalid,
)
from omnijourney.pricing.money import from_minor, to_minor


def encode_form(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Stripe's form encoding: nested objects as ``key[sub]``, lists as ``key[0]``, booleans as true/false."""
    out: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if value is None:
            continue
        if isinstance(value, Mapping):
            out.extend(encode_form(value, name))
        elif isinstance(value, list | tuple):
            out.extend(encode_form({str(i): v for i, v in enumerate(value)}, name))
        elif isinstance(value, bool):
            out.append((name, "true" if value else "false"))
        else:
            out.append((name, str(value)))
    return out


def authorisation(pi: Mapping[str, Any]) -> Authorisation:
    """Our view of a PaymentIntent just confirmed."""
    currency = str(pi.get("currency", "")).upper()
    status, ref = pi.get("status"), pi.get("id")
    brand, last4 = _card(pi)
    if status == "requires_capture":
        return Authorisation("authorised", ref, from_minor(int(pi.get("amount_capturable") or 0), currency),
                             brand=brand, last4=last4)
    if status in ("requires_action", "processing", "requires_confirmation"):
        return Authorisation("pending", ref, from_minor(int(pi.get("amount") or 0), currency),
                             next_action_url=_redirect(pi), brand=brand, last4=last4)
    if status == "succeeded":
        return Authorisation("captured", ref, from_minor(int(pi.get("amount_received") or 0), currency),
                             brand=brand, last4=last4)
    if status == "requires_payment_method":
        code, reason = _decline(pi.get("last_payment_error"))
        return Authorisation("declined", ref, Decimal(0), decline_code=code, decline_reason=reason, brand=brand,
                             last4=last4)
    raise ProviderError("unexpected_status", f"the PaymentIntent is {status!r} after confirmation")


def _redirect(pi: Mapping[str, Any]) -> str | None:
    action = pi.get("next_action") or {}
    if action.get("type") == "redirect_to_url":
        return (action.get("redirect_to_url") or {}).get("url")
    return None


def _decline(error: Mapping[str, Any] | None) -> tuple[str, str]:
    error = error or {}
    code = error.get("decline_code") or error.get("code") or "declined"
    return str(code), str(error.get("message") or "The payment was declined.")


def _card(pi: Mapping[str, Any]) -> tuple[str | None, str | None]:
    method = pi.get("payment_method")
    card = method.get("card") if isinstance(method, Mapping) else None
    if not isinstance(card, Mapping):
        return None, None
    return card.get("brand"), card.get("last4")


# a Refund's statuses that take the money back from the charge (``pending`` and ``requires_action`` are on their way;
# a ``failed`` or ``canceled`` refund returned nothing, and its amount can be refunded again)
REFUNDING = frozenset({"pending", "requires_action", "succeeded"})


def refunded(refunds: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Minor units refunded per PaymentIntent id, from Refund objects as Stripe lists them (``GET /v1/refunds``):
    the ``amount`` of each refund whose ``status`` takes money back (:data:`REFUNDING`)."""
    out: dict[str, int] = {}
    for r in refunds:
        pi = r.get("payment_intent")
        if isinstance(pi, Mapping):  # expanded
            pi = pi.get("id")
        if isinstance(pi, str) and r.get("status") in REFUNDING:
            out[pi] = out.get(pi, 0) + int(r.get("amount") or 0)
    return out


_EVENT_STATUS = {
    "payment_intent.amount_capturable_updated": "authorised",
    "payment_intent.requires_action": "pending",
    "payment_intent.payment_failed": "declined",
    "payment_intent.succeeded": "captured",
    "payment_intent.canceled": "voided",
}


def event(body: bytes) -> WebhookEvent:
    """A verified event body, normalised (PaymentIntent events change a payment; others are passed on as is)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise WebhookInvalid("the body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not isinstance(data.get("type"), str):
        raise WebhookInvalid("the body is not an event (id and type)")
    obj = (data.get("data") or {}).get("object") or {}
    kind = data["type"]
    if isinstance(obj, dict) and obj.get("object") == "refund" and obj.get("status") in ("failed", "canceled"):
        return _refund_failed(data, obj)
    if not isinstance(obj, dict) or obj.get("object") != "payment_intent":
        return WebhookEvent(id=data["id"], type=kind, provider_ref=obj.get("id") if isinstance(obj, dict) else None,
                            raw=data)
    status = _EVENT_STATUS.get(kind)
    currency = str(obj.get("currency", "")).upper()
    code = reason = None
    amount: Decimal | None = None
    if status == "declined":
        code, reason = _decline(obj.get("last_payment_error"))
    elif status == "authorised":
        amount = from_minor(int(obj.get("amount_capturable") or 0), currency)
    elif status == "captured":
        amount = from_minor(int(obj.get("amount_received") or 0), currency)
    return WebhookEvent(id=data["id"], type=kind, provider_ref=obj.get("id"),
                        payment_id=(obj.get("metadata") or {}).get("payment_id"), status=status, amount=amount,
                        decline_code=code, decline_reason=reason, next_action_url=_redirect(obj), raw=data)


# a Refund's failure_reason as Stripe documents its values, for the people who tell the customer
_REFUND_FAILURES = {
    "lost_or_stolen_card": "the card was reported lost or stolen",
    "expired_or_canceled_card": "the card has expired or was cancelled",
    "charge_for_pending_refund_disputed": "the customer disputed the charge while the refund was on its way",
    "insufficient_funds": "the account had too little money to refund from",
    "declined": "the customer's bank declined the refund",
    "merchant_request": "the refund was cancelled at our request",
}


def _refund_failed(data: Mapping[str, Any], obj: Mapping[str, Any]) -> WebhookEvent:
    """A Refund that failed or was cancelled after Stripe accepted it (``refund.failed``, ``refund.updated``,
    ``charge.refund.updated``): its money stayed on the charge."""
    pi = obj.get("payment_intent")
    if isinstance(pi, Mapping):  # expanded
        pi = pi.get("id")
    reason = obj.get("failure_reason") or ("canceled" if obj.get("status") == "canceled" else "unknown")
    currency = str(obj.get("currency", "")).upper()
    return WebhookEvent(id=str(data["id"]), type=str(data["type"]), provider_ref=pi if isinstance(pi, str) else None,
                        payment_id=(obj.get("metadata") or {}).get("payment_id"), status="refund_failed",
                        amount=from_minor(int(obj.get("amount") or 0), currency), refund_ref=obj.get("id"),
                        decline_code=str(reason)[:100],
                        decline_reason=_REFUND_FAILURES.get(reason, f"the refund {obj.get('status')} ({reason})"),
                        raw=dict(data))


class StripeProvider:
    """Provider ``stripe`` over httpx. ``transport`` lets tests route it elsewhere; the API base is a setting."""

    name = "stripe"

    def __init__(self, *, api_key: str, webhook_secrets: Sequence[str], api_base: str = "https://api.stripe.com",
                 return_url: str = "", tolerance_s: int = 300, timeout_s: float = 30.0,
                 api_version: str | None = None) -> None:
        self.webhook_secrets = list(webhook_secrets)
        self.return_url = return_url
        self.tolerance_s = tolerance_s
        headers = {"Authorization": f"Bearer {api_key}"}
        if api_version:
            headers["Stripe-Version"] = api_version
        self._client = httpx.Client(base_url=api_base.rstrip("/"), headers=headers, timeout=timeout_s)

    def _post(self, path: str, params: Mapping[str, Any], idempotency_key: str) -> tuple[int, dict[str, Any]]:
        try:
            r = self._client.post(path, data=dict(encode_form(params)) if params else None,
                                  headers={"Idempotency-Key": idempotency_key})
        except httpx.HTTPError as exc:  # connection refused, timeout, reset: the request may or may not have landed
            raise ProviderUnavailable("network", f"Stripe did not answer: {exc}") from exc
        body = _answer(r)
        error = body.get("error") if isinstance(body, dict) else None
        if r.status_code == 409 or (error and error.get("code") == "idempotency_key_in_use"):
            # a concurrent request with the same key is under way: its outcome is the answer, ask again later
            raise ProviderUnavailable("idempotency_key_in_use", _message(body) or "a request with this key is running")
        if r.status_code == 402 and error and error.get("type") == "card_error":
            return r.status_code, body
        if r.status_code >= 400:
            code = (error or {}).get("code") or (error or {}).get("type") or f"http_{r.status_code}"
            raise ProviderError(str(code), _message(body) or f"Stripe answered {r.status_code}")
        return r.status_code, body

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A read (no Idempotency-Key: a GET changes nothing); errors as for :meth:`_post`."""
        try:
            r = self._client.get(path, params=encode_form(params) if params else None)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable("network", f"Stripe did not answer: {exc}") from exc
        body = _answer(r)
        if r.status_code >= 400 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            code = (error or {}).get("code") or (error or {}).get("type") or f"http_{r.status_code}"
            raise ProviderError(str(code), _message(body) or f"Stripe answered {r.status_code}")
        return body

    def list_all(self, path: str, params: Mapping[str, Any] | None = None, *,
                 page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every object of a list endpoint, page after page (``limit``, then ``starting_after`` the last object's id
        while ``has_more``), in Stripe's order (newest first)."""
        query = {**(params or {}), "limit": page_size}
        while True:
            page = self._get(path, query)
            data = page.get("data") or []
            yield from data
            if not page.get("has_more") or not data:
                return
            query["starting_after"] = data[-1]["id"]

    def intent(self, ref: str) -> dict[str, Any]:
        """The PaymentIntent ``ref`` as Stripe shows it now."""
        return self._get(f"/v1/payment_intents/{ref}")

    def intents(self, *, page_size: int = 100) -> list[dict[str, Any]]:
        """Every PaymentIntent of the account (an audit of the provider's side: :mod:`omnijourney.orders.audit`)."""
        return list(self.list_all("/v1/payment_intents", page_size=page_size))

    def refunds(self, payment_intent: str | None = None, *, page_size: int = 100) -> list[dict[str, Any]]:
        """The Refund objects of one PaymentIntent (every refund of the account without one), each with its
        ``amount`` and ``status``; :func:`refunded` adds up what they took back."""
        params = {"payment_intent": payment_intent} if payment_intent else None
        return list(self.list_all("/v1/refunds", params, page_size=page_size))

    def authorise(self, *, amount: Decimal, currency: str, method: Method, idempotency_key: str,
                  metadata: Mapping[str, str]) -> Authorisation:
        if method.kind != "card" or not method.token:
            raise ProviderError("payment_method_missing", "Stripe takes a card payment method id (pm_...)")
        params = {"amount": to_minor(amount, currency), "currency": currency.lower(), "payment_method": method.token,
                  "confirm": True, "capture_method": "manual", "return_url": self.return_url or None,
                  "metadata": dict(metadata), "expand": ["payment_method"]}
        status, body = self._post("/v1/payment_intents", params, idempotency_key)
        if status == 402:  # declined on confirmation: the error holds the PaymentIntent and the reason
            error = body["error"]
            pi = error.get("payment_intent") or {}
            code, reason = _decline(error)
            return Authorisation("declined", pi.get("id"), Decimal(0), decline_code=code, decline_reason=reason)
        return authorisation(body)

    def capture(self, *, ref: str, amount: Decimal, currency: str, idempotency_key: str) -> Captured:
        status, body = self._post(f"/v1/payment_intents/{ref}/capture",
                                  {"amount_to_capture": to_minor(amount, currency)}, idempotency_key)
        if status == 402 or body.get("status") != "succeeded":
            raise ProviderError("capture_failed", _message(body) or f"the PaymentIntent is {body.get('status')!r}")
        return Captured(from_minor(int(body.get("amount_received") or 0), currency))

    def void(self, *, ref: str, idempotency_key: str) -> None:
        self._post(f"/v1/payment_intents/{ref}/cancel", {}, idempotency_key)

    def refund(self, *, ref: str, amount: Decimal, currency: str, idempotency_key: str,
               reason: str | None = None) -> Refunded:
        params: dict[str, Any] = {"payment_intent": ref, "amount": to_minor(amount, currency)}
        if reason in ("duplicate", "fraudulent", "requested_by_customer"):  # the only values Stripe takes
            params["reason"] = reason
        _, body = self._post("/v1/refunds", params, idempotency_key)
        if body.get("status") in ("failed", "canceled"):
            raise ProviderError("refund_failed", body.get("failure_reason") or f"the refund is {body['status']}")
        return Refunded(body.get("id"), from_minor(int(body.get("amount") or 0), currency),
                        "pending" if body.get("status") in ("pending", "requires_action") else "succeeded")

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        signatures.verify(_header(headers, signatures.HEADER), body, self.webhook_secrets,
                          tolerance_s=self.tolerance_s)
        return event(body)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lower = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lower), None)


def _answer(r: httpx.Response) -> Any:
    """Stripe's JSON answer (``{}`` if it is not JSON); ``ProviderUnavailable`` when Stripe is down or busy (5xx,
    429), where the request may be sent again."""
    try:
        body = r.json()
    except ValueError:
        body = {}
    if r.status_code >= 500 or r.status_code == 429:
        raise ProviderUnavailable(f"http_{r.status_code}", _message(body) or "Stripe is unavailable")
    return body


def _message(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"].get("message")
    return None
