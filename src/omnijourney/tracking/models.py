"""Sources (write keys), the event timeline and the messages each source had refused."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, FetchedValue, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from omnijourney.core.types import BigIntPK, PayloadJSON, UTCDateTime
from omnijourney.customers.follow import customer_ref
from omnijourney.db import Base


class Source(Base):
    """One channel instance that sends events: the web shop, the iOS app, store 12's POS, ..."""

    __tablename__ = "sources"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    channel: Mapped[str] = mapped_column(String(32))
    store_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    write_key: Mapped[str] = mapped_column(String(64), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Event(Base):
    """One thing a person did, in any channel. Tracked calls and domain events alike.

    ``customer_id`` is the resolved profile; a merge re-points the merged profile's events to the
    survivor in the same transaction, so a timeline is one index range scan.
    """

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("source_id", "message_id", name="uq_events_source_message"),
        Index("ix_events_customer_ts", "customer_id", "timestamp", "id"),
        # the feed's recent band (tracking.feed); PostgreSQL only, where transactions commit out of id order
        Index("ix_events_txid", "txid", postgresql_using="brin").ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # no foreign key: a per-row trigger on the hottest insert path; sources are never deleted
    source_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    message_id: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(16))  # track, identify, page, screen, group, alias
    event: Mapped[str | None] = mapped_column(String(200), nullable=True)  # name (track) / page name
    customer_id: Mapped[str | None] = customer_ref()  # follows profile merges (customers.follow)
    user_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    anonymous_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    previous_id: Mapped[str | None] = mapped_column(String(200), nullable=True)  # alias
    group_id: Mapped[str | None] = mapped_column(String(200), nullable=True)  # group
    channel: Mapped[str] = mapped_column(String(32))
    store_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)  # skew-corrected
    original_timestamp: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    properties: Mapped[dict[str, Any]] = mapped_column(PayloadJSON, default=dict)
    traits: Mapped[dict[str, Any] | None] = mapped_column(PayloadJSON, nullable=True)
    context: Mapped[dict[str, Any] | None] = mapped_column(PayloadJSON, nullable=True)
    # the writing transaction (PostgreSQL: its default, txid_current(); SQLite: unused, writers are serial), so
    # that the feed (tracking.feed) can hand out events in an order that never skips a late commit
    txid: Mapped[int | None] = mapped_column(BigInteger, nullable=True, server_default=FetchedValue())


class RejectedMessage(Base):
    """A message the tracking API refused for a known source, kept for that source's debugger.

    Only the latest ``tracking.debugger.REJECTIONS_KEPT`` per source are kept (pruned on every insert), so
    the table stays small whatever a misconfigured SDK sends. Written only when a request had rejections,
    never on the happy path.
    """

    __tablename__ = "rejections"
    __table_args__ = (
        # the debugger's listing (newest first) and the prune are both a range of this index
        Index("ix_rejections_source_id", "source_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # no foreign key, as for events: sources are never deleted
    source_id: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime)  # when the request was received
    message_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    code: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    field: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # the message as received: a JSON object, or its text cut to 2 KB (see tracking.debugger.sample_of);
    # json, not jsonb: keys stay in the order the SDK sent them
    sample: Mapped[Any] = mapped_column(PayloadJSON)
