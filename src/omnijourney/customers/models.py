"""Profiles, identities and the append-only merge log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from omnijourney.core.types import BigIntPK, JSONType, UTCDateTime
from omnijourney.db import Base


class Customer(Base):
    """A person. ``merged_into`` is set when the profile was merged into another (the survivor)."""

    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merged_into: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    traits: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # trait -> [first_seen_iso, updated_at_iso]: when the trait first appeared and when its value was set
    trait_meta: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # category -> {"granted": bool, "at": iso, "source": name, "channel": channel}
    consent: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    merge_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Identity(Base):
    """One identifier (type, normalised value) belonging to one profile."""

    __tablename__ = "identities"
    __table_args__ = (Index("ix_identities_customer", "customer_id"),)

    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(320), primary_key=True)
    # no foreign key: written in bulk by identity resolution only, which creates the profile first
    customer_id: Mapped[str] = mapped_column(String(32))
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)  # when it was linked to its profile
    source_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


class Merge(Base):
    """Append-only: profile ``merged_id`` was merged into ``survivor_id``, and why."""

    __tablename__ = "merges"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    survivor_id: Mapped[str] = mapped_column(String(32), index=True)
    merged_id: Mapped[str] = mapped_column(String(32), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    message_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    source_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # the identifiers of the event that linked the two profiles
    identifiers: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    reason: Mapped[str] = mapped_column(String(200))
