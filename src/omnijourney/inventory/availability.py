"""Can I have it, where and when: one answer for the POS, the call center and the web.

For each SKU: the stock of every location that feeds the channel with what it may promise there (available to
promise, ATP), the nearest stores that have it on the shelf, and the earliest promise of each fulfilment mode:

- ``ship``: delivered home from a location that ships (a warehouse, or a store that ships from store);
- ``pickup``: bought online, collected in a store: from that store's shelf in its handling time, or sent there
  from a warehouse (a transfer) if no store near enough has it;
- ``reserve_in_store``: reserved online, paid in the store: only from a shelf;
- ``in_store``: a store's own till sells from its own shelf (store channels only).

Two queries whatever the number of locations: the locations with whether each feeds the channel, and the levels of
the SKUs there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import bindparam, exists, select
from sqlalchemy.orm import Session

from omnijourney.catalog.models import Channel, Variant
from omnijourney.catalog.service import get_channel
from omnijourney.core.errors import Invalid, NotFound
from omnijourney.core.time import utcnow
from omnijourney.inventory.models import Location, LocationFeed, StockLevel
from omnijourney.inventory.reservations import rules

MODES = ("ship", "pickup", "reserve_in_store", "in_store")
DELIVERY_DAYS = 2  # a parcel's time on the road once it leaves
TRANSFER_DAYS = 2  # a warehouse's goods reach a store for collection
NEAREST = 5
MAX_SKUS = 100


@dataclass(slots=True)
class LocationStock:
    code: str
    name: str
    type: str
    on_hand: int
    reserved: int
    safety_stock: int
    available: int  # what this channel may be promised here
    feeds_channel: bool
    distance_km: float | None
    ships: bool
    pickup: bool
    handling_hours: int
    keep_free: int = 0  # what a reservation for this channel leaves here (reservations.rules), for checkout
    use_safety: bool = True


@dataclass(slots=True)
class Promise:
    mode: str
    possible: bool
    location: str | None = None
    at: datetime | None = None  # delivered (ship) or ready to collect (pickup, reserve_in_store), or now
    via: str | None = None  # pickup after a transfer: where the goods come from
    reason: str | None = None


@dataclass(slots=True)
class SkuAvailability:
    sku: str
    channel: str
    quantity: int
    available: int  # the channel's total ATP over the locations that feed it
    locations: list[LocationStock] = field(default_factory=list)
    nearest_stores: list[LocationStock] = field(default_factory=list)
    promises: list[Promise] = field(default_factory=list)


def parse_near(value: str | None) -> tuple[float, float] | None:
    """``"lat,lon"`` as two floats, or ``Invalid`` naming ``near``."""
    if value is None or value == "":
        return None
    try:
        lat, lon = (float(x) for x in value.split(","))
    except ValueError:
        raise Invalid("near is 'latitude,longitude' in degrees, e.g. 52.52,13.40", field="near") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise Invalid("near is out of range (latitude -90..90, longitude -180..180)", field="near")
    return lat, lon


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance (haversine) in kilometres."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 6371.0 * 2 * math.asin(math.sqrt(h))


_PLACES = select(Location.code, Location.name, Location.type, Location.channel_code, Location.latitude,
                 Location.longitude, Location.online_floor, Location.ships, Location.pickup, Location.handling_hours)
_LEVELS = (select(Variant.sku, StockLevel.location_code, StockLevel.on_hand, StockLevel.reserved - StockLevel.pooled,
                  StockLevel.safety_stock).outerjoin(StockLevel, StockLevel.sku == Variant.sku))
# built once with bound parameters: building and hashing the statements anew was a tenth of a request's CPU. The
# locations come with whether each feeds the channel and, in the same round trip, the channel's type (NULL: unknown)
_FEEDS = exists().where(LocationFeed.location_code == Location.code, LocationFeed.channel_code == bindparam("channel"))
_CHANNEL_TYPE = select(Channel.type).where(Channel.code == bindparam("channel")).scalar_subquery()
_PLACES_FOR = _PLACES.add_columns(_FEEDS.label("feeds"), _CHANNEL_TYPE.label("channel_type")).where(
    Location.active.is_(True), Location.type.in_(("warehouse", "store")))
_LEVELS_OF = _LEVELS.where(Variant.sku.in_(bindparam("skus", expanding=True)))


def availability(session: Session, *, skus: Sequence[str], channel_code: str, near: tuple[float, float] | None = None,
                 quantity: int = 1, at: datetime | None = None) -> list[SkuAvailability]:
    """Availability of each SKU for ``quantity`` units in the channel, nearest first when ``near`` is given (a store
    channel's own coordinates otherwise)."""
    if not skus:
        raise Invalid("name at least one sku", field="sku")
    if len(skus) > MAX_SKUS:
        raise Invalid(f"at most {MAX_SKUS} SKUs at once", field="sku")
    if not 1 <= quantity <= 10_000:
        raise Invalid("quantity must be between 1 and 10000", field="quantity")
    wanted = list(dict.fromkeys(skus))
    now = at or utcnow()
    # plain rows, not ORM objects: loading 100 locations and 100 levels as objects was half of this function's time
    found = session.execute(_PLACES_FOR, {"channel": channel_code}).all()
    channel_type = found[0].channel_type if found else None
    if channel_type is None:  # an unknown channel (404 naming it), or no location at all
        channel_type = get_channel(session, code=channel_code, field="channel").type
    places = [(loc, loc.feeds) for loc in found]
    own = next((loc for loc, _ in places if loc.channel_code == channel_code), None)
    origin = near or ((own.latitude, own.longitude) if own and own.latitude is not None else None)
    # every level of the SKUs (one index range each; those of other locations are simply not looked up), and in the
    # same query whether the catalog knows each SKU (a variant without levels comes back once, its location NULL)
    levels: dict[tuple[str, str], tuple[int, int, int]] = {}
    known: set[str] = set()
    for s, loc, oh, rv, ss in session.execute(_LEVELS_OF, {"skus": wanted}):
        known.add(s)
        if loc is not None:
            levels[(s, loc)] = (oh, rv, ss)
    for i, sku in enumerate(wanted):
        if sku not in known:  # as check_skus names it
            raise NotFound(f"unknown SKU {sku!r}", field="sku" if len(wanted) == 1 else f"sku[{i}]")
    out = []
    for sku in wanted:
        rows = []
        for loc, fed in places:
            on_hand, reserved, safety = levels.get((sku, loc.code), (0, 0, 0))
            feeds_channel = bool(fed) or loc.channel_code == channel_code
            keep, use_safety = rules(loc, channel_code if feeds_channel else (loc.channel_code or channel_code))
            free = max(0, on_hand - reserved - keep - (safety if use_safety else 0))
            dist = (round(distance_km(origin, (loc.latitude, loc.longitude)), 1)
                    if origin and loc.latitude is not None and loc.longitude is not None else None)
            rows.append(LocationStock(loc.code, loc.name, loc.type, on_hand, reserved, safety, free, feeds_channel,
                                      dist, loc.ships, loc.pickup, loc.handling_hours, keep, use_safety))
        rows.sort(key=lambda r: (r.distance_km is None, r.distance_km or 0.0, r.code))
        feeding = [r for r in rows if r.feeds_channel]
        # a store's shelf for someone who walks in: what that store's own till could sell
        shelves = [r for r in rows if r.type == "store" and r.pickup and r.on_hand - r.reserved >= quantity]
        out.append(SkuAvailability(sku, channel_code, quantity, sum(r.available for r in feeding), feeding,
                                   shelves[:NEAREST], _promises(feeding, channel_type, own, quantity, now)))
    return out


def _promises(rows: list[LocationStock], channel_type: str, own: Location | None, quantity: int,
              now: datetime) -> list[Promise]:
    enough = [r for r in rows if r.available >= quantity]
    out: list[Promise] = []
    ships = [r for r in enough if r.ships]
    if ships:
        best = min(ships, key=lambda r: (r.handling_hours, r.type != "warehouse", r.distance_km or 0.0))
        out.append(Promise("ship", True, best.code, now + timedelta(hours=best.handling_hours, days=DELIVERY_DAYS)))
    else:
        out.append(Promise("ship", False, reason="no location that ships has enough"))
    stores = [r for r in rows if r.type == "store" and r.pickup]
    shelf = [r for r in stores if r.available >= quantity and (own is None or r.code != own.code)]
    warehouse = min((r for r in enough if r.type == "warehouse"), key=lambda r: r.handling_hours, default=None)
    if shelf:
        best = shelf[0]  # rows come nearest first
        out.append(Promise("pickup", True, best.code, now + timedelta(hours=best.handling_hours)))
        out.append(Promise("reserve_in_store", True, best.code, now + timedelta(hours=best.handling_hours)))
    else:
        if stores and warehouse is not None:
            out.append(Promise("pickup", True, stores[0].code,
                               now + timedelta(hours=warehouse.handling_hours, days=TRANSFER_DAYS), via=warehouse.code))
        else:
            out.append(Promise("pickup", False, reason="no pickup store has it and no warehouse can send it"))
        out.append(Promise("reserve_in_store", False, reason="no store near has it on the shelf"))
    if channel_type == "store" and own is not None:
        mine = next((r for r in rows if r.code == own.code), None)
        if mine is not None and mine.available >= quantity:
            out.append(Promise("in_store", True, own.code, now))
        else:
            out.append(Promise("in_store", False, own.code, reason=f"not enough on the shelf at {own.code}"))
    return out


def alternatives(session: Session, *, sku: str, channel_code: str, quantity: int = 1,
                 instead_of: str | None = None) -> dict[str, object]:
    """What an out-of-stock answer offers instead: other locations that have ``quantity`` for this channel (nearest
    first for a store) and the fulfilment modes still possible, with their promise."""
    found = availability(session, skus=[sku], channel_code=channel_code, quantity=quantity)[0]
    return {"locations": [{"location": r.code, "available": r.available, "distance_km": r.distance_km}
                          for r in found.locations if r.code != instead_of and r.available >= quantity],
            "stores": [{"location": r.code, "on_shelf": r.on_hand - r.reserved, "distance_km": r.distance_km}
                       for r in found.nearest_stores if r.code != instead_of],
            "modes": [{"mode": p.mode, "location": p.location, "at": p.at.isoformat() if p.at else None}
                      for p in found.promises if p.possible]}
