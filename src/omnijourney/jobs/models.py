"""The job table: work that happens later, committed with the change that causes it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from omnijourney.core.types import BigIntPK, JSONType, UTCDateTime
from omnijourney.db import Base


class Job(Base):
    """One unit of background work.

    ``pending`` until a worker claims it (``running``, ``locked_by``/``locked_at``; the worker refreshes
    ``locked_at`` while it lives); deleted in the same transaction as the handler's changes when it succeeds;
    back to ``pending`` with a later ``run_at`` when it fails, ``failed`` after ``max_attempts``.
    ``unique_key``, when set, makes a second enqueue of the same work a no-op while the first is not done.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_due", "status", "run_at", "id"),
        Index("ux_jobs_unique_key", "unique_key", unique=True),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(100))
    args: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, running, failed
    run_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=10)
    unique_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    locked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
