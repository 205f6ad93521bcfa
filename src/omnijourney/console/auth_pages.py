"""Logging in and out of the console, the forced password change, and the overview page.

The login is a form route of its own (no JavaScript needed), protected against login CSRF by a double-submit token:
the login page sets a random token in a SameSite=Strict cookie scoped to the login path and the same token in a
hidden field; a login whose field and cookie differ (another site cannot read or set the cookie) is refused. It
then opens the same session as ``POST /api/v1/session`` (``auth.sessions``): the session cookie, its CSRF token in
every later form, the lockout after failed attempts, one answer for every failure.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, select

from omnijourney.api.deps import Caller, DatabaseDep, SessionDep, SettingsDep, _bearer
from omnijourney.auth import sessions, staff
from omnijourney.auth.service import Principal
from omnijourney.console.web import (
    PREFIX,
    Errors,
    form_fields,
    render,
    safe_next,
    staff_only,
    store_locations,
    viewer,
)
from omnijourney.core.errors import Invalid, OmniError
from omnijourney.orders.models import Order

router = APIRouter(prefix=PREFIX, include_in_schema=False)

LOGIN_COOKIE = "omni_login_csrf"
LOGIN_PATH = f"{PREFIX}/login"
NOTICES = {"logged_out": "You are logged out.", "session_expired": "Your session has ended: log in again.",
           "password_changed": "Your password was changed; your other sessions have ended."}

Fields = Annotated[dict[str, str], Depends(form_fields)]


def _live_session(request: Request, db: DatabaseDep, settings: SettingsDep) -> bool:
    """Whether the browser holds a working session already (the login page then sends it on)."""
    token = request.cookies.get(sessions.COOKIE)
    if not token:
        return False
    with db.transaction(write=False) as session:
        try:
            _, member = sessions.authenticate(session, token, settings.staff)
        except OmniError:
            return False
    return not member.must_change_password


def _login_page(request: Request, settings: SettingsDep, *, status: int = 200, errors: Errors | None = None,
                email: str = "", next_path: str = PREFIX, notice: str | None = None) -> Response:
    token = secrets.token_urlsafe(24)
    page = render(request, "login.html", status=status, title="Log in", errors=errors or Errors(), email=email,
                  next=next_path, login_csrf=token, notice=notice)
    options = sessions.cookie_options(settings.public_url, request.url.scheme)
    options.update(samesite="strict", path=LOGIN_PATH)
    page.set_cookie(LOGIN_COOKIE, token, max_age=3600, **options)  # type: ignore[arg-type]
    return page


@router.get("/login")
def login_page(request: Request, db: DatabaseDep, settings: SettingsDep) -> Response:
    """The login form (a logged-in browser goes on to the console)."""
    next_path = safe_next(request.query_params.get("next"))
    if _live_session(request, db, settings):
        return RedirectResponse(next_path, status_code=303)
    return _login_page(request, settings, next_path=next_path, notice=NOTICES.get(request.query_params.get("reason",
                                                                                                             "")))


@router.post("/login")
def login(request: Request, fields: Fields, db: DatabaseDep, settings: SettingsDep) -> Response:
    """Check the login token, then the email and password; on success the session cookie and the console."""
    email = fields.get("email", "").strip()
    password = fields.get("password", "")
    next_path = safe_next(fields.get("next"))
    errors = Errors()
    sent, kept = fields.get("login_csrf", ""), request.cookies.get(LOGIN_COOKIE, "")
    if not sent or not kept or not hmac.compare_digest(sent.encode(), kept.encode()):
        errors["_"] = ("The login form had expired or came from another page. It is loaded anew: log in again.")
        return _login_page(request, settings, status=403, errors=errors, email=email[:320], next_path=next_path)
    if not email:
        errors["email"] = "Give the email of your staff account."
    if not password:
        errors["password"] = "Give your password."
    if errors:
        return _login_page(request, settings, status=422, errors=errors, email=email[:320], next_path=next_path)
    previous = request.cookies.get(sessions.COOKIE)
    with db.transaction() as session:
        done = sessions.login(session, email=email[:320], password=password[:1024], settings=settings.staff)
        if done is not None and previous:
            found = sessions.find(session, previous)
            if found is not None:  # logging in again in the same browser replaces the old session
                sessions.logout(session, found[0].id)
    if done is None:  # committed first: the failed attempt is counted
        errors["_"] = sessions.LOGIN_FAILED[0].upper() + sessions.LOGIN_FAILED[1:] + "."
        return _login_page(request, settings, status=401, errors=errors, email=email[:320], next_path=next_path)
    target = f"{PREFIX}/password" if done.staff.must_change_password else next_path
    answer = RedirectResponse(target, status_code=303)
    answer.set_cookie(sessions.COOKIE, done.token, max_age=int(settings.staff.session_ttl_s),
                      **sessions.cookie_options(settings.public_url, request.url.scheme))  # type: ignore[arg-type]
    answer.delete_cookie(LOGIN_COOKIE, path=LOGIN_PATH)
    return answer


@router.post("/logout")
def logout(request: Request, fields: Fields, db: DatabaseDep) -> Response:
    """End the session (with its CSRF token, so that another site cannot log anyone out) and clear the cookie."""
    token = request.cookies.get(sessions.COOKIE)
    if token and _bearer(request) is None:
        with db.transaction() as session:
            found = sessions.find(session, token)
            if found is not None:
                sessions.check_csrf(token, fields.get(sessions.CSRF_FIELD))
                sessions.logout(session, found[0].id)
    answer = RedirectResponse(f"{LOGIN_PATH}?reason=logged_out", status_code=303)
    answer.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="lax")
    return answer


@router.get("/password")
def password_page(request: Request, caller: Annotated[Caller, Depends(staff_only)]) -> Response:
    assert caller.staff is not None
    forced = caller.staff.must_change_password
    return render(request, "password.html", title="Change your password", errors=Errors(), forced=forced,
                  done=False)


@router.post("/password")
def change_password(request: Request, caller: Annotated[Caller, Depends(staff_only)], fields: Fields,
                    db: DatabaseDep, settings: SettingsDep) -> Response:
    """Change the password (the one-time password first of all); errors next to their field."""
    assert caller.staff is not None and caller.session is not None
    forced = caller.staff.must_change_password
    current, new = fields.get("current_password", ""), fields.get("new_password", "")
    errors = Errors()
    if not current:
        errors["current_password"] = "Give your current password."
    if not new:
        errors["new_password"] = "Choose a new password."
    elif new != fields.get("new_password_again", ""):
        errors["new_password_again"] = "The two new passwords differ."
    if not errors:
        try:
            with db.transaction() as session:
                staff.change_password(session, staff_id=caller.staff.id, current=current[:1024], new=new[:1024],
                                      keep_session=caller.session.id)
        except Invalid as exc:
            if exc.code == "wrong_password":
                with db.transaction() as session:
                    sessions.record_failure(session, caller.staff.id, settings.staff)
            errors.add(exc, ("current_password", "new_password"))
        except OmniError as exc:
            errors.add(exc)
    if errors:
        status = 422
        return render(request, "password.html", status=status, title="Change your password", errors=errors,
                      forced=forced, done=False)
    return RedirectResponse(f"{PREFIX}?done=password_changed", status_code=303)


@router.get("")
def home(request: Request, session: SessionDep, who: Annotated[Principal, Depends(viewer())]) -> Response:
    """The overview: what the role opens, a customer search and, for a store, its pickup queue."""
    pickups = None
    if who.stores and who.allows("orders:read"):
        store = sorted(who.stores)[0]
        counts = dict(session.execute(
            select(Order.status, func.count()).where(Order.pickup_location.in_(store_locations(session, store)),
                                                     Order.fulfilment.in_(("pickup", "reserve_in_store")),
                                                     Order.status.in_(("paid", "allocated", "picked",
                                                                       "ready_for_pickup")))
            .group_by(Order.status)).all())
        pickups = {"store": store, "ready": counts.get("ready_for_pickup", 0),
                   "prepare": sum(n for s, n in counts.items() if s != "ready_for_pickup")}
    return render(request, "home.html", title="Overview", pickups=pickups,
                  flash=NOTICES.get(request.query_params.get("done", "")))

