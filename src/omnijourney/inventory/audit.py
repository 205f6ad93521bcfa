"""After a storm: did every channel get only what there was, and does every unit granted have its ledger rows?

:func:`audit` checks the whole inventory set-based (a few queries, whatever the traffic was) and, when told what
the clients were acknowledged, that each of those is stored with its units:

- no stock level is negative, or has more reserved than on hand;
- the ledger rebuilds every level's on hand and reserved (``stock.check``);
- each level's reserved equals the units its active reservation lines hold and its pool sets aside (no leak: an
  expired or released reservation gave its units back, a consumed one took them out of on hand), and the ledger's
  pool rows add up to what each pool holds;
- each reservation line has its ledger rows: the reservation's, and the release or sale that settled it, and no
  other; an active reservation long past its expiry is reported (its expiry job did not run);
- each acknowledged reservation exists with the units the client was told, each acknowledged sale has its
  ledger rows with its units.

Run it when the traffic is over, or inside :func:`snapshot` for a consistent view while it goes on. Used by the
storm tests, the hot-SKU benchmark, and meant for the checkout storm too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from omnijourney.core.time import utcnow
from omnijourney.db import Database
from omnijourney.inventory import stock
from omnijourney.inventory.models import Reservation, StockLevel

_SHOWN = 20  # problems listed per check; the count says how many more


@dataclass(slots=True)
class Audit:
    """What :func:`audit` found: ``ok`` when ``problems`` is empty."""

    levels: int = 0
    reservations: int = 0
    units_on_hand: int = 0
    units_reserved: int = 0  # held by reservations (a pool's units are not counted)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        head = (f"{self.levels:,} levels ({self.units_on_hand:,} on hand, {self.units_reserved:,} reserved), "
                f"{self.reservations:,} reservations")
        return head + (": all consistent" if self.ok else ":\n  " + "\n  ".join(self.problems))


def _report(out: Audit, what: str, rows: list[tuple], say) -> None:  # type: ignore[no-untyped-def]
    for r in rows[:_SHOWN]:
        out.problems.append(f"{what}: {say(*r)}")
    if len(rows) > _SHOWN:
        out.problems.append(f"{what}: ... and {len(rows) - _SHOWN:,} more")


_BAD_LEVELS = text("SELECT sku, location_code, on_hand, reserved FROM stock_levels "
                   "WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand ORDER BY sku, location_code")

# reserved on each level against the units its active lines hold (either side may be missing)
_LEAKS = text("""
SELECT sku, loc, SUM(level_rv), SUM(held) FROM (
    SELECT sku, location_code AS loc, reserved AS level_rv, 0 AS held FROM stock_levels
    UNION ALL
    SELECT sku, location_code, 0, quantity FROM reservation_lines WHERE status = 'active'
    UNION ALL
    SELECT sku, location_code, 0, units FROM stock_pools
) x GROUP BY sku, loc HAVING SUM(level_rv) <> SUM(held) ORDER BY sku, loc""")

# what each level's pool holds against the ledger's pool rows (inventory.pools)
_POOLS = text("""
SELECT sku, loc, SUM(ledger), SUM(units) FROM (
    SELECT sku, location_code AS loc, reserved_delta AS ledger, 0 AS units FROM stock_movements WHERE kind = 'pool'
    UNION ALL
    SELECT sku, location_code, 0, units FROM stock_pools
) x GROUP BY sku, loc HAVING SUM(ledger) <> SUM(units) ORDER BY sku, loc""")

# each line against the ledger rows that carry its reservation's id
_LINE_LEDGER = text("""
SELECT rl.reservation_id, rl.sku, rl.location_code, rl.quantity, rl.status,
       COALESCE(SUM(CASE WHEN m.kind = 'reservation' THEN m.reserved_delta END), 0) AS held,
       COALESCE(SUM(CASE WHEN m.kind = 'release' THEN m.reserved_delta END), 0) AS released,
       COALESCE(SUM(CASE WHEN m.kind = 'sale' THEN m.reserved_delta END), 0) AS sold
FROM reservation_lines rl
LEFT JOIN stock_movements m ON m.ref = rl.reservation_id AND m.sku = rl.sku AND m.location_code = rl.location_code
GROUP BY rl.reservation_id, rl.sku, rl.location_code, rl.quantity, rl.status
HAVING COALESCE(SUM(CASE WHEN m.kind = 'reservation' THEN m.reserved_delta END), 0) <> rl.quantity
    OR COALESCE(SUM(CASE WHEN m.kind = 'release' THEN m.reserved_delta END), 0)
       <> CASE WHEN rl.status = 'released' THEN -rl.quantity ELSE 0 END
    OR (rl.status <> 'consumed' AND COALESCE(SUM(CASE WHEN m.kind = 'sale' THEN m.reserved_delta END), 0) <> 0)
ORDER BY rl.reservation_id, rl.sku, rl.location_code""")

# a consumed line's sale carries the reservation's id, or its ref (the order that held it: reservations.hold)
_UNSOLD = text("""
SELECT rl.reservation_id, rl.sku, rl.location_code, rl.quantity FROM reservation_lines rl
JOIN reservations r ON r.id = rl.reservation_id
WHERE rl.status = 'consumed' AND NOT EXISTS (
    SELECT 1 FROM stock_movements m WHERE m.kind = 'sale' AND m.sku = rl.sku AND m.location_code = rl.location_code
      AND m.reserved_delta = -rl.quantity AND m.on_hand_delta = -rl.quantity
      AND (m.ref = rl.reservation_id OR m.ref = r.ref))
ORDER BY rl.reservation_id""")

_STATUS = text("""
SELECT r.id, r.status, rl.sku, rl.location_code, rl.status FROM reservations r
JOIN reservation_lines rl ON rl.reservation_id = r.id
WHERE (r.status <> 'active' AND rl.status = 'active')
   OR (r.status IN ('released', 'expired') AND rl.status <> 'released')
ORDER BY r.id""")


def audit(session: Session, *, acknowledged: Mapping[str, int] | None = None,
          sales: Mapping[str, int] | None = None, overdue_after_s: float | None = None) -> Audit:
    """Check the inventory (see the module's docstring). ``acknowledged``: reservation id -> units the client was
    told it holds; ``sales``: a sale's ref -> units the client was told it sold (each sale its own ref);
    ``overdue_after_s``: report active reservations whose expiry is further in the past than this."""
    out = Audit()
    out.levels, out.units_on_hand, out.units_reserved = session.execute(
        select(func.count(), func.coalesce(func.sum(StockLevel.on_hand), 0),
               func.coalesce(func.sum(StockLevel.reserved - StockLevel.pooled), 0))).one()
    out.reservations = session.scalar(select(func.count()).select_from(Reservation)) or 0
    _report(out, "impossible level", session.execute(_BAD_LEVELS).all(),
            lambda s, loc, oh, rv: f"{s} at {loc}: {oh} on hand, {rv} reserved")
    _report(out, "ledger differs", [(d,) for d in stock.check(session)],
            lambda d: f"{d.sku} at {d.location}: on hand {d.on_hand} (ledger {d.ledger_on_hand}), reserved "
                      f"{d.reserved} (ledger {d.ledger_reserved})")
    _report(out, "reserved is not what active reservations hold", session.execute(_LEAKS).all(),
            lambda s, loc, rv, held: f"{s} at {loc}: {rv} reserved, active reservations and the pool hold {held}")
    _report(out, "pool differs from its ledger rows", session.execute(_POOLS).all(),
            lambda s, loc, ledger, units: f"{s} at {loc}: the pool holds {units}, its ledger rows add up to {ledger}")
    _report(out, "reservation without its ledger rows", session.execute(_LINE_LEDGER).all(),
            lambda rid, s, loc, q, st, held, rel, sold: f"{rid} {s} at {loc} ({q} units, {st}): reserved {held}, "
                                                       f"released {-rel}, sold {-sold} in the ledger")
    _report(out, "consumed without its sale", session.execute(_UNSOLD).all(),
            lambda rid, s, loc, q: f"{rid} {s} at {loc}: {q} units")
    _report(out, "reservation and its lines disagree", session.execute(_STATUS).all(),
            lambda rid, st, s, loc, lst: f"{rid} is {st} but its line {s} at {loc} is {lst}")
    if overdue_after_s is not None:
        late = utcnow() - timedelta(seconds=overdue_after_s)
        rows = session.execute(select(Reservation.id, Reservation.expires_at).where(
            Reservation.status == "active", Reservation.expires_at < late).order_by(Reservation.id)).all()
        _report(out, "active past its expiry", rows, lambda rid, at: f"{rid} expired at {at.isoformat()}")
    if acknowledged:
        _acknowledged(session, out, acknowledged)
    if sales:
        _sales(session, out, sales)
    return out


def _chunks(keys: list[str], size: int = 5_000) -> Iterator[list[str]]:
    for i in range(0, len(keys), size):
        yield keys[i:i + size]


def _acknowledged(session: Session, out: Audit, acknowledged: Mapping[str, int]) -> None:
    stored: dict[str, int] = {}
    for part in _chunks(sorted(acknowledged)):
        stored.update(session.execute(text(
            "SELECT r.id, COALESCE(SUM(rl.quantity), 0) FROM reservations r "
            "LEFT JOIN reservation_lines rl ON rl.reservation_id = r.id WHERE r.id IN :ids GROUP BY r.id")
            .bindparams(_expanding("ids")), {"ids": part}).all())
    wrong = [(rid, units, stored.get(rid)) for rid, units in sorted(acknowledged.items()) if stored.get(rid) != units]
    _report(out, "acknowledged reservation not stored as told", wrong,
            lambda rid, units, found: f"{rid}: told {units} units, stored "
                                      f"{'nothing' if found is None else f'{found} units'}")


def _sales(session: Session, out: Audit, sales: Mapping[str, int]) -> None:
    stored: dict[str, int] = {}
    for part in _chunks(sorted(sales)):
        stored.update(session.execute(text(
            "SELECT ref, -SUM(on_hand_delta) FROM stock_movements WHERE kind = 'sale' AND reserved_delta = 0 "
            "AND ref IN :refs GROUP BY ref").bindparams(_expanding("refs")), {"refs": part}).all())
    wrong = [(ref, units, stored.get(ref)) for ref, units in sorted(sales.items()) if stored.get(ref) != units]
    _report(out, "acknowledged sale without its ledger rows", wrong,
            lambda ref, units, found: f"{ref}: told {units} units, ledger {found or 0}")


def _expanding(name: str):  # type: ignore[no-untyped-def]
    from sqlalchemy import bindparam

    return bindparam(name, expanding=True)


@contextmanager
def snapshot(db: Database) -> Iterator[Session]:
    """A read-only session that sees one moment of the database for all its queries (PostgreSQL: REPEATABLE READ;
    SQLite: a WAL read transaction), so that :func:`audit` can run while traffic goes on."""
    with db.sessions() as session:
        if db.dialect == "postgresql":
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        try:
            yield session
        finally:
            session.rollback()
