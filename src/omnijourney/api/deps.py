"""Dependencies shared by every router: the transaction and the permission check."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

import orjson
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from omnijourney.auth.service import Principal, authenticate, check
from omnijourney.config import Settings
from omnijourney.core.text import NUL, nul_error, nul_path
from omnijourney.db import Database


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
    """Who is calling, from ``Authorization: Bearer <key>``, read on every request: one probe of the unique index
    of key hashes, so a revoked key stops working at once in every server process (no per-process cache)."""
    key = _bearer(request)
    with request.app.state.db.transaction(write=False) as session:
        return authenticate(session, key)


async def reject_nul(request: Request) -> None:
    """Answer 422 naming the field when a path or query parameter, or any string (or key) of a JSON body, holds the
    NUL character: PostgreSQL cannot store it, and one check here spares every schema and route its own."""
    for name, value in request.path_params.items():
        if isinstance(value, str) and NUL in value:
            raise nul_error(name)
    for name, value in request.query_params.multi_items():
        if NUL in value:
            raise nul_error(name)
    body = await request.body()  # FastAPI has read it already for routes with a body: cached, no second read
    # JSON carries NUL only as the escape \u0000 (a raw control character is invalid JSON, refused upstream), so
    # bodies without those six bytes, nearly all, are not decoded again
    if b"\\u0000" in body:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return  # not JSON: the route's own validation answers
        path = nul_path(data)
        if path is not None:
            raise nul_error(".".join(map(str, path)) or "body")


def require(scope: str) -> Callable[..., Principal]:
    """A dependency that admits callers whose key grants ``scope`` (401 without key, 403 without scope).

    Every ``/api/v1`` route takes it, so it also refuses text no database can store (:func:`reject_nul`), after
    the permission check: a caller without the scope learns nothing about its input."""

    async def dependency(request: Request, principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        check(principal, scope)
        await reject_nul(request)
        return principal

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency
