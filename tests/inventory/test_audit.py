"""The checker finds what a storm could break: it passes a consistent inventory and names each kind of damage."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text, update

from omnijourney.core.time import utcnow
from omnijourney.inventory import audit, reservations
from omnijourney.inventory.models import Reservation
from tests.factories_inventory import network, stock_up


def _setup(db):
    network(db)
    stock_up(db, {("TEE-M", "WH"): 10, ("TEE-S", "S01"): 4})
    with db.transaction() as s:
        held = reservations.reserve(s, channel_code="web", lines=[("TEE-M", "WH", 2), ("TEE-S", "S01", 1)])
        sold = reservations.reserve(s, channel_code="app", lines=[("TEE-M", "WH", 3)], ttl_s=None)
        gone = reservations.reserve(s, channel_code="web", lines=[("TEE-M", "WH", 1)])
    with db.transaction() as s:  # an order holds it, then its goods leave
        reservations.hold(s, reservation_id=sold.id, ref="order-1")
        reservations.consume(s, reservation_id=sold.id, ref="order-1")
        reservations.release(s, reservation_id=gone.id)
        reservations.sell(s, channel_code="S01", lines=[("TEE-S", "S01", 2)], ref="till-1")
    return held.id, sold.id, gone.id


def _audit(db, **kwargs) -> audit.Audit:
    with audit.snapshot(db) as s:
        return audit.audit(s, **kwargs)


def test_a_consistent_inventory_passes(db):
    held, sold, gone = _setup(db)
    found = _audit(db, acknowledged={held: 3, sold: 3, gone: 1}, sales={"till-1": 2}, overdue_after_s=0)
    assert found.ok, str(found)
    assert (found.levels, found.reservations, found.units_on_hand, found.units_reserved) == (2, 3, 9, 3)


def test_each_kind_of_damage_is_named(db):
    held, sold, _ = _setup(db)
    with db.transaction() as s:
        # a counter changed behind the ledger's back, a ledger row lost, an expiry job that never ran
        s.execute(text("UPDATE stock_levels SET reserved = reserved + 1 WHERE sku = 'TEE-S' AND location_code = 'S01'"))
        s.execute(text(f"DELETE FROM stock_movements WHERE ref = '{held}' AND sku = 'TEE-M'"))
        s.execute(update(Reservation).where(Reservation.id == held).values(expires_at=utcnow() - timedelta(hours=1)))
    found = _audit(db, acknowledged={held: 3, sold: 2, "nope": 1}, sales={"till-1": 1, "till-2": 1},
                   overdue_after_s=60)
    said = "\n".join(found.problems)
    assert not found.ok
    assert "ledger differs: TEE-S at S01: on hand 2 (ledger 2), reserved 2 (ledger 1)" in said
    assert "ledger differs: TEE-M at WH" in said
    assert ("reserved is not what active reservations hold: TEE-S at S01: 2 reserved, active reservations and the "
            "pool hold 1") in said
    assert f"reservation without its ledger rows: {held} TEE-M at WH (2 units, active): reserved 0" in said
    assert f"active past its expiry: {held}" in said
    assert f"acknowledged reservation not stored as told: {sold}: told 2 units, stored 3 units" in said
    assert "acknowledged reservation not stored as told: nope: told 1 units, stored nothing" in said
    assert "acknowledged sale without its ledger rows: till-1: told 1 units, ledger 2" in said
    assert "acknowledged sale without its ledger rows: till-2: told 1 units, ledger 0" in said


def test_an_impossible_level_is_named(db):
    _setup(db)
    if db.dialect != "postgresql":  # SQLite cannot drop a CHECK constraint to let the damage in
        return
    # the CHECK constraints stop it at the source; the checker is the second line
    with db.transaction() as s:
        s.execute(text("ALTER TABLE stock_levels DROP CONSTRAINT ck_stock_levels_reserved"))
    try:
        with db.transaction() as s:
            s.execute(text("UPDATE stock_levels SET reserved = on_hand + 1 WHERE sku = 'TEE-S'"))
        found = _audit(db)
        assert "impossible level: TEE-S at S01: 2 on hand, 3 reserved" in "\n".join(found.problems)
    finally:
        with db.transaction() as s:
            s.execute(text("UPDATE stock_levels SET reserved = 1 WHERE sku = 'TEE-S'"))
            s.execute(text("ALTER TABLE stock_levels ADD CONSTRAINT ck_stock_levels_reserved "
                           "CHECK (reserved >= 0 AND reserved <= on_hand)"))

