"""Answers kept for ``Idempotency-Key`` retries."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, String, delete
from sqlalchemy.orm import Mapped, Session, mapped_column

from omnijourney import jobs
from omnijourney.core.time import utcnow
from omnijourney.core.types import JSONType, UTCDateTime
from omnijourney.db import Base

KEEP = timedelta(hours=24)
PRUNE_JOB = "api.prune_idempotency_keys"


class IdempotentRequest(Base):
    """The answer given to a request sent with an ``Idempotency-Key``: a retry with the same key (and the same
    body) gets it again instead of changing anything a second time. Kept for :data:`KEEP`."""

    __tablename__ = "idempotent_requests"

    # who sent it (the principal) and where (method and route): one key means one thing per caller and route
    scope: Mapped[str] = mapped_column(String(300), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # of the request body, to refuse a key reused for another
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[Any] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


@jobs.handler(PRUNE_JOB)
def prune(session: Session, _args: dict[str, Any]) -> None:
    """Forget answers older than :data:`KEEP`."""
    session.execute(delete(IdempotentRequest).where(IdempotentRequest.created_at < utcnow() - KEEP))
