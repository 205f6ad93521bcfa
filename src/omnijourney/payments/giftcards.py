"""Gift cards: issued here, spent as a tender (provider ``gift_card``), with a ledger that rebuilds each balance.

As a provider, the gift card book is "the other system": each operation runs in a short transaction of its own in
the application database (never inside a caller's), exactly like a call to a card processor, and is idempotent per
key (``gift_card_movements.idempotency_key`` is unique: a retry finds the first movement and answers the same).

A hold is one guarded statement, ``UPDATE gift_cards SET balance_minor = balance_minor - :a WHERE code = :c AND
balance_minor >= :a AND active``: of two holds on the last balance at the same moment one wins and the other finds
nothing left (PostgreSQL re-checks the condition after the winner commits; SQLite's writers are serial). Capture,
void and refund read the hold's history, so they take the card's row lock first (``locks.rows``) and then add back
what they release by the same arithmetic.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from omnijourney import locks
from omnijourney.core.errors import Conflict, Invalid, NotFound
from omnijourney.core.ids import new_id
from omnijourney.core.time import utcnow
from omnijourney.db import Database, dialect_insert
from omnijourney.payments.models import GiftCard, GiftCardMovement
from omnijourney.payments.providers import (
    Authorisation,
    Captured,
    Method,
    ProviderError,
    Refunded,
    WebhookEvent,
    WebhookInvalid,
)
from omnijourney.pricing.money import check_currency, from_minor, to_minor

_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud at a till, typed from a receipt
_CODE = re.compile(r"^[A-Z0-9][A-Z0-9-]{3,31}$")


def normalise(code: str) -> str:
    """Codes are compared upper-case without surrounding blanks."""
    return code.strip().upper()


def new_code() -> str:
    """``GC-XXXX-XXXX-XXXX-XXXX``: 80 random bits (a bearer secret: never from seeded ids)."""
    return "GC-" + "-".join("".join(secrets.choice(_ALPHABET) for _ in range(4)) for _ in range(4))


def issue(session: Session, *, currency: str, amount: Decimal, code: str | None = None,
          expires_at: datetime | None = None) -> GiftCard:
    """A new gift card worth ``amount``; its ``issue`` movement opens the ledger."""
    check_currency(currency)
    minor = to_minor(amount, currency)
    if minor <= 0:
        raise Invalid("a gift card is issued for a positive amount", field="amount")
    code = normalise(code) if code is not None else new_code()
    if not _CODE.match(code):
        raise Invalid("a gift card code is 4 to 32 letters, digits or dashes", field="code")
    if expires_at is not None and expires_at <= utcnow():
        raise Invalid("expires_at is in the past", field="expires_at")
    if session.get(GiftCard, code) is not None:
        raise Conflict(f"gift card {code} exists", field="code", code="gift_card_exists")
    now = utcnow()
    card = GiftCard(code=code, currency=currency, initial_minor=minor, balance_minor=minor, active=True,
                    expires_at=expires_at, created_at=now)
    session.add(card)
    session.flush()
    session.add(GiftCardMovement(id=new_id(), code=code, kind="issue", amount_minor=minor, balance_change=minor,
                                 created_at=now))
    session.flush()
    return card


def get(session: Session, code: str) -> GiftCard:
    card = session.get(GiftCard, normalise(code))
    if card is None:
        raise NotFound("no gift card with this code", field="code", code="gift_card_not_found")
    return card


def ledger_balance(session: Session, code: str) -> int:
    """The balance the ledger adds up to (minor units): always the card's ``balance_minor``."""
    return int(session.scalar(select(func.coalesce(func.sum(GiftCardMovement.balance_change), 0))
                              .where(GiftCardMovement.code == normalise(code))) or 0)


class _Declined(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class GiftCardProvider:
    """Provider ``gift_card`` over the application database; its reference is the hold movement's id."""

    name = "gift_card"

    def __init__(self, db: Database) -> None:
        self.db = db

    def _done(self, session: Session, key: str) -> GiftCardMovement | None:
        return session.scalar(select(GiftCardMovement).where(GiftCardMovement.idempotency_key == key))

    def _insert(self, session: Session, movement: dict[str, object]) -> bool:
        """Insert a movement unless its key was used (a concurrent twin waits here, then finds it)."""
        stmt = dialect_insert(session, GiftCardMovement.__table__).values(movement)
        stmt = stmt.on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(GiftCardMovement.id)
        return session.execute(stmt).first() is not None  # (rowcount is -1 here on psycopg)

    def authorise(self, *, amount: Decimal, currency: str, method: Method, idempotency_key: str,
                  metadata: Mapping[str, str]) -> Authorisation:
        code = normalise(method.token or "")
        minor = to_minor(amount, currency)
        try:
            with self.db.transaction() as session:
                done = self._done(session, idempotency_key)
                if done is None:
                    done = self._hold(session, code, minor, currency, idempotency_key, metadata.get("payment_id"))
                return Authorisation("authorised", done.id, from_minor(done.amount_minor, currency),
                                     brand="gift_card", last4=code[-4:])
        except _Declined as exc:  # the transaction rolled back: no movement, balance untouched
            return Authorisation("declined", None, Decimal(0), decline_code=exc.code, decline_reason=exc.reason)

    def _hold(self, session: Session, code: str, minor: int, currency: str, key: str,
              payment_id: str | None) -> GiftCardMovement:
        card = session.get(GiftCard, code)
        if card is None:
            raise _Declined("gift_card_not_found", "There is no gift card with this code.")
        if card.currency != currency:
            raise _Declined("currency_mismatch", f"This gift card is in {card.currency}, the payment in {currency}.")
        if not card.active:
            raise _Declined("gift_card_inactive", "This gift card is blocked.")
        if card.expires_at is not None and card.expires_at <= utcnow():
            raise _Declined("expired_card", "This gift card has expired.")
        if minor <= 0:
            raise ProviderError("amount_too_small", "A hold is for a positive amount.")
        movement_id = new_id()
        if not self._insert(session, {"id": movement_id, "code": code, "kind": "hold", "amount_minor": minor,
                                      "balance_change": -minor, "hold_id": movement_id, "payment_id": payment_id,
                                      "idempotency_key": key, "created_at": utcnow()}):
            done = self._done(session, key)
            assert done is not None
            return done
        held = session.execute(update(GiftCard).where(
            GiftCard.code == code, GiftCard.balance_minor >= minor, GiftCard.active.is_(True))
            .values(balance_minor=GiftCard.balance_minor - minor))
        if held.rowcount != 1:
            left = session.scalar(select(GiftCard.balance_minor).where(GiftCard.code == code)) or 0
            raise _Declined("insufficient_funds", f"This gift card holds {from_minor(left, currency)} {currency}, "
                                                  f"less than {from_minor(minor, currency)} {currency}.")
        return session.get(GiftCardMovement, movement_id)  # type: ignore[return-value]

    def _hold_state(self, session: Session, ref: str) -> tuple[GiftCardMovement, dict[str, int]]:
        hold = session.get(GiftCardMovement, ref)
        if hold is None or hold.kind != "hold":
            raise ProviderError("resource_missing", f"No such gift card hold: '{ref}'")
        locks.rows(session, GiftCard, [hold.code])  # the hold's history is read and extended by one writer at a time
        sums = dict(session.execute(select(GiftCardMovement.kind, func.sum(GiftCardMovement.amount_minor))
                                    .where(GiftCardMovement.hold_id == ref).group_by(GiftCardMovement.kind)).all())
        return hold, {k: int(v) for k, v in sums.items()}

    def _give_back(self, session: Session, hold: GiftCardMovement, kind: str, amount: int, change: int,
                   key: str) -> None:
        self._insert(session, {"id": new_id(), "code": hold.code, "kind": kind, "amount_minor": amount,
                               "balance_change": change, "hold_id": hold.id, "payment_id": hold.payment_id,
                               "idempotency_key": key, "created_at": utcnow()})
        if change:
            session.execute(update(GiftCard).where(GiftCard.code == hold.code)
                            .values(balance_minor=GiftCard.balance_minor + change))

    def capture(self, *, ref: str, amount: Decimal, currency: str, idempotency_key: str) -> Captured:
        minor = to_minor(amount, currency)
        with self.db.transaction() as session:
            done = self._done(session, idempotency_key)
            if done is not None:
                return Captured(from_minor(done.amount_minor, currency))
            hold, state = self._hold_state(session, ref)
            if state.get("capture") is not None or state.get("release") is not None:
                raise ProviderError("hold_unexpected_state", "This hold was captured or released already.")
            if minor <= 0 or minor > hold.amount_minor:
                raise ProviderError("amount_too_large", f"The amount to capture ({minor}) is more than the hold "
                                                        f"({hold.amount_minor}).")
            # what is not captured goes back on the card in the same movement
            self._give_back(session, hold, "capture", minor, hold.amount_minor - minor, idempotency_key)
        return Captured(amount)

    def void(self, *, ref: str, idempotency_key: str) -> None:
        with self.db.transaction() as session:
            if self._done(session, idempotency_key) is not None:
                return
            hold, state = self._hold_state(session, ref)
            if state.get("capture") is not None or state.get("release") is not None:
                raise ProviderError("hold_unexpected_state", "This hold was captured or released already.")
            self._give_back(session, hold, "release", hold.amount_minor, hold.amount_minor, idempotency_key)

    def refund(self, *, ref: str, amount: Decimal, currency: str, idempotency_key: str,
               reason: str | None = None) -> Refunded:
        minor = to_minor(amount, currency)
        with self.db.transaction() as session:
            done = self._done(session, idempotency_key)
            if done is not None:
                return Refunded(done.id, from_minor(done.amount_minor, currency))
            hold, state = self._hold_state(session, ref)
            left = state.get("capture", 0) - state.get("refund", 0)
            if minor <= 0 or minor > left:
                raise ProviderError("amount_too_large", f"Refund amount ({minor}) is more than what is left of "
                                                        f"the captured amount ({left}).")
            self._give_back(session, hold, "refund", minor, minor, idempotency_key)
            movement = self._done(session, idempotency_key)
            assert movement is not None
            return Refunded(movement.id, amount)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        raise WebhookInvalid("gift cards send no webhooks")
