"""The demo retailer's stock, orders, payments and returns: the journeys' purchases become real orders.

One step after the carts. It creates the locations (two warehouses that ship, the five stores at their channels'
coordinates, a transit and a quarantine location), plans the orders of every ``Order Completed`` the journeys sent
(and the call center's and the marketplace's, which the journeys do not send) with their fulfilment, their
lifecycle up to ``ctx.now``, their payments and returns (:mod:`omnijourney.demo.orders`), and then sizes the stock
so that it carried all of that: each location received, in a delivery or two before the journeys begin, what it
sold, what is still reserved, what it sent elsewhere, plus what it has left now (a few units per size on a store's
shelf, some sizes sold out, the best sellers nearly gone).

Everything is written set-based, as history: the ledger through ``stock.apply_many`` with each movement dated
(``Change.at``), orders, lines, shipments, their history, reservations, payments, gift cards, returns and the
timeline events in bulk inserts. So the demo holds what the services would have left behind, and ``omni inventory
check`` and ``inventory.audit`` find it consistent. Deterministic for a seed: choices come from
``random.Random(ctx.seed + 6)``, ids from the step's seeded ids (``build.reproducible``), times from the demo's
clock.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from omnijourney.core.ids import new_ids
from omnijourney.demo.catalog import STORE_SITES, CatalogFacts, DemoClock, demo_clock
from omnijourney.inventory import locations
from omnijourney.inventory.stock import Change, apply_many

if TYPE_CHECKING:
    from omnijourney.demo.build import Advance, DemoContext

# code -> name, address, latitude, longitude (two warehouses that ship to the whole country)
WAREHOUSES = {
    "WH-ERF": ("Erfurt warehouse", "Am Urbicher Kreuz 12, 99099 Erfurt", 50.9533, 11.0860),
    "WH-DTM": ("Dortmund warehouse", "Emscherallee 20, 44369 Dortmund", 51.5392, 7.3797),
}
RETURNS_CENTRE = "WH-ERF"  # parcels sent back go here
TRANSIT, QUARANTINE = "TRANSIT", "QUARANTINE"
SHIP_FROM_STORE = ("S01", "S03")  # Berlin and München ship online orders from their shelves
ONLINE_FLOOR = {"S01": 1, "S02": 2, "S04": 1}  # units each keeps for walk-in customers
SETUP_DAYS = 100  # the locations opened and the first deliveries arrived this long before ctx.now
RESTOCK_DAYS = 45  # the warehouses' second delivery


def commerce_size(ctx: DemoContext) -> int:
    return 4  # locations, the plan, the stock and the orders


@dataclass(slots=True)
class Network:
    """The locations and what each carries (a SKU it carries has stock there at the start); the planner adds to
    ``carry`` what a till sold and marks ``sold_out`` what an order's story says ran out there."""

    stores: dict[str, tuple[str, float, float]]  # code -> name, latitude, longitude
    names: dict[str, str]
    coords: dict[str, tuple[float, float]]
    carry: dict[str, set[str]] = field(default_factory=dict)
    sold_out: set[tuple[str, str]] = field(default_factory=set)

    def has(self, location: str, skus: Iterable[str]) -> bool:
        held = self.carry.get(location, set())
        return all(s in held for s in skus)

    def warehouses(self) -> list[str]:
        return sorted(WAREHOUSES)


def build_commerce(ctx: DemoContext, advance: Advance) -> None:
    """Locations, then the orders of the journeys planned, then the stock that carried them, all written."""
    from omnijourney.demo import orders as plan

    facts: CatalogFacts = ctx.extra["catalog"]
    rng = random.Random(ctx.seed + 6)
    setup = ctx.now - timedelta(days=SETUP_DAYS)
    with demo_clock(setup) as clock:
        with ctx.db.transaction() as s:
            network = _locations(s, facts)
        advance(1)
        _carry(network, facts, rng)
        with ctx.db.transaction(write=False) as s:
            history = plan.plan(s, ctx, network, rng, clock)
        advance(1)
        moves = history.changes + _transfers(network, history, rng, ctx.now, clock)
        changes = _deliveries(network, moves, rng, ctx.now, history.best_sellers) + moves
        changes.sort(key=lambda c: c.at)  # type: ignore[arg-type, return-value]  # the ledger in time order
        advance(1)
        with ctx.db.transaction() as s:
            clock.now = ctx.now
            apply_many(s, changes, now=ctx.now)
            plan.write(s, history, clock)
        plan.tell_the_test_provider(ctx.db, history)
        advance(1)


def _locations(s: Session, facts: CatalogFacts) -> Network:
    from omnijourney.demo.build import STORES

    names = dict(STORES)
    for code, (name, address, lat, lon) in WAREHOUSES.items():
        locations.create_location(s, code=code, name=name, type="warehouse", address=address, latitude=lat,
                                  longitude=lon, handling_hours=24)
    for code in facts.stores:
        # the store's location is named by its channel's code: the orders service looks the channel up by it
        locations.create_location(s, code=code, name=names[code], type="store", channel_code=code,
                                  online_floor=ONLINE_FLOOR.get(code, 0), ships=code in SHIP_FROM_STORE,
                                  handling_hours=2)
    locations.create_location(s, code=TRANSIT, name="In transit", type="transit")
    erf = WAREHOUSES[RETURNS_CENTRE]
    locations.create_location(s, code=QUARANTINE, name="Quarantine (damaged returns)", type="quarantine",
                              address=erf[1], latitude=erf[2], longitude=erf[3])
    stores = {code: (names[code], STORE_SITES[code][1], STORE_SITES[code][2]) for code in facts.stores}
    coords = {code: (lat, lon) for code, (_, lat, lon) in stores.items()}
    coords.update({code: (w[2], w[3]) for code, w in WAREHOUSES.items()})
    all_names = {**{c: n for c, (n, _, _) in stores.items()}, **{c: w[0] for c, w in WAREHOUSES.items()}}
    return Network(stores=stores, names=all_names, coords=coords)


def _carry(network: Network, facts: CatalogFacts, rng: random.Random) -> None:
    """Which location stocks which SKU: Erfurt most of what is sold online, Dortmund the better half of it (so
    some baskets ship in two parcels), each store most of what stores sell."""
    reach = facts.skus_by_reach
    online = sorted(set(reach["everywhere"]) | set(reach["online"]))
    erf, dtm = set(), set()
    for sku in online:
        in_erf, in_dtm = rng.random() < 0.93, rng.random() < 0.6
        if not in_erf and not in_dtm:
            in_erf = True
        if in_erf:
            erf.add(sku)
        if in_dtm:
            dtm.add(sku)
    network.carry["WH-ERF"], network.carry["WH-DTM"] = erf, dtm
    for code in sorted(network.stores):
        shelf = set()
        for sku in reach["everywhere"]:
            if rng.random() < 0.85:
                shelf.add(sku)
        for sku in reach["stores"]:  # the stores-only lines are in nearly every store
            if rng.random() < 0.95:
                shelf.add(sku)
        network.carry[code] = shelf


_SHELF = (0,) * 12 + (1,) * 20 + (2,) * 24 + (3,) * 18 + (4,) * 12 + (5,) * 8 + (6,) * 6  # units per size on a shelf


def _left(rng: random.Random, kind: str) -> int:
    """Units left now of a SKU a location carries (before returns and open orders)."""
    if kind == "store":
        return _SHELF[int(rng.random() * len(_SHELF))]  # rng.choices, at a fifth of its cost
    if rng.random() < 0.05:
        return 0  # sold out, a delivery is on its way
    return max(1, int(rng.gauss(16 if kind == "WH-ERF" else 9, 6)))


def _deliveries(network: Network, moves: list[Change], rng: random.Random, now: datetime,
                best_sellers: set[str]) -> list[Change]:
    """The deliveries that carried ``moves``: per level, what left (sales, units still or once reserved, transfers,
    write-offs) plus what is left now; a warehouse in two deliveries, the second ``RESTOCK_DAYS`` before now.

    No level is ever short at any moment: the first delivery covers all that left before the second arrived, and
    returns or transfers in come on top."""
    setup, restock = now - timedelta(days=SETUP_DAYS), now - timedelta(days=RESTOCK_DAYS)
    out: dict[tuple[str, str], int] = defaultdict(int)  # units that left, or were held, in the whole story
    early: dict[tuple[str, str], int] = defaultdict(int)  # ... before the restock
    for c in moves:
        if c.location not in network.coords:
            continue  # transit and quarantine get nothing delivered: what leaves transit came into it
        # a reservation holds its units (whether later sold, released or still held): counted once, there
        units = c.reserved if c.kind == "reservation" else (-c.on_hand if c.on_hand < 0 and not c.reserved else 0)
        if units > 0:
            out[(c.sku, c.location)] += units
            if c.at is not None and c.at < restock:
                early[(c.sku, c.location)] += units
    levels = sorted({(sku, loc) for loc, skus in network.carry.items() for sku in skus} | set(out))
    receipts: list[Change] = []
    numbers: dict[tuple[str, datetime], str] = {}

    def order_ref(location: str, at: datetime) -> str:  # one purchase order per location and delivery
        return numbers.setdefault((location, at), f"PO-{10001 + len(numbers)}")

    for sku, loc in levels:
        left = 0 if (sku, loc) in network.sold_out else _left(rng, "store" if loc in network.stores else loc)
        if sku in best_sellers and left:
            left = rng.choice((0, 1, 1, 2))  # nearly gone
        if not left and not out.get((sku, loc)):
            left = 1  # sold out means sold: a level nothing left received its last units
        need = out.get((sku, loc), 0) + left
        before = early.get((sku, loc), 0)
        if need <= 0:
            continue
        if loc in WAREHOUSES and need > before + 2:
            first = before + (need - before) * 3 // 5
            receipts.append(Change(sku, loc, "receipt", on_hand=first, ref=order_ref(loc, setup), at=setup))
            receipts.append(Change(sku, loc, "receipt", on_hand=need - first, ref=order_ref(loc, restock),
                                   at=restock))
        else:
            receipts.append(Change(sku, loc, "receipt", on_hand=need, ref=order_ref(loc, setup), at=setup))
    return receipts


def _transfers(network: Network, history: Any, rng: random.Random, now: datetime, clock: DemoClock) -> list[Change]:
    """Stores restocked from Erfurt in the last month, through the transit location (a few still on the road),
    and a few units written off on the shelves (damaged, lost)."""
    changes: list[Change] = []
    stores = sorted(network.stores)
    shared = {code: sorted(network.carry[code] & network.carry["WH-ERF"]) for code in stores}
    for _ in range(max(4, len(history.orders) // 100)):
        to = rng.choice(stores)
        sku = rng.choice(shared[to])
        qty = rng.randint(2, 6)
        shipped = now - timedelta(hours=rng.uniform(6, 30 * 24))
        received = shipped + timedelta(hours=rng.uniform(20, 60))
        clock.now = shipped
        tid = new_ids(1)[0]
        arrived = received <= now
        history.transfers.append({"id": tid, "sku": sku, "from_code": "WH-ERF", "to_code": to, "via_code": TRANSIT,
                                  "quantity": qty, "status": "received" if arrived else "shipped",
                                  "shipped_at": shipped, "received_at": received if arrived else None})
        changes.append(Change(sku, "WH-ERF", "transfer_out", on_hand=-qty, ref=tid, at=shipped))
        changes.append(Change(sku, TRANSIT, "transfer_in", on_hand=qty, ref=tid, at=shipped))
        if arrived:
            changes.append(Change(sku, TRANSIT, "transfer_out", on_hand=-qty, ref=tid, at=received))
            changes.append(Change(sku, to, "transfer_in", on_hand=qty, ref=tid, at=received))
    for _ in range(max(3, len(history.orders) // 150)):
        store = rng.choice(stores)
        sku = rng.choice(sorted(network.carry[store]))
        reason = rng.choice(("damaged on the shelf", "lost (shrinkage)", "soiled in the fitting room"))
        changes.append(Change(sku, store, "adjustment", on_hand=-1, reason=reason,
                              at=now - timedelta(hours=rng.uniform(24, 80 * 24))))
    return changes


def store_of(network: Network, lat: float, lon: float, skip: str | None = None) -> str:
    """The store nearest to a point (``skip``: another than that one)."""
    from omnijourney.inventory.availability import distance_km

    return min((c for c in sorted(network.stores) if c != skip),
               key=lambda c: distance_km((lat, lon), network.coords[c]))
