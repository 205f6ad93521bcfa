"""Tables of the auth domain: API keys for machines, staff accounts and their sessions for people."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, delete
from sqlalchemy.orm import Mapped, Session, mapped_column

from omnijourney import jobs
from omnijourney.core.time import utcnow
from omnijourney.core.types import JSONType, UTCDateTime
from omnijourney.db import Base

PRUNE_SESSIONS_JOB = "auth.prune_sessions"


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings; the key itself is never stored
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class StaffMember(Base):
    """A person who works with the platform: logs in with an email and a password, acts with the scopes of a role
    (``auth.roles``); a store associate only in the stores listed in ``stores`` (store channel codes)."""

    __tablename__ = "staff"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # normalised: trimmed, lower-case
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    stores: Mapped[list[str]] = mapped_column(JSONType)
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id; the password itself is never stored
    must_change_password: Mapped[bool] = mapped_column(Boolean)  # after a one-time password
    active: Mapped[bool] = mapped_column(Boolean)
    failed_logins: Mapped[int] = mapped_column(Integer)  # wrong passwords in a row (changed by SQL arithmetic)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StaffSession(Base):
    """A logged-in browser: the cookie holds a random token, this row only its SHA-256 (a stolen database opens no
    session). It ends at ``expires_at``, or after the idle timeout counted from ``last_seen_at``, or at logout."""

    __tablename__ = "staff_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    staff_id: Mapped[str] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


@jobs.handler(PRUNE_SESSIONS_JOB)
def prune_sessions(session: Session, _args: dict[str, Any]) -> None:
    """Forget sessions past their end (idle ones are refused when used and go when their ``expires_at`` passes)."""
    session.execute(delete(StaffSession).where(StaffSession.expires_at < utcnow()))
