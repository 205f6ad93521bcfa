"""Request and response shapes of the payments API. Money is a decimal string (never a float)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field


class PaymentOperationRead(BaseModel):
    kind: str
    phase: str
    status: str
    amount: Decimal | None
    provider_ref: str | None
    code: str | None
    message: str | None
    created_at: datetime


class PaymentRead(BaseModel):
    """A tender: no card data, only the provider's reference and, when it gave them, brand and last 4 digits."""

    id: str
    ref: str
    order_id: str | None
    position: int
    method: str
    provider: str
    status: str
    currency: str
    amount: Decimal
    authorised_amount: Decimal
    captured_amount: Decimal
    refunded_amount: Decimal
    refund_pending_amount: Decimal
    provider_ref: str | None
    brand: str | None
    last4: str | None
    decline_code: str | None
    decline_reason: str | None
    next_action_url: str | None
    created_at: datetime
    updated_at: datetime
    operations: list[PaymentOperationRead] = Field(default_factory=list)


class WebhookAnswer(BaseModel):
    received: bool = True
    outcome: str = Field(description="applied, duplicate (this event was applied before), ignored or unknown")


class GiftCardCreate(BaseModel):
    currency: str = Field(min_length=3, max_length=3)
    amount: Decimal = Field(description="the initial balance, e.g. \"50.00\"")
    code: str | None = Field(default=None, max_length=32, description="default: a new random GC-XXXX-... code")
    expires_at: datetime | None = None


class GiftCardRead(BaseModel):
    code: str
    currency: str
    initial_balance: Decimal
    balance: Decimal
    active: bool
    expires_at: datetime | None
    created_at: datetime


class TestAuthentication(BaseModel):
    """The test provider's bank page, as an API: authenticate or fail a pending payment."""

    __test__ = False
    action: str = Field(pattern="^(authenticate|fail)$")
    deliver: bool = Field(default=True, description="send the webhook to our endpoint after answering")


class SignedWebhook(BaseModel):
    url: str
    headers: dict[str, str]
    body: str


class TestAuthenticationRead(BaseModel):
    __test__ = False
    event_id: str
    payment_intent: dict[str, Any]
    webhook: SignedWebhook
