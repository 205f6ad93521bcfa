"""Stock levels and their ledger: every change of a counter is one guarded ``UPDATE`` (arithmetic in SQL) and one
ledger row, in the same transaction, so the ledger always rebuilds the counters.

Concurrency: a change never reads a counter and writes it back. Each ``UPDATE`` carries its own guard (on hand
never below reserved, reserved never negative, a reservation never into safety stock or a store's online floor)
and locks its row until the transaction ends; a change of several rows updates them in primary-key order
(SKU, location), so two transactions cannot wait on each other in a circle. The updates come last in their
transaction, after its inserts, so a hot row is held only for the update and the commit. A cycle count needs the
figure it replaces: it locks its rows first (``pools.lock_levels``: ``locks.rows`` with what a hot level's pool
set aside given back), and its check runs after the lock. A change a level refuses is tried once more after its
pool (``inventory.pools``) gave its units back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, select, text, union_all
from sqlalchemy.orm import Session

from omnijourney import locks
from omnijourney.catalog.models import Variant
from omnijourney.core.errors import Conflict, Invalid, NotFound
from omnijourney.core.ids import new_id
from omnijourney.core.time import utcnow
from omnijourney.db import dialect_insert, encode, insert_encoded
from omnijourney.inventory import pools
from omnijourney.inventory.models import Location, StockLevel, StockMovement, Transfer

MAX_UNITS = 1_000_000  # per movement: more is a typo


@dataclass(slots=True)
class Change:
    """One ledger entry to write and the counter change it makes. ``keep_free``: units that must stay unreserved
    after the change (a reservation's safety stock and online floor); ``use_safety`` adds the level's own safety
    stock to it in SQL, where it is read under the row's lock."""

    sku: str
    location: str
    kind: str
    on_hand: int = 0
    reserved: int = 0
    keep_free: int = 0
    use_safety: bool = False
    reason: str | None = None
    ref: str | None = None
    channel: str | None = None
    counted: int | None = None
    field: str | None = None  # the input this change came from, named in its error
    at: datetime | None = None  # when it happened, for history written later (apply_many's ledger row); else now


class OutOfStock(Conflict):
    """Not enough available to promise for a change (409 ``out_of_stock``); ``details`` says what was asked."""

    code = "out_of_stock"


_GUARDED = text(
    "UPDATE stock_levels SET on_hand = on_hand + :oh, reserved = reserved + :rv, updated_at = :now "
    "WHERE sku = :sku AND location_code = :loc AND reserved + :rv >= 0 "
    "AND on_hand + :oh - reserved - :rv >= :keep + CASE WHEN :use_safety THEN safety_stock ELSE 0 END")


def check_units(quantity: Any, field: str, *, allow_zero: bool = False, signed: bool = False) -> int:
    """A whole number of units within bounds, or ``Invalid`` naming ``field``."""
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise Invalid("a whole number of units is needed", field=field)
    low = -MAX_UNITS if signed else (0 if allow_zero else 1)
    if not low <= quantity <= MAX_UNITS or (signed and quantity == 0 and not allow_zero):
        raise Invalid(f"{quantity} units is out of range ({'non-zero, ' if signed else ''}"
                      f"at most {MAX_UNITS:,} in one movement)", field=field)
    return quantity


def check_skus(session: Session, skus: Iterable[str], field: str = "sku") -> None:
    """``NotFound`` naming ``field`` (indexed when several) for the first SKU the catalog does not know."""
    wanted = list(dict.fromkeys(skus))
    known = set(session.scalars(select(Variant.sku).where(Variant.sku.in_(wanted))))
    for i, sku in enumerate(wanted):
        if sku not in known:
            raise NotFound(f"unknown SKU {sku!r}", field=field if len(wanted) == 1 else f"{field}[{i}]")


def check_location(session: Session, code: str, *, field: str = "location", sells: bool = False) -> Location:
    """The active location ``code``; with ``sells``, one goods can be sold from (not transit or quarantine)."""
    location = session.get(Location, code)
    if location is None:
        raise NotFound(f"no location {code!r}", field=field)
    if not location.active:
        raise Invalid(f"location {code} is not active", field=field)
    if sells and location.type in ("transit", "quarantine"):
        raise Invalid(f"nothing is sold from {location.type} location {code}", field=field)
    return location


_ENSURE_PG = text(
    "INSERT INTO stock_levels (sku, location_code, on_hand, reserved, safety_stock, updated_at) "
    "SELECT k.sku, k.loc, 0, 0, 0, :now FROM unnest(cast(:skus AS text[]), cast(:locs AS text[])) AS k(sku, loc) "
    "ORDER BY k.sku, k.loc ON CONFLICT DO NOTHING")


def ensure_levels(session: Session, keys: Iterable[tuple[str, str]], now: datetime) -> None:
    """Create the missing (SKU, location) levels at zero (one statement; existing ones are left alone)."""
    wanted = sorted(set(keys))
    if len(wanted) > 1 and session.get_bind().dialect.name == "postgresql":
        # one statement for any number (executemany pipelines a statement per row: 20 us each in the driver)
        session.execute(_ENSURE_PG, {"skus": [s for s, _ in wanted], "locs": [loc for _, loc in wanted], "now": now})
        return
    rows = [{"sku": s, "location_code": loc, "on_hand": 0, "reserved": 0, "safety_stock": 0, "updated_at": now}
            for s, loc in wanted]
    if rows:  # executemany: one compiled statement whatever the number of rows (a VALUES list compiles per size)
        session.execute(dialect_insert(session, StockLevel.__table__).on_conflict_do_nothing(), rows)


def apply(session: Session, changes: Sequence[Change], *, now: datetime | None = None) -> None:
    """Write the ledger rows, then make the counter changes, each guarded, in (SKU, location) order.

    A guard that fails raises ``OutOfStock`` for a reservation or sale, ``Conflict`` otherwise, naming the change's
    field; the caller's transaction must then roll back (the ledger rows and earlier updates go with it)."""
    if not changes:
        return
    now = now or utcnow()
    grows = [(c.sku, c.location) for c in changes if c.on_hand > 0]
    ensure_levels(session, grows, now)
    write_ledger(session, changes, now)
    for c in sorted(changes, key=lambda c: (c.sku, c.location)):
        change_level(session, c, now)


_LEDGER = StockMovement.__table__.insert()


def write_ledger(session: Session, changes: Sequence[Change], now: datetime) -> None:
    """The ledger rows of ``changes`` (one statement); their counter changes are :func:`change_level`'s."""
    rows = [{"sku": c.sku, "location_code": c.location, "kind": c.kind, "on_hand_delta": c.on_hand,
             "reserved_delta": c.reserved, "counted": c.counted, "reason": c.reason, "ref": c.ref,
             "channel_code": c.channel, "created_at": now} for c in changes]
    session.execute(_LEDGER, rows if len(rows) > 1 else rows[0])


def change_level(session: Session, c: Change, now: datetime) -> None:
    """``c``'s guarded counter change (its ledger row is the caller's, :func:`write_ledger`); ``OutOfStock`` or
    ``Conflict`` naming its field if the level cannot grant it, even with its pool's units given back."""
    params = {"oh": c.on_hand, "rv": c.reserved, "now": now, "sku": c.sku, "loc": c.location,
              "keep": c.keep_free, "use_safety": c.use_safety}
    done = session.execute(_GUARDED, params)
    if done.rowcount != 1 and _drained(session, c, now):
        done = session.execute(_GUARDED, params)  # with the units its pool had set aside back in the level
    if done.rowcount != 1:
        raise _refusal(session, c)


def _drained(session: Session, c: Change, now: datetime) -> bool:
    """The level's pool (``inventory.pools``) gave its units back, so a refused change may now pass."""
    if not pools.slots(session) or not pools.pooled(session, c.sku, c.location):
        return False
    locks.rows(session, StockLevel, [(c.sku, c.location)])  # the level before its pool rows
    return pools.drain(session, [(c.sku, c.location)], now=now, ref=c.ref) > 0


_GUARDED_SET_PG = text(
    "UPDATE stock_levels t SET on_hand = t.on_hand + d.oh, reserved = t.reserved + d.rv, updated_at = :now "
    "FROM unnest(cast(:skus AS text[]), cast(:locs AS text[]), cast(:ohs AS int[]), cast(:rvs AS int[]), "
    "cast(:keeps AS int[]), cast(:safeties AS boolean[])) AS d(sku, loc, oh, rv, keep, use_safety) "
    "WHERE t.sku = d.sku AND t.location_code = d.loc AND t.reserved + d.rv >= 0 "
    "AND t.on_hand + d.oh - t.reserved - d.rv >= d.keep + CASE WHEN d.use_safety THEN t.safety_stock ELSE 0 END")


def apply_many(session: Session, changes: Sequence[Change], *, now: datetime | None = None,
               locked: bool = False) -> int:
    """:func:`apply` for thousands of changes at once (an import's chunk): the ledger rows in one write (COPY),
    then one guarded ``UPDATE`` per (SKU, location) with the level's deltas summed, in key order (so it never waits
    in a circle with a reservation or another import), also one ``executemany``. Returns the levels changed.

    The guard holds for each level's summed change (the largest ``keep_free`` of its changes, safety stock if any
    asks for it): meant for movements that cannot fail alone (receipts; counts whose rows the caller locked and
    checked). If a guard fails all the same, it raises what :func:`apply` would for that level's first change; the
    caller's transaction must then roll back. A change's ``at`` dates its ledger row (history backfilled in bulk,
    e.g. the demo's months of orders); the counters' ``updated_at`` is ``now``. ``locked``: the caller holds every
    level's row lock (``locks.rows``), so on PostgreSQL the updates are one statement."""
    if not changes:
        return 0
    now = now or utcnow()
    ensure_levels(session, [(c.sku, c.location) for c in changes if c.on_hand > 0], now)
    # the ledger in one write: COPY on PostgreSQL, one INSERT ... SELECT FROM json_each on SQLite
    insert_encoded(session, encode(StockMovement.__table__, [
        {"sku": c.sku, "location_code": c.location, "kind": c.kind, "on_hand_delta": c.on_hand,
         "reserved_delta": c.reserved, "counted": c.counted, "reason": c.reason, "ref": c.ref,
         "channel_code": c.channel, "created_at": c.at or now} for c in changes], session.get_bind().dialect.name))
    summed: dict[tuple[str, str], dict[str, Any]] = {}
    for c in changes:
        p = summed.get((c.sku, c.location))
        if p is None:
            summed[(c.sku, c.location)] = {"oh": c.on_hand, "rv": c.reserved, "now": now, "sku": c.sku,
                                           "loc": c.location, "keep": c.keep_free, "use_safety": c.use_safety}
        else:
            p["oh"] += c.on_hand
            p["rv"] += c.reserved
            p["keep"] = max(p["keep"], c.keep_free)
            p["use_safety"] = p["use_safety"] or c.use_safety
    params = [summed[k] for k in sorted(summed) if summed[k]["oh"] or summed[k]["rv"]]
    if not params:
        return 0
    if locked and session.get_bind().dialect.name == "postgresql":
        # the caller holds every level's row lock already (taken in key order): one statement, in any order
        done = session.execute(_GUARDED_SET_PG, {
            "now": now, "skus": [p["sku"] for p in params], "locs": [p["loc"] for p in params],
            "ohs": [p["oh"] for p in params], "rvs": [p["rv"] for p in params],
            "keeps": [p["keep"] for p in params], "safeties": [p["use_safety"] for p in params]})
    else:
        done = session.execute(_GUARDED, params)
    if done.rowcount != len(params):
        # which one: the levels whose update went through carry this call's time; the first other one failed
        for p in params:
            level = session.get(StockLevel, (p["sku"], p["loc"]), populate_existing=True)
            if level is None or level.updated_at != now:
                first = next(c for c in changes if (c.sku, c.location) == (p["sku"], p["loc"]))
                raise _refusal(session, first)
        raise Conflict("a bulk stock change was refused by its guard", code="negative_stock")
    return len(params)


def _refusal(session: Session, c: Change) -> Conflict:
    level = session.scalar(select(StockLevel).where(StockLevel.sku == c.sku, StockLevel.location_code == c.location)
                          .execution_options(populate_existing=True))
    have = level.free if level else 0
    details = {"sku": c.sku, "location": c.location, "available": have}
    if c.kind in ("reservation", "sale"):
        wanted = c.reserved or -c.on_hand
        return OutOfStock(f"{c.sku} is out of stock at {c.location}: {wanted} wanted, fewer available to promise",
                          field=c.field, details=details)
    if level is not None and c.reserved < 0 and level.reserved + c.reserved < 0:
        return Conflict(f"{c.sku} at {c.location}: cannot release more than is reserved", field=c.field,
                        details=details)
    return Conflict(f"{c.sku} at {c.location}: on hand would fall below what is reserved or zero "
                    f"({level.on_hand if level else 0} on hand, {level.reserved if level else 0} reserved)",
                    field=c.field, code="negative_stock", details=details)


# ---------------------------------------------------------------- movements a retailer's systems send

def receive(session: Session, *, sku: str, location: str, quantity: int, ref: str | None = None,
            reason: str | None = None) -> StockLevel:
    """Goods arrived at ``location`` (a delivery, a purchase order)."""
    check_units(quantity, "quantity")
    check_skus(session, [sku])
    check_location(session, location)
    apply(session, [Change(sku, location, "receipt", on_hand=quantity, ref=ref, reason=reason, field="quantity")])
    return level(session, sku, location)


def adjust(session: Session, *, sku: str, location: str, delta: int, reason: str, ref: str | None = None) -> StockLevel:
    """Correct on hand by ``delta`` (damaged, lost, found); the reason is required."""
    check_units(delta, "delta", signed=True)
    if not (reason or "").strip():
        raise Invalid("an adjustment says why (damaged, lost, found, ...)", field="reason")
    check_skus(session, [sku])
    check_location(session, location)
    apply(session, [Change(sku, location, "adjustment", on_hand=delta, reason=reason.strip(), ref=ref,
                           field="delta")])
    return level(session, sku, location)


def count(session: Session, *, sku: str, location: str, counted: int, ref: str | None = None) -> StockLevel:
    """A cycle count: on hand becomes ``counted``; the ledger keeps the difference and the figure."""
    check_units(counted, "counted", allow_zero=True)
    check_skus(session, [sku])
    check_location(session, location)
    now = utcnow()
    ensure_levels(session, [(sku, location)], now)
    current = pools.lock_levels(session, [(sku, location)], now=now, ref=ref)[(sku, location)]
    if counted < current.reserved:
        raise Conflict(f"{sku} at {location}: counted {counted} but {current.reserved} are reserved; release or "
                       "reallocate those reservations first", field="counted", code="count_below_reserved")
    apply(session, [Change(sku, location, "count", on_hand=counted - current.on_hand, counted=counted, ref=ref,
                           field="counted")])
    return level(session, sku, location)


def set_safety_stock(session: Session, *, sku: str, location: str, safety_stock: int) -> StockLevel:
    """Units kept back from every promise at this location (not a movement: on hand does not change)."""
    check_units(safety_stock, "safety_stock", allow_zero=True)
    check_skus(session, [sku])
    check_location(session, location)
    now = utcnow()
    ensure_levels(session, [(sku, location)], now)
    row = locks.rows(session, StockLevel, [(sku, location)])[(sku, location)]
    row.safety_stock, row.updated_at = safety_stock, now
    session.flush()
    return row


def transit_location(session: Session) -> Location:
    """The location goods are in between two others (the first active transit location)."""
    found = session.scalar(select(Location).where(Location.type == "transit", Location.active.is_(True))
                           .order_by(Location.code).limit(1))
    if found is None:
        raise Invalid("no transit location exists: create one (type transit) before transferring", field="from")
    return found


def transfer(session: Session, *, sku: str, from_location: str, to_location: str, quantity: int) -> Transfer:
    """Send units from one location to another: out of ``from_location`` (never its reserved units) into transit
    now; into ``to_location`` when :func:`receive_transfer` is called."""
    check_units(quantity, "quantity")
    check_skus(session, [sku])
    check_location(session, from_location, field="from")
    check_location(session, to_location, field="to")
    if from_location == to_location:
        raise Invalid("a transfer goes to another location", field="to")
    via = transit_location(session)
    moved = Transfer(id=new_id(), sku=sku, from_code=from_location, to_code=to_location, via_code=via.code,
                     quantity=quantity, status="shipped", shipped_at=utcnow())
    session.add(moved)
    session.flush()
    apply(session, [Change(sku, from_location, "transfer_out", on_hand=-quantity, ref=moved.id, field="quantity"),
                    Change(sku, via.code, "transfer_in", on_hand=quantity, ref=moved.id, field="quantity")])
    return moved


def receive_transfer(session: Session, *, transfer_id: str) -> Transfer:
    """The transferred units arrived: out of transit into the destination (once; again is a 409)."""
    moved = locks.row(session, Transfer, transfer_id, field="transfer_id")
    if moved.status != "shipped":
        raise Conflict(f"transfer {transfer_id} was received already", field="transfer_id", code="transfer_received")
    apply(session, [Change(moved.sku, moved.via_code, "transfer_out", on_hand=-moved.quantity, ref=moved.id),
                    Change(moved.sku, moved.to_code, "transfer_in", on_hand=moved.quantity, ref=moved.id)])
    moved.status, moved.received_at = "received", utcnow()
    session.flush()
    return moved


# ---------------------------------------------------------------- reading

def level(session: Session, sku: str, location: str) -> StockLevel:
    """The level of ``sku`` at ``location`` as committed or changed by this transaction (zero if none)."""
    found = session.scalar(select(StockLevel).where(StockLevel.sku == sku, StockLevel.location_code == location)
                           .execution_options(populate_existing=True))
    if found is None:
        return StockLevel(sku=sku, location_code=location, on_hand=0, reserved=0, safety_stock=0,
                          updated_at=utcnow())
    return found


def levels(session: Session, *, skus: Sequence[str] | None = None,
           locations: Sequence[str] | None = None) -> list[StockLevel]:
    q = select(StockLevel).order_by(StockLevel.sku, StockLevel.location_code)
    if skus:
        q = q.where(StockLevel.sku.in_(list(skus)))
    if locations:
        q = q.where(StockLevel.location_code.in_(list(locations)))
    return list(session.scalars(q))


def movements(session: Session, *, sku: str | None = None, location: str | None = None, ref: str | None = None,
              before: int | None = None, limit: int = 100) -> list[StockMovement]:
    """Ledger rows, newest first; ``before`` pages on by id."""
    q = select(StockMovement).order_by(StockMovement.id.desc()).limit(limit)
    if sku:
        q = q.where(StockMovement.sku == sku)
    if location:
        q = q.where(StockMovement.location_code == location)
    if ref:
        q = q.where(StockMovement.ref == ref)
    if before is not None:
        q = q.where(StockMovement.id < before)
    return list(session.scalars(q))


@dataclass(slots=True)
class Difference:
    sku: str
    location: str
    on_hand: int
    ledger_on_hand: int
    reserved: int
    ledger_reserved: int


def check(session: Session) -> list[Difference]:
    """Every (SKU, location) whose counters differ from what its ledger adds up to (an empty list: all agree).

    One set-based query: the levels and the ledger's sums, outer-joined by a union (no level without movements or
    movements without a level escapes)."""
    sums = (select(StockMovement.sku.label("sku"), StockMovement.location_code.label("loc"),
                   func.sum(StockMovement.on_hand_delta).label("oh"),
                   func.sum(StockMovement.reserved_delta).label("rv"),
                   literal(0).label("level_oh"), literal(0).label("level_rv"))
            .group_by(StockMovement.sku, StockMovement.location_code))
    have = select(StockLevel.sku, StockLevel.location_code, literal(0), literal(0), StockLevel.on_hand,
                  StockLevel.reserved)
    both = union_all(sums, have).subquery()
    q = (select(both.c.sku, both.c.loc, func.sum(both.c.level_oh), func.sum(both.c.oh), func.sum(both.c.level_rv),
                func.sum(both.c.rv))
         .group_by(both.c.sku, both.c.loc)
         .having((func.sum(both.c.level_oh) != func.sum(both.c.oh))
                 | (func.sum(both.c.level_rv) != func.sum(both.c.rv)))
         .order_by(both.c.sku, both.c.loc))
    return [Difference(s, loc, int(a), int(b), int(c), int(d)) for s, loc, a, b, c, d in session.execute(q)]


def return_units(session: Session, *, sku: str, location: str, quantity: int, ref: str | None = None,
                 reason: str | None = None, channel: str | None = None) -> None:
    """Returned units are back on hand at ``location`` (a store's shelf, a warehouse, or quarantine if damaged)."""
    check_units(quantity, "quantity")
    check_location(session, location)
    apply(session, [Change(sku, location, "return", on_hand=quantity, ref=ref, reason=reason, channel=channel,
                           field="quantity")])
