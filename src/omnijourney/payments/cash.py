"""Cash at a till: settled the moment the cashier takes it (authorised and captured at once); a refund is cash
handed back. Nothing to call: the till is the provider, and its drawer the record."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from omnijourney.payments.providers import Authorisation, Captured, Method, ProviderError, Refunded, WebhookEvent


class CashProvider:
    """Provider ``cash``. Its reference is derived from the idempotency key, so a retry is the same payment."""

    name = "cash"

    def authorise(self, *, amount: Decimal, currency: str, method: Method, idempotency_key: str,
                  metadata: Mapping[str, str]) -> Authorisation:
        return Authorisation(status="captured", provider_ref=f"cash_{idempotency_key.partition(':')[0]}",
                             amount=amount)

    def capture(self, *, ref: str, amount: Decimal, currency: str, idempotency_key: str) -> Captured:
        return Captured(amount)  # taken already

    def void(self, *, ref: str, idempotency_key: str) -> None:
        raise ProviderError("already_captured", "cash is in the drawer: give it back as a refund")

    def refund(self, *, ref: str, amount: Decimal, currency: str, idempotency_key: str,
               reason: str | None = None) -> Refunded:
        return Refunded(refund_ref=f"cash_{idempotency_key}", amount=amount)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        from omnijourney.payments.providers import WebhookInvalid

        raise WebhookInvalid("cash sends no webhooks")
