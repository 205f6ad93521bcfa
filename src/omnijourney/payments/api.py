"""Payments routes under ``/api/v1``: a payment, provider webhooks, gift cards (thin: parse, call, shape)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from omnijourney.api.deps import DatabaseDep, SessionDep, reject_nul, require
from omnijourney.api.openapi import Error
from omnijourney.auth.service import Principal
from omnijourney.core.errors import NotFound, OmniError
from omnijourney.payments import giftcards, providers, service
from omnijourney.payments.models import GiftCard, Payment
from omnijourney.payments.providers import WebhookInvalid
from omnijourney.payments.schemas import (
    GiftCardCreate,
    GiftCardRead,
    PaymentOperationRead,
    PaymentRead,
    WebhookAnswer,
)
from omnijourney.pricing.money import from_minor

router = APIRouter(tags=["payments"])
CanRead = Annotated[Principal, Depends(require("payments:read"))]
CanWrite = Annotated[Principal, Depends(require("payments:write"))]


def payment_read(p: Payment, operations: list | None = None) -> PaymentRead:
    m = p.money
    return PaymentRead(
        id=p.id, ref=p.ref, order_id=p.order_id, position=p.position, method=p.method, provider=p.provider,
        status=p.status, currency=p.currency, amount=p.amount, authorised_amount=m(p.authorised_minor),
        captured_amount=m(p.captured_minor), refunded_amount=m(p.refunded_minor),
        refund_pending_amount=m(p.refund_pending_minor), provider_ref=p.provider_ref, brand=p.brand, last4=p.last4,
        decline_code=p.decline_code, decline_reason=p.decline_reason, next_action_url=p.next_action_url,
        created_at=p.created_at, updated_at=p.updated_at,
        operations=[PaymentOperationRead(kind=o.kind, phase=o.phase, status=o.status,
                                         amount=None if o.amount_minor is None else m(o.amount_minor),
                                         provider_ref=o.provider_ref, code=o.code, message=o.message,
                                         created_at=o.created_at) for o in operations or []])


def gift_card_read(c: GiftCard) -> GiftCardRead:
    return GiftCardRead(code=c.code, currency=c.currency, initial_balance=from_minor(c.initial_minor, c.currency),
                        balance=from_minor(c.balance_minor, c.currency), active=c.active, expires_at=c.expires_at,
                        created_at=c.created_at)


@router.get("/payments/{payment_id}", response_model=PaymentRead)
def get_payment(payment_id: str, session: SessionDep, _: CanRead) -> PaymentRead:
    """A payment with every provider call made for it and its outcome."""
    return payment_read(service.get(session, payment_id), service.operations(session, payment_id))


async def _raw_body(request: Request) -> bytes:
    return await request.body()


@router.post("/payments/webhooks/{provider}", response_model=WebhookAnswer,
             responses={400: {"model": Error, "description": "400 invalid_signature: the signature does not verify "
                                                             "(missing, tampered, another secret, too old)"},
                        404: {"model": Error, "description": "No such provider"}},
             dependencies=[Depends(reject_nul)])  # no key, so the NUL check of ``require`` is asked for here
def webhook(provider: str, request: Request, db: DatabaseDep,
            body: Annotated[bytes, Depends(_raw_body)]) -> WebhookAnswer:
    """A provider's event (no API key: its signature authenticates it, checked on the raw body). A replay of an
    event already applied answers 200 ``duplicate`` and changes nothing."""
    try:
        adapter = providers.get(provider, db)
    except OmniError:
        raise NotFound(f"no payment provider {provider!r}", field="provider") from None
    try:
        event = adapter.parse_webhook(dict(request.headers), body)
    except WebhookInvalid as exc:
        raise OmniError(exc.reason, code="invalid_signature", field="Stripe-Signature") from None
    with db.transaction() as session:
        return WebhookAnswer(outcome=service.apply_event(session, provider=provider, event=event))


@router.post("/gift-cards", response_model=GiftCardRead, status_code=201)
def issue_gift_card(body: GiftCardCreate, session: SessionDep, _: CanWrite) -> GiftCardRead:
    """Issue a gift card (409 gift_card_exists when the code is taken)."""
    return gift_card_read(giftcards.issue(session, currency=body.currency, amount=body.amount, code=body.code,
                                          expires_at=body.expires_at))


@router.get("/gift-cards/{code}", response_model=GiftCardRead)
def get_gift_card(code: str, session: SessionDep, _: CanRead) -> GiftCardRead:
    """A gift card's balance."""
    return gift_card_read(giftcards.get(session, code))
