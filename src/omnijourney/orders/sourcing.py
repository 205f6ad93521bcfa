"""Sourcing: which location(s) fill an order, and why, in words a store associate or an agent can repeat.

Rules, in order:

1. A till sells from its own shelf (``in_store``); reserve-online-pay-in-store holds the chosen store's shelf.
2. Click and collect takes the pickup store's shelf when it has everything, else sends the rest from a warehouse
   (a transfer to the store).
3. Ship to home: one parcel from one location if any location has everything, **warehouses before stores**, the
   **nearest** first; otherwise the **fewest shipments** (each next parcel from the location that covers the most
   of what is left).
4. A store's stock below its online floor and every location's safety stock are never promised: the quantities
   sourcing sees are the channel's available to promise (``inventory.availability``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from omnijourney.core.errors import Invalid
from omnijourney.inventory import availability as avail
from omnijourney.inventory.models import Location
from omnijourney.inventory.stock import OutOfStock
from omnijourney.orders.lifecycle import FULFILMENTS


@dataclass(slots=True)
class Parcel:
    location: str
    lines: dict[str, int] = field(default_factory=dict)
    to_location: str | None = None  # goods sent to the pickup store


@dataclass(slots=True)
class Plan:
    fulfilment: str
    parcels: list[Parcel]
    rule: str
    explanation: list[str]
    pickup_location: str | None = None
    # each parcel's location: (units kept free, safety stock kept back) for this channel, as availability saw them
    rules: dict[str, tuple[int, bool]] = field(default_factory=dict)

    def reservation_lines(self) -> list[tuple[str, str, int]]:
        return [(sku, p.location, q) for p in self.parcels for sku, q in p.lines.items()]

    def to_dict(self) -> dict[str, Any]:
        return {"fulfilment": self.fulfilment, "rule": self.rule, "explanation": self.explanation,
                "pickup_location": self.pickup_location,
                "parcels": [{"location": p.location, "to_location": p.to_location,
                             "lines": [{"sku": s, "quantity": q} for s, q in p.lines.items()]} for p in self.parcels]}


def _short(sku: str, need: int, rows: list[avail.LocationStock], channel: str, where: str | None = None) -> OutOfStock:
    have = sum(r.available for r in rows if where is None or r.code == where)
    return OutOfStock(f"{sku}: {need} wanted, {have} available to promise"
                      + (f" at {where}" if where else f" for channel {channel}"), field="lines",
                      details={"sku": sku, "location": where or "", "available": have})


def source(session: Session, *, channel_code: str, lines: Sequence[tuple[str, int]], fulfilment: str,
           pickup_location: str | None = None, near: tuple[float, float] | None = None) -> Plan:
    """Choose the location(s) for ``lines`` (sku, quantity) and say why; ``OutOfStock`` when they cannot be had."""
    if fulfilment not in FULFILMENTS:
        raise Invalid(f"fulfilment {fulfilment!r} is not one of {', '.join(FULFILMENTS)}", field="fulfilment.mode")
    wanted: dict[str, int] = {}
    for sku, q in lines:
        wanted[sku] = wanted.get(sku, 0) + q
    found = {a.sku: a for a in avail.availability(session, skus=list(wanted), channel_code=channel_code, near=near)}
    rows = {sku: found[sku].locations for sku in wanted}
    plan = _choose(session, wanted, rows, channel_code, fulfilment, pickup_location)
    seen = {r.code: (r.keep_free, r.use_safety) for sku_rows in rows.values() for r in sku_rows}
    plan.rules = {p.location: seen[p.location] for p in plan.parcels if p.location in seen}
    return plan


def _choose(session: Session, wanted: dict[str, int], rows: dict[str, list[avail.LocationStock]], channel_code: str,
            fulfilment: str, pickup_location: str | None) -> Plan:
    if fulfilment == "in_store":
        own = next((loc for loc in (session.get(Location, r.code) for r in rows[next(iter(wanted))])
                    if loc is not None and loc.channel_code == channel_code), None)
        if own is None:
            raise Invalid(f"channel {channel_code} has no store of its own to sell from", field="fulfilment.mode")
        return _one_place(wanted, rows, own.code, channel_code, "in_store", "the till sells from its own shelf",
                          pickup=own.code)
    if fulfilment in ("pickup", "reserve_in_store"):
        store = _pickup_store(session, pickup_location)
        shelf_has_all = all(_at(rows[s], store.code) >= q for s, q in wanted.items())
        if fulfilment == "reserve_in_store" or shelf_has_all:
            return _one_place(wanted, rows, store.code, channel_code, fulfilment,
                              f"{store.name} has everything on its shelf: collect there", pickup=store.code)
        return _pickup_with_transfer(wanted, rows, store, channel_code)
    return _ship(wanted, rows, channel_code)


def _at(rows: list[avail.LocationStock], code: str) -> int:
    return next((r.available for r in rows if r.code == code), 0)


def _pickup_store(session: Session, code: str | None) -> Location:
    if not code:
        raise Invalid("collecting in a store needs the store: fulfilment.location", field="fulfilment.location")
    store = session.get(Location, code)
    if store is None or store.type != "store" or not store.active:
        raise Invalid(f"{code} is not an open store", field="fulfilment.location")
    if not store.pickup:
        raise Invalid(f"{store.name} does not hand over online orders", field="fulfilment.location",
                      code="no_pickup")
    return store


def _one_place(wanted: dict[str, int], rows: dict[str, list[avail.LocationStock]], code: str, channel: str,
               fulfilment: str, why: str, *, pickup: str | None = None) -> Plan:
    for sku, q in wanted.items():
        if _at(rows[sku], code) < q:
            raise _short(sku, q, rows[sku], channel, code)
    return Plan(fulfilment, [Parcel(code, dict(wanted))], "one_location", [why], pickup_location=pickup)


def _pickup_with_transfer(wanted: dict[str, int], rows: dict[str, list[avail.LocationStock]], store: Location,
                          channel: str) -> Plan:
    on_shelf = {s: min(q, _at(rows[s], store.code)) for s, q in wanted.items()}
    rest = {s: q - on_shelf[s] for s, q in wanted.items() if q > on_shelf[s]}
    parcels = [Parcel(store.code, {s: q for s, q in on_shelf.items() if q})] if any(on_shelf.values()) else []
    why = [f"{store.name} lacks {', '.join(f'{q} x {s}' for s, q in rest.items())} on its shelf"]
    warehouses = sorted({r.code for s in rest for r in rows[s] if r.type == "warehouse"})
    for wh in warehouses:
        take = {s: min(q, _at(rows[s], wh)) for s, q in rest.items()}
        take = {s: q for s, q in take.items() if q}
        if take:
            parcels.append(Parcel(wh, take, to_location=store.code))
            why.append(f"{wh} sends {', '.join(f'{q} x {s}' for s, q in take.items())} to {store.name} for collection")
            rest = {s: q - take.get(s, 0) for s, q in rest.items() if q - take.get(s, 0) > 0}
        if not rest:
            break
    if rest:
        sku = next(iter(rest))
        raise _short(sku, wanted[sku], rows[sku], channel)
    return Plan("pickup", parcels, "transfer_to_store", why, pickup_location=store.code)


def _ship(wanted: dict[str, int], rows: dict[str, list[avail.LocationStock]], channel: str) -> Plan:
    places: dict[str, avail.LocationStock] = {}
    for sku in wanted:
        for r in rows[sku]:
            if r.ships:
                places.setdefault(r.code, r)

    def rank(code: str) -> tuple[bool, float, str]:  # warehouses before stores, then nearest, then by code
        r = places[code]
        return (r.type != "warehouse", r.distance_km if r.distance_km is not None else 0.0, code)

    complete = [c for c in places if all(_at(rows[s], c) >= q for s, q in wanted.items())]
    if complete:
        best = min(complete, key=rank)
        kind = "a warehouse" if places[best].type == "warehouse" else "a store (ship from store)"
        why = [f"{places[best].name} has everything: one parcel from {kind}"]
        if len(complete) > 1:
            why.append("chosen before " + ", ".join(sorted(c for c in complete if c != best))
                       + ": warehouses before stores, then the nearest")
        return Plan("ship", [Parcel(best, dict(wanted))], "one_location", why)
    rest = dict(wanted)
    parcels: list[Parcel] = []
    why = ["no single location has everything: the fewest parcels"]
    while rest:
        cover = {c: sum(min(q, _at(rows[s], c)) for s, q in rest.items()) for c in places}
        cover = {c: n for c, n in cover.items() if n > 0}
        if not cover:
            sku = next(iter(rest))
            raise _short(sku, wanted[sku], rows[sku], channel)
        best = min(cover, key=lambda c: (-cover[c], *rank(c)))
        take = {s: min(q, _at(rows[s], best)) for s, q in rest.items()}
        take = {s: q for s, q in take.items() if q}
        parcels.append(Parcel(best, take))
        why.append(f"{places[best].name} sends {', '.join(f'{q} x {s}' for s, q in take.items())}")
        rest = {s: q - take.get(s, 0) for s, q in rest.items() if q - take.get(s, 0) > 0}
    return Plan("ship", parcels, "fewest_shipments", why)
