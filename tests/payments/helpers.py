"""Small helpers for payment tests: checkouts begun and authorised, gift cards, the test provider's view."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from omnijourney.core.ids import new_id
from omnijourney.db import Database
from omnijourney.payments import giftcards, providers, service
from omnijourney.payments.models import GiftCard, Payment
from omnijourney.payments.simulator import TestProvider


def sim(db: Database) -> TestProvider:
    provider = providers.get("test", db)
    assert isinstance(provider, TestProvider)
    return provider


def gift_card(db: Database, amount: str = "20.00", currency: str = "EUR", **kw: Any) -> str:
    with db.transaction() as session:
        return giftcards.issue(session, currency=currency, amount=Decimal(amount), **kw).code


def balance(db: Database, code: str) -> tuple[Decimal, Decimal]:
    """The card's balance and what its ledger adds up to (always the same)."""
    with db.transaction(write=False) as session:
        card = session.get(GiftCard, code)
        assert card is not None
        return Decimal(card.balance_minor) / 100, Decimal(giftcards.ledger_balance(session, code)) / 100


def begin(db: Database, total: str, *tenders: dict[str, Any], ref: str | None = None,
          currency: str = "EUR") -> list[str]:
    with db.transaction() as session:
        rows = service.begin(session, ref=ref or new_id(), currency=currency, total=Decimal(total),
                             tenders=list(tenders))
        return [p.id for p in rows]


def card(pm: str = "pm_card_visa", amount: str | None = None, provider: str = "test") -> dict[str, Any]:
    out: dict[str, Any] = {"method": "card", "provider": provider, "payment_method": pm}
    if amount is not None:
        out["amount"] = amount
    return out


def payment(db: Database, payment_id: str) -> Payment:
    with db.transaction(write=False) as session:
        return service.get(session, payment_id)


def statuses(db: Database, ids: list[str]) -> list[str]:
    return [payment(db, i).status for i in ids]


def intents_for(db: Database, payment_id: str) -> list[dict[str, Any]]:
    """The test provider's PaymentIntents made for one of our payments (its metadata names it)."""
    s = sim(db)
    rows = s._conn.execute("SELECT id FROM intents WHERE json_extract(metadata, '$.payment_id') = ?",
                           (payment_id,)).fetchall()
    return [s.intent(r[0]) for r in rows]
