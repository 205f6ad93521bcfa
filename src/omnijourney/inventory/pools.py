"""Pools: a hot level's reservations spread over several rows, so they do not all queue on one row lock.

A reservation locks the row it changes until its transaction commits. When every channel reserves the same SKU at
the same location, one ``stock_levels`` row would serialise them all (a few hundred a second, however many
clients). Instead, a level with plenty of free units hands blocks of them to its pool rows (``stock_pools``,
``OMNI_INVENTORY__POOL_SLOTS`` of them): a reservation takes its units from one pool row chosen at random, and only
when none is free (empty, or held by another reservation) does it come to the level, reserve there and refill the
emptiest free row. SQLite runs one writer at a time: it has nothing to spread, and no pools.

Exact all the same:
- pooled units are counted in the level's ``reserved`` (set aside, like a reservation), so no other change can
  promise them twice; readers show ``held`` and ``free`` (``StockLevel``), which count them as free again;
- a block is at most ``1/(slots x share)`` of what is free above the safety stock and a store's online floor, so
  pools stay small beside the stock and empty themselves as it runs low: a change that the level alone cannot
  grant drains its pool back into it first (:func:`drain`) and is refused only if it still cannot be granted;
- every move in or out of a pool is a ledger row (kind ``pool``): the ledger still rebuilds ``reserved``, and its
  pool rows add up to what the pool holds (``inventory.audit`` checks both).

Lock order, so that two transactions never wait on each other in a circle: a level's row before its pool rows,
pool rows in slot order. A reservation taking from a pool never waits for a pool row (it skips the busy ones) and
then locks nothing else of that level; a refill, which holds the level, does not wait for one either; only a
drain waits for the pool rows, holding the level, so for reservations that are about to commit. One gap: when a
row changes between a take's look and its lock and no longer holds the units, PostgreSQL keeps the lock; if that
reservation then waits for the level while a drain (a count, a till sale of the last units) waits for the row,
PostgreSQL detects the deadlock within a second and refuses one of the two, which changes nothing and can be
retried.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from omnijourney import locks
from omnijourney.config import get_settings
from omnijourney.inventory.models import StockLevel, StockPool

# a free pool row holding the units (s), from a random start so that concurrent takers spread, and its update (u): a
# row another reservation holds is skipped, not waited for (a taker never waits while it could hold a pool row).
# Then the ledger row, written only when the units were taken: the row count says whether they were. In psycopg's
# style: the hot path sends it through the driver, alone (TAKE) or inside a reservation's statement
TAKE_CTES = (
    "s AS (SELECT slot FROM stock_pools WHERE sku = %(sku)s AND location_code = %(loc)s AND units >= %(q)s "
    "ORDER BY (slot + %(start)s) %% %(n)s LIMIT 1 FOR UPDATE SKIP LOCKED), "
    "u AS (UPDATE stock_pools p SET units = p.units - %(q)s, updated_at = %(now)s FROM s "
    "WHERE p.sku = %(sku)s AND p.location_code = %(loc)s AND p.slot = s.slot AND p.units >= %(q)s RETURNING p.slot)")
TAKE_LEDGER = (
    "INSERT INTO stock_movements (sku, location_code, kind, on_hand_delta, reserved_delta, ref, channel_code, "
    "created_at) SELECT %(sku)s, %(loc)s, 'pool', 0, -%(q)s, %(ref)s, NULL, %(now)s FROM u")
TAKE = f"WITH {TAKE_CTES} {TAKE_LEDGER}"


def take_params(session: Session, *, sku: str, location: str, quantity: int, ref: str | None,
                now: datetime) -> dict[str, object]:
    """:data:`TAKE`'s parameters (a random start row)."""
    n = slots(session)
    return {"sku": sku, "loc": location, "q": quantity, "ref": ref, "now": now, "n": n, "start": random.randrange(n)}


# what may be pooled: free above the safety stock and, at a store, its online floor (what any channel may take),
# and how many pool rows the level has
_SPARE = text("SELECT l.on_hand - l.reserved - l.safety_stock "
              "- CASE WHEN o.type = 'store' THEN o.online_floor ELSE 0 END, "
              "(SELECT COUNT(*) FROM stock_pools p WHERE p.sku = l.sku AND p.location_code = l.location_code) "
              "FROM stock_levels l JOIN locations o ON o.code = l.location_code "
              "WHERE l.sku = :sku AND l.location_code = :loc")

# new rows, each with a block (rows are added when every row nobody holds still holds units: reservations meet)
_ADD_ROWS = text("INSERT INTO stock_pools (sku, location_code, slot, units, updated_at) "
                 "SELECT :sku, :loc, n, :b, :now FROM generate_series(CAST(:first AS int), CAST(:last AS int)) AS n "
                 "ON CONFLICT DO NOTHING")

# the empty pool rows nobody holds (the caller holds the level, so it must not wait for a pool row)
_EMPTY_ROWS = text("SELECT slot FROM stock_pools WHERE sku = :sku AND location_code = :loc AND units = 0 "
                   "ORDER BY slot FOR UPDATE SKIP LOCKED")

_SET_ASIDE = text("UPDATE stock_levels SET reserved = reserved + :b, updated_at = :now "
                  "WHERE sku = :sku AND location_code = :loc AND on_hand - reserved - safety_stock - :b >= 0")

_FILL = text("UPDATE stock_pools SET units = units + :b, updated_at = :now "
             "WHERE sku = :sku AND location_code = :loc AND slot = ANY(CAST(:slots AS int[]))")

_LEDGER = text("INSERT INTO stock_movements (sku, location_code, kind, on_hand_delta, reserved_delta, ref, "
               "channel_code, created_at) VALUES (:sku, :loc, 'pool', 0, :rv, :ref, NULL, :now)")


def slots(session: Session) -> int:
    """Pool rows per level on this database (0: every reservation changes the level itself). SQLite runs one
    writer at a time, so it has nothing to spread: pools are PostgreSQL's."""
    if session.get_bind().dialect.name != "postgresql":
        return 0
    return get_settings().inventory.pool_slots


def take(session: Session, *, sku: str, location: str, quantity: int, ref: str | None, now: datetime) -> bool:
    """Take ``quantity`` units from a pool row of the level that holds them and that no other reservation holds,
    with the ledger row; ``False`` (nothing changed) if there is none. Locks only that pool row."""
    driver = session.connection().connection.driver_connection
    done = driver.execute(TAKE, take_params(session, sku=sku, location=location, quantity=quantity, ref=ref,
                                            now=now))
    return done.rowcount == 1


def refill(session: Session, *, sku: str, location: str, ref: str | None, now: datetime) -> int:
    """Hand blocks of the level's spare units to its empty pool rows that nobody holds, or to new rows when there
    are none (every row busy or still holding units: reservations meet on this level, its rows double up to the
    setting; a level reserved one at a time keeps one). All of them at once, so that rows emptied together do not
    send their next reservations to the level one by one. The caller holds the level's lock (it has just changed
    it). Returns the units set aside (0 when the level has too few to share or has all its rows, busy)."""
    n = slots(session)
    spare, rows = session.execute(_SPARE, {"sku": sku, "loc": location}).one()
    conf = get_settings().inventory
    block = min(conf.pool_block, (spare or 0) // (n * conf.pool_share))
    if block < 1:
        return 0
    empty = list(session.scalars(_EMPTY_ROWS, {"sku": sku, "loc": location}))
    count = len(empty) or (min(n, 2 * rows or 1) - rows)
    if count <= 0:
        return 0
    # at most n blocks of spare/(n x share): under the level's lock the guard below holds (it stays, as everywhere)
    if session.execute(_SET_ASIDE, {"b": block * count, "now": now, "sku": sku, "loc": location}).rowcount != 1:
        return 0
    if empty:
        session.execute(_FILL, {"sku": sku, "loc": location, "slots": empty, "b": block, "now": now})
    else:
        session.execute(_ADD_ROWS, {"sku": sku, "loc": location, "first": rows, "last": rows + count - 1, "b": block,
                                    "now": now})
    session.execute(_LEDGER, {"sku": sku, "loc": location, "rv": block * count, "ref": ref, "now": now})
    return block * count


_ROWS = text("SELECT slot FROM stock_pools WHERE sku = :sku AND location_code = :loc ORDER BY slot")
_EMPTY = text("UPDATE stock_pools SET units = 0, updated_at = :now WHERE sku = :sku AND location_code = :loc "
              "AND units > 0")
_GIVE_BACK = text("UPDATE stock_levels SET reserved = reserved - :b, updated_at = :now "
                  "WHERE sku = :sku AND location_code = :loc AND reserved >= :b")


def drain(session: Session, keys: Iterable[tuple[str, str]], *, now: datetime, ref: str | None = None) -> int:
    """Give every unit pooled at these (SKU, location) levels back to the level (a change the level alone cannot
    grant; a count). The caller holds the levels' locks; the pool rows are locked here, in order, waiting for the
    reservations taking from them to finish. Returns the units given back."""
    back = 0
    for sku, location in sorted(set(keys)):
        # no row is added meanwhile (only under the level's lock, which the caller holds)
        keys_ = [(sku, location, slot) for slot in session.scalars(_ROWS, {"sku": sku, "loc": location})]
        units = sum(row.units for row in locks.rows(session, StockPool, keys_).values())
        if not units:
            continue
        session.execute(_EMPTY, {"now": now, "sku": sku, "loc": location})
        if session.execute(_GIVE_BACK, {"b": units, "now": now, "sku": sku, "loc": location}).rowcount != 1:
            raise RuntimeError(f"pool of {sku} at {location} holds {units} units its level does not count")
        session.execute(_LEDGER, {"sku": sku, "loc": location, "rv": -units, "ref": ref, "now": now})
        back += units
    return back


_ANY = text("SELECT 1 FROM stock_pools WHERE sku = :sku AND location_code = :loc AND units > 0 LIMIT 1")


def pooled(session: Session, sku: str, location: str) -> bool:
    """Whether the level's pool holds any units (cheap: one index probe)."""
    return session.execute(_ANY, {"sku": sku, "loc": location}).first() is not None


_POOLED_KEYS = text("SELECT DISTINCT sku, location_code FROM stock_pools WHERE units > 0")


def lock_levels(session: Session, keys: Iterable[tuple[str, str]], *, now: datetime,
                ref: str | None = None) -> dict[tuple[str, str], StockLevel]:
    """``locks.rows`` of these stock levels with their pools drained first (a count must compare with what
    reservations hold, not with what a pool set aside): in key order, each pooled level's lock and then its pool
    rows', so the lock order above holds. Pools refilled between the look and the lock (a reservation's refill
    needs the level's lock, so only in that instant) stay counted in ``reserved``: a comparison errs on the safe
    side."""
    wanted = sorted(set(keys))
    hot = {tuple(k) for k in session.execute(_POOLED_KEYS)} if slots(session) else set()
    if not hot.intersection(wanted):
        return locks.rows(session, StockLevel, wanted)
    found: dict[tuple[str, str], StockLevel] = {}
    segment: list[tuple[str, str]] = []
    for key in wanted:
        if key not in hot:
            segment.append(key)
            continue
        found.update(locks.rows(session, StockLevel, segment))
        segment = []
        locks.rows(session, StockLevel, [key])
        drain(session, [key], now=now, ref=ref)
        found.update(locks.rows(session, StockLevel, [key]))  # as drained
    found.update(locks.rows(session, StockLevel, segment))
    return found
