"""``/api/v1/session``: log in (a cookie and a CSRF token), who am I, change the password, log out.

See ``auth.sessions`` for the cookie, the CSRF token and the lockout. These routes take a session with a pending
password change (``current_principal`` refuses it everywhere else with 403 ``password_change_required``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from omnijourney.api.deps import Caller, CallerDep, DatabaseDep, SettingsDep, _bearer, reject_nul, submitted_csrf
from omnijourney.api.openapi import Error
from omnijourney.auth import sessions, staff
from omnijourney.auth.schemas import LoginCreate, PasswordChange, SessionRead
from omnijourney.auth.service import Principal
from omnijourney.config import Settings
from omnijourney.core.errors import Forbidden, Invalid, Unauthorized

router = APIRouter(prefix="/session", tags=["session"], dependencies=[Depends(reject_nul)])
_401 = {401: {"model": Error, "description": "401 login_failed: wrong email or password, or the account is locked "
                                            "or disabled (one answer for all); 401 session_expired"}}
_403 = {403: {"model": Error, "description": "403 csrf_failed: a cookie request without the session's CSRF token"}}


def _answer(principal: Principal, settings: Settings, *, staff_row=None, session_row=None,
            token: str | None = None) -> SessionRead:
    if staff_row is None:
        return SessionRead(kind=principal.kind, id=principal.id, name=principal.name, scopes=sorted(principal.scopes))
    return SessionRead(kind="staff", id=staff_row.id, name=staff_row.name, email=staff_row.email, role=staff_row.role,
                       scopes=sorted(principal.scopes),
                       stores=sorted(principal.stores) if principal.stores is not None else None,
                       must_change_password=staff_row.must_change_password,
                       csrf_token=sessions.csrf_token(token) if token else None,
                       expires_at=sessions.ends_at(session_row, settings.staff) if session_row is not None else None)


def _set_cookie(response: Response, request: Request, settings: Settings, token: str) -> None:
    response.set_cookie(sessions.COOKIE, token, max_age=int(settings.staff.session_ttl_s),
                        **sessions.cookie_options(settings.public_url, request.url.scheme))  # type: ignore[arg-type]


@router.post("", response_model=SessionRead, status_code=201, responses=_401)
def login(body: LoginCreate, request: Request, response: Response, db: DatabaseDep,
          settings: SettingsDep) -> SessionRead:
    """Log a staff member in: sets the session cookie (HttpOnly) and answers who they are, their role, scopes and
    stores, and the CSRF token that every change made with the cookie must carry. With ``must_change_password``
    only this router's routes answer until the password is changed. One 401 ``login_failed`` for every failure."""
    previous = request.cookies.get(sessions.COOKIE)
    with db.transaction() as session:
        done = sessions.login(session, email=body.email, password=body.password, settings=settings.staff)
        if done is not None and previous:
            found = sessions.find(session, previous)
            if found is not None:  # logging in again in the same browser replaces the old session
                sessions.logout(session, found[0].id)
    if done is None:  # committed first: the failed attempt is counted
        raise Unauthorized(sessions.LOGIN_FAILED, code="login_failed")
    _set_cookie(response, request, settings, done.token)
    return _answer(sessions.principal_of(done.staff), settings, staff_row=done.staff, session_row=done.session,
                   token=done.token)


@router.get("", response_model=SessionRead, responses=_401)
def whoami(caller: CallerDep, settings: SettingsDep) -> SessionRead:
    """Who is calling: the logged-in staff member (and the session's CSRF token), or the API key."""
    return _answer(caller.principal, settings, staff_row=caller.staff, session_row=caller.session, token=caller.token)


def staff_caller(caller: CallerDep) -> Caller:
    """The caller if it is a person logged in with the session cookie; 403 ``not_staff`` for an API key."""
    if caller.staff is None or caller.session is None:
        raise Forbidden("an API key has no password: log in as a person to change one", code="not_staff")
    return caller


@router.post("/password", response_model=SessionRead, responses={**_401, **_403})
def change_password(body: PasswordChange, caller: Annotated[Caller, Depends(staff_caller)], db: DatabaseDep,
                    settings: SettingsDep) -> SessionRead:
    """Change the logged-in staff member's password (the one-time password first of all); the account's other
    sessions end. 422 ``wrong_password`` on ``current_password`` (counted as a failed login), ``weak_password`` on
    ``new_password`` (at least 12 characters, not the email, not the current one); 403 ``not_staff`` with a key."""
    assert caller.staff is not None and caller.session is not None
    try:
        with db.transaction() as session:
            row = staff.change_password(session, staff_id=caller.staff.id, current=body.current_password,
                                        new=body.new_password, keep_session=caller.session.id)
    except Invalid as exc:
        if exc.code == "wrong_password":
            with db.transaction() as session:
                sessions.record_failure(session, caller.staff.id, settings.staff)
        raise
    return _answer(sessions.principal_of(row), settings, staff_row=row, session_row=caller.session,
                   token=caller.token)


@router.delete("", status_code=204, responses=_403)
def logout(request: Request, response: Response, db: DatabaseDep,
           csrf: Annotated[str | None, Depends(submitted_csrf)]) -> None:
    """Log out: the session ends and the cookie is cleared (the session's CSRF token is needed, so another site
    cannot log anyone out). Without a session there is nothing to end: 204 all the same."""
    token = request.cookies.get(sessions.COOKIE)
    if token and _bearer(request) is None:
        with db.transaction() as session:
            found = sessions.find(session, token)
            if found is not None:
                sessions.check_csrf(token, csrf)
                sessions.logout(session, found[0].id)
    response.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="lax")
