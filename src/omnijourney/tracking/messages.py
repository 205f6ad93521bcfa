"""A tracked message after parsing: what the rest of the platform sees of a Segment call."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

MESSAGE_TYPES = ("track", "identify", "page", "screen", "group", "alias")


@dataclass(slots=True)
class Message:
    """One validated call (track, identify, page, screen, group, alias), timestamps already corrected."""

    message_id: str
    type: str
    channel: str
    # skew-corrected: originalTimestamp + (receivedAt - sentAt); receivedAt when that is implausible (segment.py)
    timestamp: datetime
    received_at: datetime
    user_id: str | None = None
    anonymous_id: str | None = None
    event: str | None = None  # track: the event name; page/screen: the name
    previous_id: str | None = None  # alias
    group_id: str | None = None  # group
    store_code: str | None = None
    original_timestamp: datetime | None = None
    sent_at: datetime | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] | None = None  # identify / group traits
    context: dict[str, Any] = field(default_factory=dict)
    source_id: str | None = None
    source_name: str | None = None
    integrations: dict[str, Any] | None = None  # Segment's per-destination switches, batch-level merged in
