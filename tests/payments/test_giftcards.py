"""Gift cards as a provider: holds by guarded SQL arithmetic, one operation per key, the ledger adding up to the
balance, and the last balance under concurrent holds (PostgreSQL, with the interleaving forced)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from omnijourney.config import Settings
from omnijourney.core.time import utcnow
from omnijourney.db import Database
from omnijourney.payments.giftcards import GiftCardProvider
from omnijourney.payments.models import GiftCard, GiftCardMovement
from omnijourney.payments.providers import Authorisation, Method, ProviderError
from tests.payments.helpers import balance, gift_card


@pytest.fixture(autouse=True)
def _providers(payment_settings: Settings) -> None:
    """Every test here uses the providers configured for it."""


def _hold(gc: GiftCardProvider, code: str, amount: str, key: str, currency: str = "EUR") -> Authorisation:
    return gc.authorise(amount=Decimal(amount), currency=currency, method=Method("gift_card", code),
                        idempotency_key=key, metadata={"payment_id": key})


def _movements(db: Database, code: str) -> list[tuple[str, int, int]]:
    with db.transaction(write=False) as session:
        return [(m.kind, m.amount_minor, m.balance_change) for m in session.scalars(
            select(GiftCardMovement).where(GiftCardMovement.code == code).order_by(GiftCardMovement.id))]


def test_hold_capture_refund_and_void_keep_the_ledger_equal_to_the_balance(db: Database) -> None:
    code = gift_card(db, "50.00")
    gc = GiftCardProvider(db)
    a = _hold(gc, code, "30.00", "a")
    assert (a.status, a.amount, a.last4) == ("authorised", Decimal("30.00"), code[-4:])
    assert _hold(gc, code, "30.00", "a").provider_ref == a.provider_ref  # the same key: the same hold, once
    assert balance(db, code) == (Decimal("20.00"), Decimal("20.00"))
    gc.capture(ref=a.provider_ref, amount=Decimal("25.00"), currency="EUR", idempotency_key="a:capture")
    gc.capture(ref=a.provider_ref, amount=Decimal("25.00"), currency="EUR", idempotency_key="a:capture")
    assert balance(db, code) == (Decimal("25.00"), Decimal("25.00"))  # 5.00 not captured went back
    gc.refund(ref=a.provider_ref, amount=Decimal("10.00"), currency="EUR", idempotency_key="a:r1")
    gc.refund(ref=a.provider_ref, amount=Decimal("10.00"), currency="EUR", idempotency_key="a:r1")
    with pytest.raises(ProviderError, match="amount_too_large"):
        gc.refund(ref=a.provider_ref, amount=Decimal("15.01"), currency="EUR", idempotency_key="a:r2")
    with pytest.raises(ProviderError, match="hold_unexpected_state"):
        gc.void(ref=a.provider_ref, idempotency_key="a:void")
    b = _hold(gc, code, "35.00", "b")
    gc.void(ref=b.provider_ref, idempotency_key="b:void")
    gc.void(ref=b.provider_ref, idempotency_key="b:void")
    with pytest.raises(ProviderError, match="hold_unexpected_state"):
        gc.capture(ref=b.provider_ref, amount=Decimal("1.00"), currency="EUR", idempotency_key="b:capture")
    assert balance(db, code) == (Decimal("35.00"), Decimal("35.00"))
    assert _movements(db, code) == [("issue", 5000, 5000), ("hold", 3000, -3000), ("capture", 2500, 500),
                                    ("refund", 1000, 1000), ("hold", 3500, -3500), ("release", 3500, 3500)]


def test_holds_are_declined_with_reasons_and_change_nothing(db: Database) -> None:
    gc = GiftCardProvider(db)
    code = gift_card(db, "10.00")
    expired = gift_card(db, "10.00", expires_at=utcnow() + timedelta(seconds=1))
    with db.transaction() as session:
        session.get(GiftCard, expired).expires_at = utcnow() - timedelta(seconds=1)
    blocked = gift_card(db, "10.00")
    with db.transaction() as session:
        session.get(GiftCard, blocked).active = False
    cases = [(code, "10.01", "EUR", "insufficient_funds"), (code, "1.00", "USD", "currency_mismatch"),
             ("GC-NONE", "1.00", "EUR", "gift_card_not_found"), (expired, "1.00", "EUR", "expired_card"),
             (blocked, "1.00", "EUR", "gift_card_inactive")]
    for i, (c, amount, currency, reason) in enumerate(cases):
        result = _hold(gc, c, amount, f"k{i}", currency)
        assert (result.status, result.decline_code) == ("declined", reason)
        assert result.decline_reason
    assert balance(db, code) == (Decimal("10.00"), Decimal("10.00"))
    assert _movements(db, code) == [("issue", 1000, 1000)]
    assert _hold(gc, code.lower(), "10.00", "all").status == "authorised"  # codes are read case-insensitively


def test_concurrent_holds_never_spend_more_than_the_balance(db: Database) -> None:
    code = gift_card(db, "20.00")
    gc = GiftCardProvider(db)
    results: list[str] = []
    start = threading.Barrier(8)

    def spend(i: int) -> None:
        start.wait()
        results.append(_hold(gc, code, "5.00", f"c{i}").status)

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == ["authorised"] * 4 + ["declined"] * 4
    assert balance(db, code) == (Decimal("0.00"), Decimal("0.00"))


def test_two_holds_on_the_last_balance_one_wins_on_postgresql(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: the interleaving is a PostgreSQL matter")
    code = gift_card(db, "30.00")
    gc = GiftCardProvider(db)
    first_held, second_waits = threading.Event(), threading.Event()
    original = GiftCardProvider._hold

    def hold_then_wait(self, session, *args):  # the first hold keeps its transaction open until the second waits
        movement = original(self, session, *args)
        if threading.current_thread().name == "first":
            first_held.set()
            assert second_waits.wait(10)
        return movement

    monkeypatch.setattr(GiftCardProvider, "_hold", hold_then_wait)
    out: dict[str, Authorisation] = {}
    first = threading.Thread(target=lambda: out.setdefault("first", _hold(gc, code, "30.00", "first")), name="first")
    second = threading.Thread(target=lambda: out.setdefault("second", _hold(gc, code, "30.00", "second")),
                              name="second")
    first.start()
    assert first_held.wait(10)
    second.start()
    with db.engine.connect() as conn:  # the second hold's UPDATE is blocked on the card's row
        deadline = time.monotonic() + 10
        while not conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                    "AND datname = current_database()")).scalar():
            conn.rollback()  # PostgreSQL keeps one snapshot of the activity per transaction: look again
            assert time.monotonic() < deadline, "the second hold never waited for the first"
            time.sleep(0.02)
    second_waits.set()
    first.join(10)
    second.join(10)
    assert out["first"].status == "authorised"
    assert (out["second"].status, out["second"].decline_code) == ("declined", "insufficient_funds")
    assert balance(db, code) == (Decimal("0.00"), Decimal("0.00"))
    assert [k for k, _, _ in _movements(db, code)] == ["issue", "hold"]  # the loser left no movement
