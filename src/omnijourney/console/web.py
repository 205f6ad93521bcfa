"""What every console page shares: the templates, who is looking, the navigation by role, the permission check,
reading what a person typed, and error pages instead of JSON.

Pages ask the same question of a person as the API does (``auth.roles``: a role's scopes): the navigation shows a
link only to those whose scopes open it, and the route refuses the others with a 403 page. Not logged in: a
redirect to the login page (back to the page after it); a one-time password not yet changed: a redirect to the
password page. Every answer is HTML with a strict Content-Security-Policy (our own scripts only, no inline script).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from omnijourney.api.deps import Caller, CallerDep, current_principal
from omnijourney.auth.service import Principal, check
from omnijourney.core.errors import Forbidden, Invalid, OmniError
from omnijourney.core.text import NUL, nul_error

PREFIX = "/console"
HERE = Path(__file__).parent
MAX_INPUT = 200  # characters of a search box or a code: more is a typing accident, not a query

SECURITY_HEADERS = {
    # our own scripts and styles only (Plotly injects its own <style> elements, hence 'unsafe-inline' for styles);
    # JSON data blocks are not scripts, so no inline script is ever needed
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                "img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
                                "frame-ancestors 'none'; form-action 'self'"),
    "Cache-Control": "no-store",  # pages hold personal data: never kept by a shared or back-button cache
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str
    scope: str | None  # None: anyone logged in


@dataclass(frozen=True)
class NavSection:
    title: str
    items: tuple[NavItem, ...]


NAV: tuple[NavSection, ...] = (
    NavSection("", (NavItem("Overview", PREFIX, None),)),
    NavSection("Customers", (NavItem("Find a customer", f"{PREFIX}/customers", "customers:read"),)),
    NavSection("Catalog and prices", (
        NavItem("Products", f"{PREFIX}/catalog/products", "catalog:read"),
        NavItem("Price quote", f"{PREFIX}/pricing/quote", "pricing:read"),
        NavItem("Price consistency", f"{PREFIX}/pricing/consistency", "pricing:read"),
    )),
    NavSection("Inventory and orders", (
        NavItem("Availability", f"{PREFIX}/inventory/availability", "inventory:read"),
        NavItem("Stock movements", f"{PREFIX}/inventory/movements", "inventory:read"),
        NavItem("Orders", f"{PREFIX}/orders", "orders:read"),
        NavItem("Pickup queue", f"{PREFIX}/pickups", "orders:read"),
        NavItem("Returns", f"{PREFIX}/returns", "orders:write"),
    )),
    NavSection("Analytics", (
        NavItem("KPI dashboard", f"{PREFIX}/analytics", "analytics:read"),
        NavItem("Journey map", f"{PREFIX}/analytics/journey-map", "analytics:read"),
        NavItem("Funnel", f"{PREFIX}/analytics/funnel", "analytics:read"),
        NavItem("Channel paths", f"{PREFIX}/analytics/paths", "analytics:read"),
        NavItem("Retention", f"{PREFIX}/analytics/retention", "analytics:read"),
        NavItem("Attribution", f"{PREFIX}/analytics/attribution", "analytics:read"),
        NavItem("Customer value", f"{PREFIX}/analytics/clv", "analytics:read"),
    )),
)

ROLE_NAMES = {"admin": "Administrator", "marketer": "Marketer", "analyst": "Analyst", "agent": "Contact center agent",
              "store_associate": "Store associate"}


def navigation(principal: Principal, current: str) -> list[dict[str, Any]]:
    """The sections and links ``principal`` may open; ``current`` marks the link of the page shown."""
    best = max((i.path for s in NAV for i in s.items if current == i.path or current.startswith(i.path + "/")),
               key=len, default=None)
    out = []
    for section in NAV:
        items = [{"label": i.label, "path": i.path, "current": i.path == best}
                 for i in section.items if i.scope is None or principal.allows(i.scope)]
        if items:
            out.append({"title": section.title, "items": items})
    return out


# ---------------------------------------------------------------- formatting, for the templates

def when(value: datetime | str | None) -> str:
    """A moment as people read it, in UTC (``2026-03-01 12:00 UTC``)."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    return value.strftime("%Y-%m-%d %H:%M UTC")


def iso(value: datetime | str | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else value.isoformat()


def money(amount: Decimal | str | float | None, currency: str | None = None) -> str:
    if amount is None or amount == "":
        return "—"
    value = Decimal(str(amount)).quantize(Decimal("0.01"))
    return f"{value:,} {currency}" if currency else f"{value:,}"


def label(value: str | None) -> str:
    """``ready_for_pickup`` -> ``ready for pickup``."""
    return (value or "").replace("_", " ")


def customer_name(traits: dict[str, Any] | None) -> str:
    traits = traits or {}
    first, last = traits.get("first_name"), traits.get("last_name")
    name = " ".join(str(p) for p in (first, last) if p) or traits.get("name")
    return str(name) if name else ""


def pct(value: float | Decimal | None) -> str:
    return "—" if value is None else f"{float(value) * 100:.0f} %"


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,  # a misspelt variable fails the tests instead of rendering nothing
    trim_blocks=True, lstrip_blocks=True,
)
_env.filters.update(when=when, iso=iso, money=money, label=label, customer_name=customer_name, pct=pct)
_env.globals.update(PREFIX=PREFIX, urlencode=urlencode, quote=quote)


def _stage(event: str) -> str | None:
    from omnijourney.tracking.spec import journey_stage

    return journey_stage(event)


_env.globals["stage"] = _stage


def static_version() -> str:
    """Changes when our static files do, so browsers may keep them long but never stale."""
    newest = max((p.stat().st_mtime_ns for p in (HERE / "static").iterdir()), default=0)
    return format(newest, "x")


_env.globals["STATIC_V"] = static_version()


# ---------------------------------------------------------------- rendering

def render(request: Request, template: str, *, status: int = 200, title: str = "",
           headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
    """The page ``template`` with the frame: who is logged in, their navigation, the logout form's token."""
    principal: Principal | None = getattr(request.state, "principal", None)
    staff = getattr(request.state, "console_staff", None)
    frame = {
        "request": request, "title": title, "principal": principal, "staff": staff,
        "role_name": ROLE_NAMES.get(principal.role or "", "API key") if principal else "",
        "csrf_token": getattr(request.state, "csrf_token", None) or "",
        "nav": navigation(principal, request.url.path) if principal is not None else [],
        "can": (lambda scope: principal is not None and principal.allows(scope)),
        "flash": None,
    }
    body = _env.get_template(template).render({**frame, **context})
    return HTMLResponse(body, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


def error_page(request: Request, status: int, title: str, message: str, code: str,
               field: str | None = None) -> HTMLResponse:
    return render(request, "error.html", status=status, title=title, message=message, code=code, field=field)


def login_redirect(request: Request, reason: str | None = None) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    params = {"next": target} if request.method == "GET" and target != PREFIX else {}
    if reason:
        params["reason"] = reason
    return RedirectResponse(f"{PREFIX}/login" + (f"?{urlencode(params)}" if params else ""), status_code=303)


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a console or POS path only (never another site: no open redirect)."""
    pos = value == "/pos" or value.startswith(("/pos/", "/pos?")) if value else False
    if value and (value.startswith(PREFIX) or pos) and not value.startswith("//") and "\\" not in value \
            and "\n" not in value and "\r" not in value:
        return value
    return PREFIX


def is_console(request: Request) -> bool:
    path = request.url.path
    return path == PREFIX or path.startswith(PREFIX + "/")


_TITLES = {400: "Bad request", 401: "Not logged in", 403: "Not allowed", 404: "Not found", 405: "Not allowed here",
           409: "Cannot do that now", 422: "Check what you typed", 429: "Too busy"}


def on_error(request: Request, exc: OmniError) -> Response:
    """A domain error on a console page, as a page (JSON stays the API's answer)."""
    if exc.status == 401:
        return login_redirect(request, exc.code if exc.code == "session_expired" else None)
    if exc.code == "password_change_required":
        return RedirectResponse(f"{PREFIX}/password", status_code=303)
    message = exc.message
    if exc.code == "csrf_failed":
        message = ("This form was sent without its security token, perhaps from a page opened before you logged in "
                   "again. Go back, reload the page and send it again.")
    elif exc.code == "missing_scope":
        message = f"Your role does not open this page ({exc.message})."
    return error_page(request, exc.status, _TITLES.get(exc.status, "Something went wrong"), message, exc.code,
                      exc.field)


def on_validation_error(request: Request, errors: Iterable[dict[str, Any]]) -> Response:
    listed = [f"{'.'.join(str(p) for p in e.get('loc', ()) if p not in ('query', 'path', 'body'))}: {e.get('msg')}"
              for e in errors]
    return error_page(request, 422, _TITLES[422], "; ".join(listed) or "invalid request", "invalid")


def on_http_error(request: Request, status: int, detail: str) -> Response:
    message = {404: "There is no page at this address in the console.",
               405: "This address does not answer that kind of request."}.get(status, detail)
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, f"http_{status}")
    return error_page(request, status, _TITLES.get(status, "Error"), message, code)


# ---------------------------------------------------------------- who is looking

def _console_caller(request: Request, caller: CallerDep) -> Caller:
    request.state.console_staff = caller.staff
    return caller


def _reject_nul(request: Request) -> None:
    """422 naming the parameter that holds NUL (PostgreSQL cannot store it); form fields: :func:`form_fields`."""
    for name, value in [*request.path_params.items(), *request.query_params.multi_items()]:
        if isinstance(value, str) and NUL in value:
            raise nul_error(name)


def viewer(scope: str | None = None) -> Callable[..., Principal]:
    """A dependency: the logged-in person (or API key) if their scopes include ``scope`` (None: anyone logged in);
    a 403 page otherwise. The same check as the API's ``require``."""

    async def dependency(request: Request, caller: Annotated[Caller, Depends(_console_caller)],
                         principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if scope is not None:
            check(principal, scope)
        _reject_nul(request)  # after the check, as the API's ``require``: text no database can store
        return principal

    dependency.__name__ = f"console_{(scope or 'any').replace(':', '_')}"
    return dependency


async def staff_only(request: Request, caller: Annotated[Caller, Depends(_console_caller)]) -> Caller:
    """The caller if it is a person logged in with the session cookie (a forced password change allowed)."""
    if caller.staff is None or caller.session is None:
        raise Forbidden("an API key has no password: log in as a person to change one", code="not_staff")
    return caller


# ---------------------------------------------------------------- what people typed

def text(value: str | None, field: str, *, max_len: int = MAX_INPUT) -> str | None:
    """A trimmed text input, None when empty; ``Invalid`` on ``field`` when too long or holding NUL."""
    if value is None:
        return None
    value = value.strip()
    if NUL in value:
        raise Invalid(f"{field} contains the NUL character, which text cannot hold", field=field)
    if len(value) > max_len:
        raise Invalid(f"at most {max_len} characters", field=field)
    return value or None


def query(request: Request, name: str, *, max_len: int = MAX_INPUT) -> str | None:
    return text(request.query_params.get(name), name, max_len=max_len)


def whole(value: str | None, field: str, *, low: int = 1, high: int = 999) -> int:
    """A whole number typed in a form, within ``low``..``high``."""
    try:
        number = int((value or "").strip())
    except ValueError:
        raise Invalid(f"a whole number from {low} to {high}", field=field) from None
    if not low <= number <= high:
        raise Invalid(f"a whole number from {low} to {high}", field=field)
    return number


async def form_fields(request: Request) -> dict[str, str]:
    """The text fields of a submitted form (files ignored); NUL refused as the API refuses it."""
    try:
        form = await request.form()
    except Exception:  # a body that is no form: nothing was typed in one
        return {}
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    for name, value in fields.items():
        if NUL in value or NUL in name:
            raise Invalid(f"{name} contains the NUL character, which text cannot hold", field=name)
    return fields


class Errors(dict[str, str]):
    """Error messages by field, shown next to each control (``_`` for the form as a whole)."""

    def add(self, exc: OmniError, fields: Iterable[str] = ()) -> None:
        known = set(fields)
        name = exc.field if exc.field in known or not known else "_"
        self[name or "_"] = exc.message


def store_locations(session: Any, store: str) -> list[str]:
    """The location codes of a store channel (its shelf: where its pickups wait)."""
    from sqlalchemy import select

    from omnijourney.inventory.models import Location

    return list(session.scalars(select(Location.code).where(Location.channel_code == store)))


def _plotly_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("plotly")
    except PackageNotFoundError:
        return "0"


_env.globals["PLOTLY_V"] = _plotly_version()
