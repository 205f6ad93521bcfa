"""Dependencies shared by every router: the transaction, who is calling (an API key or a staff session) and the
permission check."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs

import orjson
from fastapi import BackgroundTasks, Depends, Request
from sqlalchemy.orm import Session

from omnijourney.auth import sessions
from omnijourney.auth.models import StaffMember, StaffSession
from omnijourney.auth.service import Principal, authenticate_key, check
from omnijourney.config import Settings
from omnijourney.core.errors import Forbidden, Unauthorized
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


async def submitted_csrf(request: Request) -> str | None:
    """The CSRF token sent with an unsafe request that may be authenticated by the session cookie: the
    ``X-CSRF-Token`` header, else the ``csrf_token`` field of a form body. None when not needed or not sent."""
    if request.method not in sessions.UNSAFE_METHODS or _bearer(request) or sessions.COOKIE not in request.cookies:
        return None
    header = request.headers.get(sessions.CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return None
    try:
        value = (await request.form()).get(sessions.CSRF_FIELD)  # cached: a route's own Form fields read it too
    except Exception:  # no python-multipart, or a body that is no form: read a plain urlencoded body ourselves
        if content_type != "application/x-www-form-urlencoded":
            return None
        try:
            value = next(iter(parse_qs((await request.body()).decode()).get(sessions.CSRF_FIELD, [])), None)
        except Exception:
            return None
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Caller:
    """Who is calling and through what: ``staff`` and ``session`` for a person logged in with the cookie."""

    principal: Principal
    staff: StaffMember | None = None
    session: StaffSession | None = None
    token: str | None = None  # the session cookie's value

    @property
    def csrf_token(self) -> str | None:
        return sessions.csrf_token(self.token) if self.token else None


def current_caller(request: Request, csrf: Annotated[str | None, Depends(submitted_csrf)],
                   background: BackgroundTasks) -> Caller:
    """Who is calling, read on every request: ``Authorization: Bearer <key>`` (one probe of the unique index of key
    hashes, so a revoked key stops working at once in every server process), else the session cookie of a
    logged-in staff member (its CSRF token checked on unsafe methods). 401 without either. A forced password
    change is not enforced here (:func:`current_principal` does): the session routes need this."""
    key = _bearer(request)
    token = request.cookies.get(sessions.COOKIE)
    db = request.app.state.db
    if key is None and token:
        with db.transaction(write=False) as session:
            row, staff = sessions.authenticate(session, token, request.app.state.settings.staff)
        if request.method in sessions.UNSAFE_METHODS:
            sessions.check_csrf(token, csrf)
        if sessions.needs_touch(row):  # idle timeout: written after the response, at most once a minute
            background.add_task(sessions.touch, db, row.id)
        caller = Caller(sessions.principal_of(staff), staff=staff, session=row, token=token)
    else:
        if key is None:
            raise Unauthorized("missing API key or session: send 'Authorization: Bearer <key>', or log in with "
                               "POST /api/v1/session")
        caller = Caller(authenticate_key(db, key))
    request.state.principal = caller.principal  # for pages: who is logged in, and the token their forms carry
    request.state.csrf_token = caller.csrf_token
    return caller


CallerDep = Annotated[Caller, Depends(current_caller)]


async def current_principal(caller: CallerDep) -> Principal:
    """Who is calling (:func:`current_caller`); 403 ``password_change_required`` for a person who logged in with a
    one-time password until they change it (``POST /api/v1/session/password``)."""
    if caller.staff is not None and caller.staff.must_change_password:
        raise Forbidden("change your one-time password first: POST /api/v1/session/password",
                        code="password_change_required")
    return caller.principal


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
    """A dependency that admits callers whose key or role grants ``scope`` (401 without key or session, 403 without
    the scope).

    Every ``/api/v1`` route takes it, so it also refuses text no database can store (:func:`reject_nul`), after
    the permission check: a caller without the scope learns nothing about its input."""

    async def dependency(request: Request, principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        check(principal, scope)
        await reject_nul(request)
        return principal

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency
