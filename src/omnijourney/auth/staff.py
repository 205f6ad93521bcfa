"""Staff accounts: add, list, reset, disable and enable them, change a password.

Plain functions over a session (flush, never commit). A new account, and an account whose password is reset,
gets a random one-time password that is returned once to be shown to its owner; the account must change it at
its first login (``must_change_password``) unless created otherwise (the demo). No default password exists.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from omnijourney.auth import passwords
from omnijourney.auth.models import StaffMember, StaffSession
from omnijourney.auth.roles import STORE_SCOPED, validate_role
from omnijourney.core.errors import Conflict, Invalid, NotFound
from omnijourney.core.ids import new_id
from omnijourney.core.time import utcnow

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def normalise_email(email: str) -> str:
    """The form an email is stored and looked up in: NFKC, trimmed, lower-case (``Ann@Shop.example `` and
    ``ann@shop.example`` are one account). ``Invalid`` on ``email`` when it is no address."""
    value = unicodedata.normalize("NFKC", email).strip().lower()
    if len(value) > 320 or not _EMAIL.match(value):
        raise Invalid(f"{email.strip()!r} is not an email address", field="email")
    return value


def _store_codes(session: Session, role: str, stores: Iterable[str]) -> list[str]:
    from omnijourney.catalog.channels import list_channels

    codes = sorted({s.strip() for s in stores if s.strip()})
    if role not in STORE_SCOPED:
        if codes:
            raise Invalid(f"only a store associate works in given stores; a {role} works in all", field="store")
        return []
    if not codes:
        raise Invalid("a store associate needs at least one store (a store channel's code)", field="store")
    known = {c.code for c in list_channels(session, type="store")}
    unknown = [c for c in codes if c not in known]
    if unknown:
        listed = ", ".join(sorted(known)) or "none yet"
        raise Invalid(f"{', '.join(unknown)} is not a store channel (store channels: {listed})", field="store")
    return codes


def get_by_email(session: Session, email: str) -> StaffMember:
    """The account of ``email`` (any case), or ``NotFound``."""
    row = session.scalar(select(StaffMember).where(StaffMember.email == normalise_email(email)))
    if row is None:
        raise NotFound(f"no staff account {email.strip()!r}", field="email")
    return row


def list_staff(session: Session) -> list[StaffMember]:
    """Every account, by email."""
    return list(session.scalars(select(StaffMember).order_by(StaffMember.email)))


def add_staff(session: Session, *, email: str, role: str, stores: Iterable[str] = (), name: str | None = None,
              must_change_password: bool = True) -> tuple[StaffMember, str]:
    """Create an account; returns it and its one-time password (shown once, never stored). ``Invalid`` for an
    unknown role or a store code that is not a store channel's, ``Conflict`` when the email has an account."""
    address = normalise_email(email)
    validate_role(role)
    codes = _store_codes(session, role, stores)
    shown = (name or "").strip() or address.partition("@")[0]
    if len(shown) > 200:
        raise Invalid("a name has at most 200 characters", field="name")
    if session.scalar(select(StaffMember.id).where(StaffMember.email == address)) is not None:
        raise Conflict(f"{address} has a staff account already", field="email", code="staff_exists")
    plain = passwords.one_time_password()
    now = utcnow()
    row = StaffMember(id=new_id(), email=address, name=shown, role=role, stores=codes,
                      password_hash=passwords.hash_password(plain), must_change_password=must_change_password,
                      active=True, failed_logins=0, locked_until=None, last_login_at=None,
                      password_changed_at=now, created_at=now, updated_at=now)
    session.add(row)
    session.flush()
    return row, plain


def end_sessions(session: Session, staff_id: str, *, keep: str | None = None) -> None:
    """Log the account out everywhere (but the session ``keep``)."""
    stmt = delete(StaffSession).where(StaffSession.staff_id == staff_id)
    if keep is not None:
        stmt = stmt.where(StaffSession.id != keep)
    session.execute(stmt)


def reset_password(session: Session, *, email: str, must_change_password: bool = True) -> tuple[StaffMember, str]:
    """A new one-time password (returned once) for the account, to be changed at the next login; unlocks it and
    ends its sessions. ``NotFound`` for an unknown email."""
    row = get_by_email(session, email)
    plain = passwords.one_time_password()
    now = utcnow()
    row.password_hash = passwords.hash_password(plain)
    row.must_change_password = must_change_password
    row.failed_logins, row.locked_until = 0, None
    row.password_changed_at = row.updated_at = now
    end_sessions(session, row.id)
    session.flush()
    return row, plain


def set_active(session: Session, *, email: str, active: bool) -> StaffMember:
    """Disable an account (it can no longer log in; its sessions end at once) or enable it again."""
    row = get_by_email(session, email)
    row.active = active
    row.updated_at = utcnow()
    if not active:
        end_sessions(session, row.id)
    session.flush()
    return row


def change_password(session: Session, *, staff_id: str, current: str, new: str,
                    keep_session: str | None = None) -> StaffMember:
    """Replace the password after checking the current one (the one-time password included); ends the account's
    other sessions. ``Invalid`` on ``current_password`` when it is wrong, on ``new_password`` when weak."""
    row = session.get(StaffMember, staff_id)
    if row is None or not row.active:
        raise NotFound("no such staff account", field="staff_id")
    ok, _ = passwords.verify(current, row.password_hash)
    if not ok:
        raise Invalid("the current password is wrong", field="current_password", code="wrong_password")
    passwords.check_new_password(new, email=row.email, current=current)
    now = utcnow()
    row.password_hash = passwords.hash_password(new)
    row.must_change_password = False
    row.password_changed_at = row.updated_at = now
    end_sessions(session, row.id, keep=keep_session)
    session.flush()
    return row
