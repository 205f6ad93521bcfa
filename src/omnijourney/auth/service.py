"""Creating and checking server API keys.

Keys are 32 random bytes, so a SHA-256 hash is enough to store them (no slow KDF needed: nobody
can guess a 256-bit secret). A principal is what every permission check looks at; staff logins
will produce principals too.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from omnijourney.auth.models import ApiKey
from omnijourney.core.errors import Forbidden, Invalid, Unauthorized
from omnijourney.core.ids import new_id
from omnijourney.core.time import utcnow

AREAS = (
    "customers", "events", "sources", "keys", "catalog", "pricing", "carts", "inventory", "orders",
    "loyalty", "conversations", "journeys", "analytics", "audit", "payments",
)
_SCOPE = re.compile(r"^(?P<area>[a-z_]+):(?P<level>read|write)$")
KEY_PREFIX = "omk_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a server key today, a staff member later."""

    kind: str
    id: str
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        """``admin`` grants all; ``area:write`` implies ``area:read``."""
        if "admin" in self.scopes or scope in self.scopes:
            return True
        area, _, level = scope.partition(":")
        return level == "read" and f"{area}:write" in self.scopes


def validate_scope(scope: str) -> str:
    if scope == "admin":
        return scope
    m = _SCOPE.match(scope)
    if not m or m["area"] not in AREAS:
        raise Invalid(
            f"unknown scope {scope!r}: use 'admin' or '<area>:read|write' with area one of {', '.join(AREAS)}",
            field="scope",
        )
    return scope


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, *, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the plaintext key, which is shown once and never stored."""
    if not name.strip():
        raise Invalid("a key needs a name", field="name")
    if not scopes:
        raise Invalid("a key needs at least one scope", field="scope")
    checked = sorted({validate_scope(s) for s in scopes})
    plain = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(id=new_id(), name=name.strip(), prefix=plain[:12], key_hash=hash_key(plain), scopes=checked,
                 created_at=utcnow())
    session.add(row)
    session.flush()
    return row, plain


def authenticate(session: Session, key: str | None) -> Principal:
    """The principal for a bearer key, or ``Unauthorized``."""
    if not key:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    if row is None or row.revoked_at is not None:
        raise Unauthorized("invalid or revoked API key")
    return Principal(kind="key", id=row.id, name=row.name, scopes=frozenset(row.scopes))


def check(principal: Principal, scope: str) -> None:
    if not principal.allows(scope):
        raise Forbidden(f"this key lacks the scope {scope!r}", code="missing_scope")


def revoke_key(session: Session, *, key_id: str) -> None:
    row = session.get(ApiKey, key_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
