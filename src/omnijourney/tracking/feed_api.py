"""``GET /api/v1/events/feed``: every committed event once, in an order a consumer can follow (``tracking.feed``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from omnijourney.api.deps import SessionDep, require
from omnijourney.auth.service import Principal
from omnijourney.tracking import feed

router = APIRouter(prefix="/events", tags=["events"])


class FeedEvent(BaseModel):
    id: int
    message_id: str
    source_id: str | None
    type: str
    event: str | None
    customer_id: str | None  # the profile now (merges re-point events to the survivor)
    user_id: str | None
    anonymous_id: str | None
    previous_id: str | None
    group_id: str | None
    channel: str
    store_code: str | None
    timestamp: datetime
    original_timestamp: datetime | None
    sent_at: datetime | None
    received_at: datetime
    properties: dict[str, Any]
    traits: dict[str, Any] | None
    context: dict[str, Any] | None


class FeedRead(BaseModel):
    events: list[FeedEvent]
    cursor: str  # pass it back as ?cursor= to read on; store it with what you did with the events
    more: bool  # the page was full: read again now rather than after your usual pause


@router.get("/feed", response_model=FeedRead)
def read_feed(session: SessionDep, _: Annotated[Principal, Depends(require("events:read"))],
              cursor: Annotated[str | None, Query(description="from the previous answer; none: from the start")]
              = None,
              limit: Annotated[int, Query(ge=1, le=feed.MAX_LIMIT)] = 500) -> FeedRead:
    """Events committed since ``cursor``, each exactly once: none is skipped when transactions commit out of id
    order. Events that committed late come first, then newer ones in id order."""
    page = feed.read(session, cursor=cursor, limit=limit)
    return FeedRead(events=[FeedEvent(**e) for e in page.events], cursor=page.cursor, more=page.more)
