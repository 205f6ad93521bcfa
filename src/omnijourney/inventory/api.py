"""Locations under ``/api/v1/locations`` and stock under ``/api/v1/inventory`` (thin: parse, call, shape)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from omnijourney.api.deps import SessionDep, require
from omnijourney.api.idempotency import IdempotencyDep
from omnijourney.auth.service import Principal
from omnijourney.auth.stores import check_location
from omnijourney.core.errors import Invalid, NotFound
from omnijourney.db import Database
from omnijourney.inventory import availability as avail
from omnijourney.inventory import locations, reservations, stock
from omnijourney.inventory.models import Location, Reservation, StockLevel, StockMovement, Transfer
from omnijourney.inventory.schemas import (
    Adjustment,
    AvailabilityRead,
    Count,
    LevelRead,
    LocationCreate,
    LocationRead,
    LocationStockRead,
    LocationUpdate,
    MovementPage,
    MovementRead,
    PromiseRead,
    Receipt,
    ReservationCreate,
    ReservationLineRead,
    ReservationRead,
    SafetyStock,
    Sale,
    SaleRead,
    SkuAvailabilityRead,
    TransferCreate,
    TransferRead,
)

locations_router = APIRouter(prefix="/locations", tags=["inventory"])
router = APIRouter(prefix="/inventory", tags=["inventory"])
CanRead = Annotated[Principal, Depends(require("inventory:read"))]
CanWrite = Annotated[Principal, Depends(require("inventory:write"))]


def _location(session: SessionDep, loc: Location) -> LocationRead:
    feeds = locations.feeds_of(session, [loc.code])[loc.code]
    return LocationRead(code=loc.code, name=loc.name, type=loc.type, channel_code=loc.channel_code,
                        address=loc.address, latitude=loc.latitude, longitude=loc.longitude,
                        online_floor=loc.online_floor, ships=loc.ships, pickup=loc.pickup,
                        handling_hours=loc.handling_hours, active=loc.active, feeds=feeds)


def _level(lv: StockLevel) -> LevelRead:
    return LevelRead(sku=lv.sku, location=lv.location_code, on_hand=lv.on_hand, reserved=lv.held,
                     safety_stock=lv.safety_stock, available=lv.free, updated_at=lv.updated_at)


def _movement(m: StockMovement) -> MovementRead:
    return MovementRead(id=m.id, sku=m.sku, location=m.location_code, kind=m.kind, on_hand_delta=m.on_hand_delta,
                        reserved_delta=m.reserved_delta, counted=m.counted, reason=m.reason, ref=m.ref,
                        channel=m.channel_code, created_at=m.created_at)


def _transfer(t: Transfer) -> TransferRead:
    return TransferRead(id=t.id, sku=t.sku, from_location=t.from_code, to_location=t.to_code, via=t.via_code,
                        quantity=t.quantity, status=t.status, shipped_at=t.shipped_at, received_at=t.received_at)


def _reservation(session: SessionDep, r: Reservation) -> ReservationRead:
    lines = [ReservationLineRead(sku=ln.sku, location=ln.location_code, quantity=ln.quantity, status=ln.status)
             for ln in reservations.lines_of(session, r.id)]
    return ReservationRead(id=r.id, status=r.status, channel=r.channel_code, ref=r.ref, expires_at=r.expires_at,
                           lines=lines, created_at=r.created_at, updated_at=r.updated_at)


# ---------------------------------------------------------------- locations

@locations_router.post("", response_model=LocationRead, status_code=201)
def create_location(body: LocationCreate, session: SessionDep, idem: IdempotencyDep, who: CanWrite) -> LocationRead:
    """Register a warehouse, store, transit or quarantine location. 409 when the code exists."""
    who.check_store(body.channel_code, field="channel_code")
    loc = locations.create_location(session, **body.model_dump(exclude_none=True))
    return idem.done(_location(session, loc), 201)


@locations_router.get("", response_model=list[LocationRead])
def list_locations(session: SessionDep, _: CanRead, type: str | None = None) -> list[LocationRead]:
    return [_location(session, loc) for loc in locations.list_locations(session, type=type)]


@locations_router.get("/{code}", response_model=LocationRead)
def get_location(code: str, session: SessionDep, _: CanRead) -> LocationRead:
    """One location. 404 when unknown."""
    return _location(session, locations.get_location(session, code, field="code"))


@locations_router.patch("/{code}", response_model=LocationRead)
def update_location(code: str, body: LocationUpdate, session: SessionDep, who: CanWrite) -> LocationRead:
    """Change a location's settings; ``feeds`` replaces the channels it sells to. 404 when unknown."""
    check_location(session, who, code, field="code")
    loc = locations.update_location(session, code=code, changes=body.model_dump(exclude_unset=True))
    return _location(session, loc)


# ---------------------------------------------------------------- availability and levels

def _fields(model: type[BaseModel], obj: Any) -> dict[str, Any]:
    """``obj``'s attributes named as ``model``'s fields, in their order: the JSON ``model`` would write for it."""
    return {name: getattr(obj, name) for name in model.model_fields}


def _availability_json(db: Database, skus: list[str], channel: str, near: str | None, quantity: int) -> bytes:
    with db.reading() as session:  # its two statements need no common snapshot: no BEGIN and COMMIT round trips
        found = avail.availability(session, skus=skus, channel_code=channel, near=avail.parse_near(near),
                                   quantity=quantity)
    items = [_fields(SkuAvailabilityRead, a) | {
        "locations": [_fields(LocationStockRead, r) for r in a.locations],
        "nearest_stores": [_fields(LocationStockRead, r) for r in a.nearest_stores],
        "promises": [_fields(PromiseRead, p) for p in a.promises]} for a in found]
    # UTC times end in Z, as pydantic writes them (tests/inventory/test_availability.py holds the two equal)
    return orjson.dumps({"items": items}, option=orjson.OPT_UTC_Z)


@router.get("/availability", response_model=AvailabilityRead)
async def availability(
        request: Request, _: CanRead,
        sku: Annotated[list[str], Query(description="one or more SKUs (repeat the parameter)")],
        channel: Annotated[str, Query(description="the asking channel's code (web, app, S01, ...)")],
        near: Annotated[str | None, Query(description="latitude,longitude: nearest stores first")] = None,
        quantity: Annotated[int, Query(ge=1, le=10_000)] = 1) -> Response:
    """Can I have it, where and when: each location's stock as this channel may promise it, the nearest stores
    with it on the shelf, and the earliest promise per fulfilment mode. 404 for an unknown SKU or channel."""
    # the POS, the call center and every product page ask this: its transaction and its answer's JSON in one trip to
    # the thread pool (a sync route with the session dependency takes three, a third of the request's CPU), and the
    # JSON written from the answer's rows instead of validating a hundred models first
    body = await run_in_threadpool(_availability_json, request.app.state.db, sku, channel, near, quantity)
    return Response(body, media_type="application/json")


@router.get("/levels", response_model=list[LevelRead])
def list_levels(session: SessionDep, _: CanRead, sku: Annotated[list[str] | None, Query()] = None,
                location: Annotated[list[str] | None, Query()] = None) -> list[LevelRead]:
    """Stock levels of some SKUs and/or locations (at least one filter)."""
    if not sku and not location:
        raise Invalid("filter by sku or location", field="sku")
    return [_level(lv) for lv in stock.levels(session, skus=sku, locations=location)]


@router.get("/movements", response_model=MovementPage)
def list_movements(session: SessionDep, _: CanRead, sku: str | None = None, location: str | None = None,
                   ref: str | None = None, before: int | None = None,
                   limit: Annotated[int, Query(ge=1, le=500)] = 100) -> MovementPage:
    """The ledger, newest first."""
    rows = stock.movements(session, sku=sku, location=location, ref=ref, before=before, limit=limit)
    return MovementPage(items=[_movement(m) for m in rows],
                        next_before=rows[-1].id if len(rows) == limit else None)


# ---------------------------------------------------------------- movements

@router.post("/receipts", response_model=LevelRead, status_code=201)
def receive(body: Receipt, session: SessionDep, idem: IdempotencyDep, who: CanWrite) -> LevelRead:
    """Goods arrived. 404 for an unknown SKU or location."""
    check_location(session, who, body.location, field="location")
    return idem.done(_level(stock.receive(session, **body.model_dump())), 201)


@router.post("/adjustments", response_model=LevelRead, status_code=201)
def adjust(body: Adjustment, session: SessionDep, idem: IdempotencyDep, who: CanWrite) -> LevelRead:
    """Correct on hand with a reason. 409 ``negative_stock`` when it would fall below zero or what is reserved."""
    check_location(session, who, body.location, field="location")
    return idem.done(_level(stock.adjust(session, **body.model_dump())), 201)


@router.post("/counts", response_model=LevelRead, status_code=201)
def count(body: Count, session: SessionDep, idem: IdempotencyDep, who: CanWrite) -> LevelRead:
    """A cycle count: on hand becomes the counted figure. 409 ``count_below_reserved``."""
    check_location(session, who, body.location, field="location")
    return idem.done(_level(stock.count(session, **body.model_dump())), 201)


@router.put("/safety-stock", response_model=LevelRead)
def safety_stock(body: SafetyStock, session: SessionDep, who: CanWrite) -> LevelRead:
    """Units of a SKU kept back from every promise at a location."""
    check_location(session, who, body.location, field="location")
    return _level(stock.set_safety_stock(session, **body.model_dump()))


@router.post("/transfers", response_model=TransferRead, status_code=201)
def transfer(body: TransferCreate, session: SessionDep, idem: IdempotencyDep, who: CanWrite) -> TransferRead:
    """Send units to another location (in transit until received). 409 ``negative_stock`` when they are not free."""
    check_location(session, who, body.from_location, field="from")
    moved = stock.transfer(session, sku=body.sku, from_location=body.from_location, to_location=body.to_location,
                           quantity=body.quantity)
    return idem.done(_transfer(moved), 201)


@router.post("/transfers/{transfer_id}/receive", response_model=TransferRead)
def receive_transfer(transfer_id: str, session: SessionDep, who: CanWrite) -> TransferRead:
    """The transfer arrived. 404 when unknown, 409 ``transfer_received`` the second time."""
    if who.stores is not None and (sent := session.get(Transfer, transfer_id)) is not None:
        check_location(session, who, sent.to_code, field="transfer_id")  # received at one of their stores
    return _transfer(stock.receive_transfer(session, transfer_id=transfer_id))


# ---------------------------------------------------------------- reservations and sales

def _explained(session: SessionDep, exc: stock.OutOfStock, channel: str, quantity: int) -> stock.OutOfStock:
    if isinstance(exc.details, dict) and "sku" in exc.details:
        exc.details["alternatives"] = avail.alternatives(session, sku=exc.details["sku"], channel_code=channel,
                                                         quantity=quantity, instead_of=exc.details["location"])
    return exc


@router.post("/reservations", response_model=ReservationRead, status_code=201)
def reserve(body: ReservationCreate, session: SessionDep, idem: IdempotencyDep, who: CanWrite) -> ReservationRead:
    """Hold units for a checkout, all lines or none; they come back by themselves after ``ttl_s``. 409
    ``out_of_stock`` names the line and lists alternatives (other locations, other fulfilment modes)."""
    who.check_store(body.channel, field="channel")
    for i, ln in enumerate(body.lines):
        check_location(session, who, ln.location, field=f"lines.{i}.location")
    lines = [(ln.sku, ln.location, ln.quantity) for ln in body.lines]
    try:
        r = reservations.reserve(session, channel_code=body.channel, lines=lines, ref=body.ref, ttl_s=body.ttl_s)
    except stock.OutOfStock as exc:
        raise _explained(session, exc, body.channel, max(q for _, _, q in lines)) from None
    return idem.done(_reservation(session, r), 201)


@router.get("/reservations/{reservation_id}", response_model=ReservationRead)
def get_reservation(reservation_id: str, session: SessionDep, _: CanRead) -> ReservationRead:
    """One reservation and its lines. 404 when unknown."""
    r = session.get(Reservation, reservation_id)
    if r is None:
        raise NotFound(f"no reservation {reservation_id!r}", field="reservation_id")
    return _reservation(session, r)


@router.post("/reservations/{reservation_id}/release", response_model=ReservationRead)
def release(reservation_id: str, session: SessionDep, who: CanWrite,
            location: str | None = None) -> ReservationRead:
    """Give the units back (all, or those at ``location``). 409 ``reservation_settled`` when nothing is held."""
    if who.stores is not None and (held := session.get(Reservation, reservation_id)) is not None:
        who.check_store(held.channel_code, field="reservation_id")  # made in one of their stores' channels
    return _reservation(session, reservations.release(session, reservation_id=reservation_id, location=location))


@router.post("/sales", response_model=SaleRead, status_code=201)
def sell(body: Sale, session: SessionDep, idem: IdempotencyDep, who: CanWrite) -> SaleRead:
    """Units sold at once without a reservation (a till's counter sale). 409 ``out_of_stock`` with alternatives."""
    who.check_store(body.channel, field="channel")
    for i, ln in enumerate(body.lines):
        check_location(session, who, ln.location, field=f"lines.{i}.location")
    lines = [(ln.sku, ln.location, ln.quantity) for ln in body.lines]
    try:
        reservations.sell(session, channel_code=body.channel, lines=lines, ref=body.ref)
    except stock.OutOfStock as exc:
        raise _explained(session, exc, body.channel, max(q for _, _, q in lines)) from None
    levels = [stock.level(session, sku, loc) for sku, loc in sorted({(s, loc) for s, loc, _ in lines})]
    return idem.done(SaleRead(levels=[_level(lv) for lv in levels]), 201)
