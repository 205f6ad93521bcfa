"""Creating and checking server API keys.

Keys are 32 random bytes, so a SHA-256 hash is enough to store them (no slow KDF needed: nobody
can guess a 256-bit secret). A principal is what every permission check looks at: a key's, or a
staff member's from a login session (``auth.sessions``), with the scopes of their role (``auth.roles``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from omnijourney.auth.models import ApiKey
from omnijourney.core.errors import Forbidden, Invalid, Unauthorized
from omnijourney.core.ids import new_id
from omnijourney.core.time import utcnow
from omnijourney.db import Database

AREAS = (
    "customers", "events", "sources", "keys", "catalog", "pricing", "carts", "inventory", "orders",
    "loyalty", "conversations", "journeys", "analytics", "audit", "payments",
)
_SCOPE = re.compile(r"^(?P<area>[a-z_]+):(?P<level>read|write)$")
KEY_PREFIX = "omk_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a server API key (``kind="key"``) or a logged-in staff member (``kind="staff"``, with the
    ``role`` whose scopes it carries). ``stores``: the store channel codes it may act in, None for every store."""

    kind: str
    id: str
    name: str
    scopes: frozenset[str]
    stores: frozenset[str] | None = None
    role: str | None = None

    def allows(self, scope: str) -> bool:
        """``admin`` grants all; ``area:write`` implies ``area:read``."""
        if "admin" in self.scopes or scope in self.scopes:
            return True
        area, _, level = scope.partition(":")
        return level == "read" and f"{area}:write" in self.scopes

    def works_in(self, store: str | None) -> bool:
        """Whether it may act in the store channel ``store`` (a principal of every store may act anywhere)."""
        return self.stores is None or (store is not None and store in self.stores)

    def check_store(self, store: str | None, *, field: str, place: str | None = None) -> None:
        """403 ``store_not_allowed`` naming ``field`` when ``store`` (a channel or store code from the request, None
        for a place that belongs to no store, e.g. a warehouse) is not one of its stores. ``place``: what the
        request named, when that is not the store itself (a location's code)."""
        if not self.works_in(store):
            assert self.stores is not None
            where = ", ".join(sorted(self.stores)) or "no store"
            raise Forbidden(f"{field}: {self.name} works in {where} only, not at {place or store!r}", field=field,
                            code="store_not_allowed")


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


_KEY = "SELECT id, name, scopes, revoked_at FROM api_keys WHERE key_hash = %s"


def authenticate_key(db: Database, key: str | None) -> Principal:
    """:func:`authenticate` as every API request does it: one statement of its own through the driver, no ORM and
    no transaction (the request's own starts after the permission check). Read on every call, never cached, so a
    revoked key stops working at once in every server process."""
    if not key:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    row = db.lone_row(_KEY, (hash_key(key),))
    if row is None or row[3] is not None:
        raise Unauthorized("invalid or revoked API key")
    scopes = orjson.loads(row[2]) if isinstance(row[2], str | bytes) else row[2]  # SQLite: JSON as text
    return Principal(kind="key", id=row[0], name=row[1], scopes=frozenset(scopes))


def check(principal: Principal, scope: str) -> None:
    """403 ``missing_scope`` unless ``principal`` has ``scope``."""
    if not principal.allows(scope):
        who = f"the role {principal.role!r}" if principal.role else "this key"
        raise Forbidden(f"{who} lacks the scope {scope!r}", code="missing_scope")


def revoke_key(session: Session, *, key_id: str) -> None:
    row = session.get(ApiKey, key_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
