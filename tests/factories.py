"""Small factories for tests: sources and tracked messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from omnijourney.config import IdentitySettings
from omnijourney.core.ids import new_id
from omnijourney.db import Database
from omnijourney.tracking.messages import Message
from omnijourney.tracking.models import Source
from omnijourney.tracking.service import IngestResult, ingest
from omnijourney.tracking.sources import create_source

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def source(db: Database, channel: str = "web", name: str | None = None, store: str | None = None) -> Source:
    with db.transaction() as session:
        return create_source(session, name=name or f"{channel}-{new_id()[-6:]}", channel=channel, store_code=store)


def msg(src: Source, type: str = "track", *, minutes: float = 0, **fields: Any) -> Message:
    """A validated message from ``src`` at T0 + ``minutes``."""
    ts = T0 + timedelta(minutes=minutes)
    fields.setdefault("event", "Product Viewed" if type == "track" else None)
    return Message(message_id=fields.pop("message_id", new_id()), type=type, channel=src.channel, timestamp=ts,
                   received_at=ts, source_id=src.id, source_name=src.name, store_code=src.store_code,
                   context=fields.pop("context", {}), **fields)


def send(db: Database, *messages: Message, settings: IdentitySettings | None = None) -> IngestResult:
    with db.transaction() as session:
        return ingest(session, messages=list(messages), settings=settings or IdentitySettings())


def run_jobs(db: Database) -> int:
    """Run every due background job now (what the embedded worker does a moment later); returns how many ran."""
    from omnijourney.jobs.worker import Worker

    return Worker(db, name="tests").drain()
