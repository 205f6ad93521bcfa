"""Registering sources: one write key per channel instance."""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from omnijourney.core.channels import CHANNELS
from omnijourney.core.errors import Conflict, Invalid, NotFound
from omnijourney.core.ids import new_id
from omnijourney.core.time import utcnow
from omnijourney.tracking.models import Source


def create_source(session: Session, *, name: str, channel: str, store_code: str | None = None) -> Source:
    """Register a source; its write key is generated here (write keys are public, like Segment's)."""
    name = name.strip()
    if not name:
        raise Invalid("a source needs a name", field="name")
    if channel not in CHANNELS:
        raise Invalid(f"unknown channel {channel!r}: one of {', '.join(sorted(CHANNELS))}", field="channel")
    if store_code is not None and channel != "store":
        raise Invalid("only store sources have a store code", field="store")
    if session.scalar(select(Source.id).where(Source.name == name)):
        raise Conflict(f"a source named {name!r} exists already", field="name")
    source = Source(id=new_id(), name=name, channel=channel, store_code=store_code,
                    write_key="wk_" + secrets.token_urlsafe(24), enabled=True, created_at=utcnow())
    session.add(source)
    session.flush()
    return source


def get_source(session: Session, source_id: str) -> Source:
    """The source ``source_id`` (disabled ones too); NotFound otherwise."""
    source = session.get(Source, source_id)
    if source is None:
        raise NotFound(f"no source has the id {source_id!r}", field="source_id")
    return source


def source_by_write_key(session: Session, write_key: str) -> Source | None:
    return session.scalar(select(Source).where(Source.write_key == write_key, Source.enabled.is_(True)))


def list_sources(session: Session) -> list[Source]:
    return list(session.scalars(select(Source).order_by(Source.created_at)))
