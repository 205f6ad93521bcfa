"""Response shapes of the customer 360 API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class IdentityRead(BaseModel):
    type: str
    value: str
    first_seen: datetime
    source_id: str | None


class MergeRead(BaseModel):
    merged_id: str
    at: datetime
    message_id: str | None
    source_id: str | None
    identifiers: list[Any]
    reason: str


class CustomerRead(BaseModel):
    id: str
    traits: dict[str, Any]
    trait_meta: dict[str, Any]
    consent: dict[str, Any]
    identities: list[IdentityRead]
    channels: dict[str, int]
    first_seen: datetime | None
    last_seen: datetime | None
    events: int
    created_at: datetime
    merged_from: list[MergeRead]
    orders: dict[str, Any] = Field(default_factory=dict, description="orders from every channel: count, by_channel, "
                                                                     "spent (net of refunds), recent")


class CustomerSummary(BaseModel):
    id: str
    traits: dict[str, Any]
    created_at: datetime


class EventRead(BaseModel):
    id: int
    message_id: str
    type: str
    event: str | None
    channel: str
    store: str | None
    timestamp: datetime
    received_at: datetime
    properties: dict[str, Any]
    traits: dict[str, Any] | None
    user_id: str | None
    anonymous_id: str | None
    previous_id: str | None
    group_id: str | None
    stage: str | None  # before / during / after purchase, for standard e-commerce events


class TimelinePage(BaseModel):
    customer_id: str
    items: list[EventRead]
    next_cursor: str | None
