"""Request and response shapes of the locations and inventory APIs. Quantities are strict whole numbers: JSON
``true`` or ``"2"`` is a 422 naming the field, never 1 or 2."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, StrictBool, StrictInt

Code = Field(min_length=1, max_length=64)


class LocationCreate(BaseModel):
    code: str = Code
    name: str = Field(min_length=1, max_length=200)
    type: Literal["warehouse", "store", "transit", "quarantine"]
    channel_code: str | None = Field(default=None, max_length=64, description="a store's own store channel")
    address: str | None = Field(default=None, max_length=500)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    online_floor: StrictInt = Field(default=0, description="units of a store's shelf kept from online orders")
    ships: StrictBool | None = Field(default=None, description="sends parcels (default: warehouses)")
    pickup: StrictBool | None = Field(default=None, description="online orders collected here (default: stores)")
    handling_hours: StrictInt | None = Field(default=None, description="pick and pack time (store 2, else 24)")
    feeds: list[str] | None = Field(default=None, description="channels it sells to (default by type)")


class LocationUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    address: str | None = Field(default=None, max_length=500)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    online_floor: StrictInt | None = None
    ships: StrictBool | None = None
    pickup: StrictBool | None = None
    handling_hours: StrictInt | None = None
    active: StrictBool | None = None
    feeds: list[str] | None = None


class LocationRead(BaseModel):
    code: str
    name: str
    type: str
    channel_code: str | None
    address: str | None
    latitude: float | None
    longitude: float | None
    online_floor: int
    ships: bool
    pickup: bool
    handling_hours: int
    active: bool
    feeds: list[str]


class LevelRead(BaseModel):
    sku: str
    location: str
    on_hand: int
    reserved: int
    safety_stock: int
    available: int = Field(description="on_hand - reserved")
    updated_at: datetime


class Receipt(BaseModel):
    sku: str = Code
    location: str = Code
    quantity: StrictInt
    ref: str | None = Field(default=None, max_length=64, description="e.g. a purchase order or delivery note")
    reason: str | None = Field(default=None, max_length=200)


class Adjustment(BaseModel):
    sku: str = Code
    location: str = Code
    delta: StrictInt = Field(description="units to add (positive) or remove (negative)")
    reason: str = Field(min_length=1, max_length=200, description="damaged, lost, found, ...")
    ref: str | None = Field(default=None, max_length=64)


class Count(BaseModel):
    sku: str = Code
    location: str = Code
    counted: StrictInt = Field(description="units found on the shelf: on hand becomes this")
    ref: str | None = Field(default=None, max_length=64)


class SafetyStock(BaseModel):
    sku: str = Code
    location: str = Code
    safety_stock: StrictInt


class TransferCreate(BaseModel):
    sku: str = Code
    from_location: str = Field(alias="from", min_length=1, max_length=64)
    to_location: str = Field(alias="to", min_length=1, max_length=64)
    quantity: StrictInt


class TransferRead(BaseModel):
    id: str
    sku: str
    from_location: str = Field(serialization_alias="from")
    to_location: str = Field(serialization_alias="to")
    via: str
    quantity: int
    status: str
    shipped_at: datetime
    received_at: datetime | None


class MovementRead(BaseModel):
    id: int
    sku: str
    location: str
    kind: str
    on_hand_delta: int
    reserved_delta: int
    counted: int | None
    reason: str | None
    ref: str | None
    channel: str | None
    created_at: datetime


class MovementPage(BaseModel):
    items: list[MovementRead]
    next_before: int | None = Field(description="pass as ?before= for the next (older) page")


class ReservationLineIn(BaseModel):
    sku: str = Code
    location: str = Code
    quantity: StrictInt = 1


class ReservationCreate(BaseModel):
    channel: str = Code
    lines: list[ReservationLineIn] = Field(min_length=1, max_length=100)
    ref: str | None = Field(default=None, max_length=64)
    ttl_s: StrictInt | None = Field(default=900, description="seconds until it expires by itself; null: never")


class ReservationLineRead(BaseModel):
    sku: str
    location: str
    quantity: int
    status: str


class ReservationRead(BaseModel):
    id: str
    status: str
    channel: str
    ref: str | None
    expires_at: datetime | None
    lines: list[ReservationLineRead]
    created_at: datetime
    updated_at: datetime


class Sale(BaseModel):
    channel: str = Code
    lines: list[ReservationLineIn] = Field(min_length=1, max_length=100)
    ref: str | None = Field(default=None, max_length=64)


class SaleRead(BaseModel):
    levels: list[LevelRead] = Field(description="the stock levels after the sale")


class LocationStockRead(BaseModel):
    code: str
    name: str
    type: str
    on_hand: int
    reserved: int
    safety_stock: int
    available: int = Field(description="what this channel may be promised here")
    distance_km: float | None
    ships: bool
    pickup: bool


class PromiseRead(BaseModel):
    mode: str = Field(description="ship | pickup | reserve_in_store | in_store")
    possible: bool
    location: str | None
    at: datetime | None = Field(description="delivered (ship), ready to collect, or now (in_store)")
    via: str | None = Field(description="pickup after a transfer from this location")
    reason: str | None


class SkuAvailabilityRead(BaseModel):
    sku: str
    channel: str
    quantity: int
    available: int = Field(description="the channel's available to promise over every location that feeds it")
    locations: list[LocationStockRead]
    nearest_stores: list[LocationStockRead] = Field(description="stores with it on the shelf, nearest first")
    promises: list[PromiseRead]


class AvailabilityRead(BaseModel):
    items: list[SkuAvailabilityRead]
