"""Answers kept for ``Idempotency-Key`` retries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from omnijourney.core.types import JSONType, UTCDateTime
from omnijourney.db import Base


class IdempotentRequest(Base):
    """The answer given to a request sent with an ``Idempotency-Key``: a retry with the same key (and the same
    body) gets it again instead of changing anything a second time. Kept for ``api.idempotency.KEEP``."""

    __tablename__ = "idempotent_requests"

    # who sent it (the principal) and where (method and route): one key means one thing per caller and route
    scope: Mapped[str] = mapped_column(String(300), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # of the request body, to refuse a key reused for another
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[Any] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
