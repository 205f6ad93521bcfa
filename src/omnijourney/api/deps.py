"""Dependencies shared by every router: the transaction and the permission check."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from omnijourney.auth.service import Principal, authenticate, check, hash_key
from omnijourney.config import Settings
from omnijourney.db import Database

_KEY_TTL_S = 10.0  # a revoked key stops working within this many seconds


def get_db(request: Request) -> Database:
    return request.app.state.db


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def _session(request: Request) -> Iterator[Session]:
    """One transaction per request, committed before the response is sent."""
    write = request.method not in ("GET", "HEAD", "OPTIONS")
    with request.app.state.db.transaction(write=write) as session:
        yield session


SessionDep = Annotated[Session, Depends(_session, scope="function")]
DatabaseDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def current_principal(request: Request) -> Principal:
    """Who is calling, from ``Authorization: Bearer <key>`` (cached briefly per process)."""
    key = _bearer(request)
    cache: dict[str, tuple[float, Principal]] = request.app.state.key_cache
    if key:
        hit = cache.get(hash_key(key))
        if hit and hit[0] > time.monotonic():
            return hit[1]
    with request.app.state.db.transaction(write=False) as session:
        principal = authenticate(session, key)
    assert key is not None
    cache[hash_key(key)] = (time.monotonic() + _KEY_TTL_S, principal)
    return principal


def require(scope: str) -> Callable[..., Principal]:
    """A dependency that admits callers whose key grants ``scope`` (401 without key, 403 without scope)."""

    def dependency(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        check(principal, scope)
        return principal

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency
