"""The built-in test provider (``test``): a card processor that behaves like a real one, without money.

It answers as Stripe does in test mode, with Stripe's documented test payment-method ids and its PaymentIntent
shapes (so :mod:`omnijourney.payments.stripe` reads both):

==========================================  ==================================================================
``pm_card_visa``, ``pm_card_visa_debit``,   authorised
``pm_card_mastercard``, ``pm_card_amex``
``pm_card_chargeDeclined``                  declined ``generic_decline`` "Your card was declined."
``..._chargeDeclinedInsufficientFunds``     declined ``insufficient_funds``
``..._chargeDeclinedExpiredCard``           declined ``expired_card``
``pm_card_authenticationRequired``,         pending: the shopper authenticates on the "bank page"
``pm_card_threeDSecure2Required``           (``/payments/test-provider/authenticate/{ref}``), then a webhook
==========================================  ==================================================================

Like a provider's server it keeps its own state outside our transactions, in a small SQLite file of its own (a
rollback of ours never undoes a charge; a restart keeps it), and refuses what a real one refuses: capture above the
authorised amount or of a voided payment, refunds above what was captured, an idempotency key reused with other
parameters. Each operation is one ``BEGIN IMMEDIATE`` transaction in that file; answers are stored under their
idempotency key, so a retry gets the first answer (errors included), as Stripe does.

Events (a pending payment authenticated or failed) are signed with Stripe's scheme and the test webhook secret,
kept in an outbox and delivered by :meth:`TestProvider.deliver` to our webhook endpoint.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson

from omnijourney.payments import signatures
from omnijourney.payments import stripe as shapes
from omnijourney.payments.providers import (
    Authorisation,
    Captured,
    Method,
    ProviderError,
    Refunded,
    WebhookEvent,
)
from omnijourney.pricing.money import check_currency, from_minor, to_minor

# payment method -> (brand, last4, outcome, decline code, message)
CARDS: dict[str, tuple[str, str, str, str | None, str | None]] = {
    "pm_card_visa": ("visa", "4242", "authorised", None, None),
    "pm_card_visa_debit": ("visa", "5556", "authorised", None, None),
    "pm_card_mastercard": ("mastercard", "4444", "authorised", None, None),
    "pm_card_amex": ("amex", "8431", "authorised", None, None),
    "pm_card_chargeDeclined": ("visa", "0002", "declined", "generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": ("visa", "9995", "declined", "insufficient_funds",
                                                "Your card has insufficient funds."),
    "pm_card_chargeDeclinedExpiredCard": ("visa", "0069", "declined", "expired_card", "Your card has expired."),
    "pm_card_authenticationRequired": ("visa", "3184", "pending", None, None),
    "pm_card_threeDSecure2Required": ("visa", "3220", "pending", None, None),
}
AUTH_FAILED = ("payment_intent_authentication_failure",
               "The bank could not authenticate the card holder: the payment was not authorised.")
PAGE_PATH = "/payments/test-provider/authenticate/"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS intents (id TEXT PRIMARY KEY, amount INTEGER NOT NULL, currency TEXT NOT NULL,
  payment_method TEXT NOT NULL, status TEXT NOT NULL, amount_capturable INTEGER NOT NULL DEFAULT 0,
  amount_received INTEGER NOT NULL DEFAULT 0, amount_refunded INTEGER NOT NULL DEFAULT 0, decline_code TEXT,
  decline_message TEXT, metadata TEXT NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS refunds (id TEXT PRIMARY KEY, payment_intent TEXT NOT NULL, amount INTEGER NOT NULL,
  created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, answer TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, created INTEGER NOT NULL, payload TEXT NOT NULL,
  delivered_at INTEGER);
"""


@dataclass(frozen=True, slots=True)
class SignedEvent:
    """An event as it is sent to a webhook endpoint: raw body and headers (signed now)."""

    id: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class PastCharge:
    """A card charge made before, captured and perhaps partly refunded, for :meth:`TestProvider.import_charges`."""

    ref: str  # the PaymentIntent's id, as our payment keeps it (provider_ref)
    payment_method: str  # one of CARDS
    amount_minor: int
    currency: str
    created: int  # Unix time
    metadata: Mapping[str, str]
    refunds: tuple[tuple[str, int, int], ...] = ()  # (refund id, minor units, Unix time)


class TestProvider:
    """Provider ``test``. One instance per state file; safe to share between threads (and processes: SQLite)."""

    __test__ = False  # not a pytest test class, whatever its name
    name = "test"

    def __init__(self, path: str | Path, *, webhook_secret: str, public_url: str | None = None,
                 tolerance_s: int = 300, latency_s: float = 0.0) -> None:
        self.path = str(path)
        # a remote API's round trip before an authorisation is answered (OMNI_PAYMENTS__TEST_PROVIDER_LATENCY_S):
        # crash tests need checkouts caught between their steps, which a provider answering in 50 us rarely leaves
        self.latency_s = latency_s
        self.webhook_secret = webhook_secret
        self.public_url = (public_url or "").rstrip("/")
        self.tolerance_s = tolerance_s
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self._conn.row_factory = sqlite3.Row
        if self.path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
            # a remote API answers without waiting for our disk: commits reach the WAL, fsync only at checkpoints
            # (a power cut may lose its last moments; a crash of the process loses nothing)
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    # ------------------------------------------------------------ one transaction per operation, idempotent

    def _operation(self, key: str | None, fingerprint: Any, fn: Callable[[sqlite3.Connection], dict[str, Any]],
                   ) -> dict[str, Any]:
        """Run ``fn`` in a transaction; with ``key``, store its answer (or refusal) and give it to any retry."""
        digest = orjson.dumps(fingerprint, option=orjson.OPT_SORT_KEYS).decode()
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                if key is not None:
                    row = c.execute("SELECT fingerprint, answer FROM idempotency WHERE key = ?", (key,)).fetchone()
                    if row is not None:
                        c.execute("COMMIT")
                        if row["fingerprint"] != digest:
                            raise ProviderError("idempotency_key_reused", "Keys for idempotent requests can only be "
                                                "used with the same parameters they were first used with.")
                        return _answer(orjson.loads(row["answer"]))
                try:
                    answer = fn(c)
                except ProviderError as exc:
                    answer = {"error": {"code": exc.code, "message": exc.message}}
                if key is not None:
                    c.execute("INSERT INTO idempotency (key, fingerprint, answer) VALUES (?, ?, ?)",
                              (key, digest, orjson.dumps(answer).decode()))
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise
        return _answer(answer)

    def _intent(self, c: sqlite3.Connection, ref: str) -> sqlite3.Row:
        row = c.execute("SELECT * FROM intents WHERE id = ?", (ref,)).fetchone()
        if row is None:
            raise ProviderError("resource_missing", f"No such payment_intent: '{ref}'")
        return row

    # ------------------------------------------------------------ the provider interface

    def authorise(self, *, amount: Decimal, currency: str, method: Method, idempotency_key: str,
                  metadata: Mapping[str, str]) -> Authorisation:
        check_currency(currency)
        minor = to_minor(amount, currency)
        if self.latency_s:
            time.sleep(self.latency_s)

        def run(c: sqlite3.Connection) -> dict[str, Any]:
            if method.kind != "card" or method.token not in CARDS:
                raise ProviderError("resource_missing", f"No such PaymentMethod: '{method.token}'")
            if minor <= 0:
                raise ProviderError("amount_too_small", "Amount must be at least 1 minor unit.")
            _, _, outcome, code, message = CARDS[method.token]
            ref = "pi_test_" + secrets.token_hex(12)
            status = {"authorised": "requires_capture", "declined": "requires_payment_method",
                      "pending": "requires_action"}[outcome]
            c.execute("INSERT INTO intents (id, amount, currency, payment_method, status, amount_capturable, "
                      "decline_code, decline_message, metadata, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (ref, minor, currency.lower(), method.token, status,
                       minor if outcome == "authorised" else 0, code, message, orjson.dumps(dict(metadata)).decode(),
                       int(time.time())))
            return self._shape(self._intent(c, ref))

        pi = self._operation(idempotency_key, ["authorise", minor, currency, method.token, dict(metadata)], run)
        return shapes.authorisation(pi)

    def capture(self, *, ref: str, amount: Decimal, currency: str, idempotency_key: str) -> Captured:
        minor = to_minor(amount, currency)

        def run(c: sqlite3.Connection) -> dict[str, Any]:
            pi = self._intent(c, ref)
            if pi["status"] != "requires_capture":
                raise ProviderError("payment_intent_unexpected_state",
                                    f"This PaymentIntent could not be captured because it has a status of "
                                    f"{pi['status']}. Only a PaymentIntent with status requires_capture may be "
                                    "captured.")
            if minor <= 0 or minor > pi["amount_capturable"]:
                raise ProviderError("amount_too_large", f"The amount to capture ({minor}) is more than the "
                                    f"amount capturable ({pi['amount_capturable']}).")
            c.execute("UPDATE intents SET status = 'succeeded', amount_received = ?, amount_capturable = 0 "
                      "WHERE id = ?", (minor, ref))
            return self._shape(self._intent(c, ref))

        pi = self._operation(idempotency_key, ["capture", ref, minor], run)
        return Captured(from_minor(pi["amount_received"], currency))

    def void(self, *, ref: str, idempotency_key: str) -> None:
        def run(c: sqlite3.Connection) -> dict[str, Any]:
            pi = self._intent(c, ref)
            if pi["status"] not in ("requires_capture", "requires_action", "requires_payment_method"):
                raise ProviderError("payment_intent_unexpected_state",
                                    f"You cannot cancel this PaymentIntent because it has a status of "
                                    f"{pi['status']}.")
            c.execute("UPDATE intents SET status = 'canceled', amount_capturable = 0 WHERE id = ?", (ref,))
            return self._shape(self._intent(c, ref))

        self._operation(idempotency_key, ["void", ref], run)

    def refund(self, *, ref: str, amount: Decimal, currency: str, idempotency_key: str,
               reason: str | None = None) -> Refunded:
        minor = to_minor(amount, currency)

        def run(c: sqlite3.Connection) -> dict[str, Any]:
            pi = self._intent(c, ref)
            if pi["status"] != "succeeded":
                raise ProviderError("payment_intent_unexpected_state",
                                    f"This PaymentIntent is {pi['status']}: only a captured payment can be refunded.")
            left = pi["amount_received"] - pi["amount_refunded"]
            if minor <= 0 or minor > left:
                raise ProviderError("amount_too_large" if left else "charge_already_refunded",
                                    f"Refund amount ({minor}) is greater than unrefunded amount on charge ({left}).")
            refund_id = "re_test_" + secrets.token_hex(12)
            c.execute("UPDATE intents SET amount_refunded = amount_refunded + ? WHERE id = ?", (minor, ref))
            c.execute("INSERT INTO refunds (id, payment_intent, amount, created) VALUES (?, ?, ?, ?)",
                      (refund_id, ref, minor, int(time.time())))
            return {"id": refund_id, "object": "refund", "amount": minor, "currency": pi["currency"],
                    "payment_intent": ref, "status": "succeeded", "reason": reason}

        answer = self._operation(idempotency_key, ["refund", ref, minor], run)
        return Refunded(answer["id"], from_minor(answer["amount"], currency))

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        header = next((v for k, v in headers.items() if k.lower() == signatures.HEADER.lower()), None)
        signatures.verify(header, body, [self.webhook_secret], tolerance_s=self.tolerance_s)
        return shapes.event(body)

    # ------------------------------------------------------------ the bank page's side

    def intent(self, ref: str) -> dict[str, Any]:
        """The PaymentIntent as the provider's API would show it (the bank page, tests)."""
        return self._operation(None, None, lambda c: self._shape(self._intent(c, ref)))

    def import_charges(self, charges: Iterable[PastCharge]) -> int:
        """Charges made before, written as if each had been authorised, captured and refunded here, in one
        transaction: a demo's months of orders (or history from another system) that a refund later finds like any
        other charge. A charge already held under its reference is replaced. Returns how many were written."""
        intents, refunds = [], []
        for ch in charges:
            if ch.payment_method not in CARDS:
                raise ProviderError("resource_missing", f"No such PaymentMethod: '{ch.payment_method}'")
            refunded = sum(minor for _, minor, _ in ch.refunds)
            if ch.amount_minor <= 0 or refunded > ch.amount_minor:
                raise ProviderError("amount_too_large", f"{ch.ref}: refunds ({refunded}) above the charge")
            intents.append((ch.ref, ch.amount_minor, ch.currency.lower(), ch.payment_method, "succeeded", 0,
                            ch.amount_minor, refunded, None, None, orjson.dumps(dict(ch.metadata)).decode(),
                            ch.created))
            refunds += [(rid, ch.ref, minor, at) for rid, minor, at in ch.refunds]

        def run(c: sqlite3.Connection) -> dict[str, Any]:
            c.executemany("INSERT OR REPLACE INTO intents (id, amount, currency, payment_method, status, "
                          "amount_capturable, amount_received, amount_refunded, decline_code, decline_message, "
                          "metadata, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", intents)
            c.executemany("INSERT OR REPLACE INTO refunds (id, payment_intent, amount, created) VALUES (?, ?, ?, ?)",
                          refunds)
            return {}

        self._operation(None, None, run)
        return len(intents)

    def close(self) -> None:
        """Close its state file (a process done with it, e.g. before the file is moved)."""
        with self._lock:
            self._conn.close()

    def intents(self) -> list[dict[str, Any]]:
        """Every PaymentIntent it holds, oldest first, as the provider's API would list them (audits, tests)."""
        return self._operation(None, None, lambda c: {"data": [self._shape(r) for r in c.execute(
            "SELECT * FROM intents ORDER BY rowid")]})["data"]

    def refunds(self, payment_intent: str | None = None) -> list[dict[str, Any]]:
        """Its Refund objects, newest first, as ``GET /v1/refunds`` lists them (``payment_intent``: one intent's):
        what a captured intent still holds is its ``amount_received`` less these (``stripe.refunded``)."""
        where, args = ("WHERE r.payment_intent = ?", (payment_intent,)) if payment_intent else ("", ())
        return self._operation(None, None, lambda c: {"data": [
            {"id": r["id"], "object": "refund", "amount": r["amount"], "charge": None, "created": r["created"],
             "currency": r["currency"], "metadata": {}, "payment_intent": r["payment_intent"], "reason": None,
             "status": "succeeded"}
            for r in c.execute("SELECT r.*, i.currency FROM refunds r JOIN intents i ON i.id = r.payment_intent "
                               f"{where} ORDER BY r.created DESC, r.rowid DESC", args)]})["data"]

    def complete(self, ref: str, *, success: bool) -> SignedEvent:
        """The shopper finished the bank page: authenticated (authorised) or failed (declined). Returns the event
        for our webhook endpoint, kept in the outbox until :meth:`deliver` hands it over. ``ProviderError`` when
        the payment is not waiting for authentication (already done, voided)."""

        def run(c: sqlite3.Connection) -> dict[str, Any]:
            pi = self._intent(c, ref)
            if pi["status"] != "requires_action":
                raise ProviderError("payment_intent_unexpected_state",
                                    f"This payment is not waiting for authentication (it is {pi['status']}).")
            if success:
                c.execute("UPDATE intents SET status = 'requires_capture', amount_capturable = amount WHERE id = ?",
                          (ref,))
                kind = "payment_intent.amount_capturable_updated"
            else:
                c.execute("UPDATE intents SET status = 'requires_payment_method', decline_code = ?, "
                          "decline_message = ? WHERE id = ?", (*AUTH_FAILED, ref))
                kind = "payment_intent.payment_failed"
            now = int(time.time())
            payload = {"id": "evt_test_" + secrets.token_hex(12), "object": "event", "type": kind, "created": now,
                       "livemode": False, "data": {"object": self._shape(self._intent(c, ref))}}
            c.execute("INSERT INTO events (id, created, payload) VALUES (?, ?, ?)",
                      (payload["id"], now, orjson.dumps(payload).decode()))
            return payload

        payload = self._operation(None, ["complete", ref, success], run)
        return self.signed(payload["id"])

    def signed(self, event_id: str) -> SignedEvent:
        """An outbox event signed now, as it would be sent."""
        row = self._operation(None, None, lambda c: dict(c.execute(
            "SELECT payload FROM events WHERE id = ?", (event_id,)).fetchone() or {"error": {
                "code": "resource_missing", "message": f"No such event: '{event_id}'"}}))
        body = row["payload"].encode()
        return SignedEvent(event_id, body, {"Content-Type": "application/json",
                                            signatures.HEADER: signatures.sign(body, self.webhook_secret)})

    def undelivered(self) -> list[str]:
        rows = self._operation(None, None, lambda c: {"ids": [r[0] for r in c.execute(
            "SELECT id FROM events WHERE delivered_at IS NULL ORDER BY rowid")]})
        return rows["ids"]

    def deliver(self, url: str, *, timeout_s: float = 10.0) -> int:
        """POST every undelivered event to ``url`` (our webhook endpoint), signed at sending as Stripe does;
        an event the endpoint does not acknowledge with 2xx stays in the outbox for the next delivery.
        Returns how many were acknowledged."""
        done = 0
        with httpx.Client(timeout=timeout_s) as client:
            for event_id in self.undelivered():
                signed = self.signed(event_id)
                try:
                    r = client.post(url, content=signed.body, headers=signed.headers)
                except httpx.HTTPError:
                    break  # the endpoint is down: keep the rest for the next delivery
                if 200 <= r.status_code < 300:
                    self._mark_delivered(event_id)
                    done += 1
        return done

    def _mark_delivered(self, event_id: str) -> None:
        def run(c: sqlite3.Connection) -> dict[str, Any]:
            c.execute("UPDATE events SET delivered_at = ? WHERE id = ?", (int(time.time()), event_id))
            return {}

        self._operation(None, None, run)

    def authenticate_url(self, ref: str) -> str:
        return f"{self.public_url}{PAGE_PATH}{ref}"

    def _shape(self, row: sqlite3.Row) -> dict[str, Any]:
        """A PaymentIntent as Stripe's API documents it (the fields we read)."""
        brand, last4, *_ = CARDS.get(row["payment_method"], ("unknown", "0000", "", None, None))
        status = row["status"]
        error = None
        if status == "requires_payment_method" and row["decline_code"]:
            error = {"type": "card_error", "code": "card_declined", "decline_code": row["decline_code"],
                     "message": row["decline_message"]}
        action = None
        if status == "requires_action":
            action = {"type": "redirect_to_url",
                      "redirect_to_url": {"url": self.authenticate_url(row["id"]), "return_url": None}}
        return {"id": row["id"], "object": "payment_intent", "amount": row["amount"],
                "amount_capturable": row["amount_capturable"], "amount_received": row["amount_received"],
                "currency": row["currency"], "status": status, "capture_method": "manual",
                "last_payment_error": error, "next_action": action, "metadata": orjson.loads(row["metadata"]),
                "payment_method": {"id": row["payment_method"], "object": "payment_method", "type": "card",
                                   "card": {"brand": brand, "last4": last4}},
                "created": row["created"], "livemode": False}


def _answer(answer: dict[str, Any]) -> dict[str, Any]:
    if "error" in answer and set(answer) == {"error"}:
        raise ProviderError(answer["error"]["code"], answer["error"]["message"])
    return answer
