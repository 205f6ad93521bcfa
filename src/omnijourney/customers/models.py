"""Profiles, identities and the append-only merge log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.functions import FunctionElement

from omnijourney.core.types import BigIntPK, JSONType, UTCDateTime
from omnijourney.db import Base

NAME_TRAITS = ("first_name", "last_name", "name")


class NameKey(FunctionElement[str]):
    """A name trait of a profile, lower-cased, as the name indexes hold it: the same construct in the index and in
    the search (``customers.service.search``), so each engine's planner sees one expression."""

    type = String()
    inherit_cache = True
    name = "name_key"

    def __init__(self, trait: str) -> None:
        if trait not in NAME_TRAITS:
            raise ValueError(trait)
        self.trait = trait
        super().__init__()


@compiles(NameKey, "postgresql")
def _name_key_pg(element: NameKey, compiler: Any, **kw: Any) -> str:
    return f"lower(traits ->> '{element.trait}')"


@compiles(NameKey, "sqlite")
def _name_key_sqlite(element: NameKey, compiler: Any, **kw: Any) -> str:
    return f"lower(json_extract(traits, '$.{element.trait}'))"


def name_present(trait: str, dialect: str) -> str:
    """The SQL condition of the index of ``trait``: the profile has the trait (most profiles are anonymous visitors
    and stay out of the index)."""
    if dialect == "postgresql":
        return f"(traits ->> '{trait}') IS NOT NULL"
    return f"json_extract(traits, '$.{trait}') IS NOT NULL"


def _name_index(trait: str) -> Index:
    return Index(f"ix_customers_{trait}", NameKey(trait),
                 postgresql_where=text(name_present(trait, "postgresql")),
                 sqlite_where=text(name_present(trait, "sqlite")))


class Customer(Base):
    """A person. ``merged_into`` is set when the profile was merged into another (the survivor)."""

    __tablename__ = "customers"
    __table_args__ = (
        # the customer list, newest first (customers.service.search); merged profiles are never listed
        # (SQLite: the whole table, as its planner would not take a partial index here for what it is)
        Index("ix_customers_newest", "created_at", "id", postgresql_where=text("merged_into IS NULL")),
        *(_name_index(trait) for trait in NAME_TRAITS),
    )

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
