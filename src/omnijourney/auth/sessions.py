"""Sessions for people: a login with email and password opens a server-side session held by a cookie.

* The cookie (:data:`COOKIE`) holds a random 256-bit token; the database keeps only its SHA-256, so a copy of the
  database opens no session. HttpOnly, SameSite=Lax, Secure when the public URL is https (:func:`cookie_options`).
* A session ends ``session_ttl_s`` after the login, after ``idle_timeout_s`` without a request, at logout, when the
  password changes elsewhere, or when the account is disabled or its password reset (``OMNI_STAFF__...``).
* CSRF: each session has a token, :func:`csrf_token` of the session token (an HMAC: nothing more to store, and the
  page can ask for it again with ``GET /api/v1/session``). Every unsafe request (POST, PUT, PATCH, DELETE)
  authenticated by the cookie must carry it, as the header :data:`CSRF_HEADER` or the form field
  :data:`CSRF_FIELD`; compared in constant time. A request with a bearer key needs none (no browser sends a key
  by itself).
* A wrong password, an unknown email, a disabled or a locked account all get the same answer
  (:data:`LOGIN_FAILED`) after the same work (one argon2 check, against a dummy hash when there is no account).
  ``max_failed_logins`` wrong passwords in a row lock the account for ``lockout_s``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from omnijourney import jobs
from omnijourney.auth import passwords
from omnijourney.auth.models import PRUNE_SESSIONS_JOB, StaffMember, StaffSession
from omnijourney.auth.roles import STORE_SCOPED, scopes_for
from omnijourney.auth.service import Principal
from omnijourney.auth.staff import normalise_email
from omnijourney.config import StaffSettings
from omnijourney.core.errors import Forbidden, Invalid, Unauthorized
from omnijourney.core.ids import new_id
from omnijourney.core.time import utcnow
from omnijourney.db import Database

COOKIE = "omni_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOUCH_EVERY = timedelta(seconds=60)  # last_seen_at is written at most this often per session (idle timeout)
LOGIN_FAILED = ("wrong email or password (an account is also locked for a while after too many failed "
                "attempts, and a disabled account cannot log in)")
_CSRF_CONTEXT = b"omnijourney csrf v1"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(token: str) -> str:
    """The CSRF token of the session whose cookie holds ``token`` (it cannot be computed without the cookie)."""
    digest = hmac.new(token.encode(), _CSRF_CONTEXT, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def check_csrf(token: str, submitted: str | None) -> None:
    """403 ``csrf_failed`` on ``csrf_token`` unless ``submitted`` is the session's CSRF token."""
    if not submitted or not hmac.compare_digest(csrf_token(token).encode(), submitted.encode()):
        raise Forbidden(f"a request with the session cookie that changes something must carry the session's CSRF "
                        f"token ({CSRF_HEADER} header or {CSRF_FIELD} form field; GET /api/v1/session gives it)",
                        field=CSRF_FIELD, code="csrf_failed")


def cookie_options(public_url: str | None, scheme: str = "http") -> dict[str, object]:
    """``Response.set_cookie`` options of the session cookie: Secure when the public URL (or the request) is https."""
    secure = (public_url or "").lower().startswith("https://") or scheme == "https"
    return {"httponly": True, "samesite": "lax", "secure": secure, "path": "/"}


def principal_of(staff: StaffMember) -> Principal:
    """The principal a staff member acts as: the scopes of their role, their stores if the role is store-scoped."""
    stores = frozenset(staff.stores) if staff.role in STORE_SCOPED else None
    return Principal(kind="staff", id=staff.id, name=staff.email, scopes=scopes_for(staff.role), stores=stores,
                     role=staff.role)


@dataclass(frozen=True)
class Login:
    """A successful login: the account, its new session and the token for the cookie (never stored)."""

    staff: StaffMember
    session: StaffSession
    token: str

    @property
    def csrf_token(self) -> str:
        return csrf_token(self.token)


def record_failure(session: Session, staff_id: str, settings: StaffSettings) -> None:
    """Count a wrong password; the ``max_failed_logins``-th in a row locks the account for ``lockout_s``."""
    count = session.execute(
        update(StaffMember).where(StaffMember.id == staff_id)
        .values(failed_logins=StaffMember.failed_logins + 1).returning(StaffMember.failed_logins)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    if count >= settings.max_failed_logins:
        session.execute(
            update(StaffMember).where(StaffMember.id == staff_id,
                                      StaffMember.failed_logins >= settings.max_failed_logins)
            .values(failed_logins=0, locked_until=utcnow() + timedelta(seconds=settings.lockout_s))
            .execution_options(synchronize_session=False))


def login(session: Session, *, email: str, password: str, settings: StaffSettings) -> Login | None:
    """Open a session for the account of ``email`` if ``password`` is its password and it is active and not
    locked; None otherwise, whatever the reason (a wrong password is counted: see :func:`record_failure`).
    The caller commits even when None comes back (the count must stay)."""
    try:
        address: str | None = normalise_email(email)
    except Invalid:
        address = None
    staff = session.scalar(select(StaffMember).where(StaffMember.email == address)) if address else None
    if staff is None:
        passwords.verify_dummy(password)  # the time a real check takes: no email enumeration by timing
        return None
    ok, rehashed = passwords.verify(password, staff.password_hash)  # checked in every case, for the same timing
    now = utcnow()
    if not staff.active or (staff.locked_until is not None and staff.locked_until > now):
        return None
    if not ok:
        record_failure(session, staff.id, settings)
        return None
    staff.failed_logins, staff.locked_until, staff.last_login_at = 0, None, now
    if rehashed is not None:  # the library's parameters moved on: the hash follows at this login
        staff.password_hash = rehashed
    token = secrets.token_urlsafe(32)
    row = StaffSession(id=new_id(), token_hash=hash_token(token), staff_id=staff.id, created_at=now,
                       last_seen_at=now, expires_at=now + timedelta(seconds=settings.session_ttl_s))
    session.add(row)
    session.flush()
    jobs.enqueue(session, PRUNE_SESSIONS_JOB, delay_s=3600, unique_key=PRUNE_SESSIONS_JOB)  # at most one pending
    return Login(staff=staff, session=row, token=token)


def find(session: Session, token: str) -> tuple[StaffSession, StaffMember] | None:
    """The session of ``token`` and its account, ended or not; None for a token no session has."""
    row = session.execute(
        select(StaffSession, StaffMember).join(StaffMember, StaffMember.id == StaffSession.staff_id)
        .where(StaffSession.token_hash == hash_token(token))
    ).first()
    return (row[0], row[1]) if row is not None else None


def authenticate(session: Session, token: str, settings: StaffSettings) -> tuple[StaffSession, StaffMember]:
    """The live session of ``token`` and its active account, or 401 (``session_expired`` for an ended one)."""
    found = find(session, token)
    if found is None:
        raise Unauthorized("not logged in (no such session): log in with POST /api/v1/session")
    row, staff = found
    if not staff.active:
        raise Unauthorized("this staff account is disabled")
    now = utcnow()
    if row.expires_at <= now or row.last_seen_at + timedelta(seconds=settings.idle_timeout_s) <= now:
        raise Unauthorized("the session has ended: log in again", code="session_expired")
    return row, staff


def needs_touch(row: StaffSession) -> bool:
    return row.last_seen_at + TOUCH_EVERY <= utcnow()


def touch(db: Database, session_id: str) -> None:
    """Note that the session was used now (after the response, in a transaction of its own)."""
    with db.transaction() as session:
        session.execute(update(StaffSession).where(StaffSession.id == session_id)
                        .values(last_seen_at=utcnow()).execution_options(synchronize_session=False))


def logout(session: Session, session_id: str) -> None:
    """End one session."""
    row = session.get(StaffSession, session_id)
    if row is not None:
        session.delete(row)
        session.flush()


def ends_at(row: StaffSession, settings: StaffSettings) -> datetime:
    """When the session ends if it stays idle from now on (or at its fixed end, whichever comes first)."""
    return min(row.expires_at, utcnow() + timedelta(seconds=settings.idle_timeout_s))
