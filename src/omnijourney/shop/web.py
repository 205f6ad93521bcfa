"""What the demo channels share: settings, templates, the shopper's signed cookie, form tokens, and the tracking
set-up each page hands to analytics.js.

The shopper (storefront and app view) is a signed cookie per channel: a random anonymous id from the first visit,
and the customer once logged in. The cookie's path is the channel's prefix (``/shop`` or ``/app``), so one browser
holding both views is two devices, as the journey needs. The signature uses ``OMNI_SHOP_SECRET`` (random per
process without it: shoppers are logged out by a restart, their carts stay).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
import orjson
from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from omnijourney.console import web as console_web
from omnijourney.console.web import label, money, text  # noqa: F401  (one formatting and input rule for every page)
from omnijourney.core.errors import Invalid
from omnijourney.core.ids import new_id
from omnijourney.core.text import NUL
from omnijourney.shop import analytics_js
from omnijourney.tracking.models import Source

HERE = Path(__file__).parent
ASSETS = "/shop/assets"
MAX_INPUT = 200
COOKIE = "omni_shopper"
COOKIE_MAX_AGE_S = 30 * 24 * 3600


class ShopSettings(BaseSettings):
    """``OMNI_SHOP_DEMO_LOGIN``: shoppers log in by email alone (``omni demo`` turns it on; never in production);
    ``OMNI_SHOP_SECRET``: signs the shopper's cookie (set it when several server processes serve the shop)."""

    model_config = SettingsConfigDict(env_prefix="OMNI_SHOP_", extra="ignore")

    demo_login: bool = False
    secret: str | None = None


@dataclass
class ShopState:
    """Per app: the settings, the cookie secret and analytics.js (read once at start)."""

    settings: ShopSettings
    secret: bytes
    bundle: analytics_js.Bundle


def state(request: Request) -> ShopState:
    return request.app.state.shop


def new_state(settings: ShopSettings | None = None) -> ShopState:
    settings = settings or ShopSettings()
    secret = settings.secret.encode() if settings.secret else secrets.token_bytes(32)
    return ShopState(settings=settings, secret=secret, bundle=analytics_js.load())


# ---------------------------------------------------------------- the channels

@dataclass(frozen=True)
class Channel:
    """One shopper front end: the web shop or the app view."""

    prefix: str  # /shop or /app
    code: str  # the catalog channel: web or app
    kind: str  # the tracking channel (sources): web or app
    name: str


WEB = Channel("/shop", "web", "web", "Web shop")
APP = Channel("/app", "app", "app", "App")


# ---------------------------------------------------------------- formatting and templates

def when(value: Any) -> str:
    if value is None:
        return "—"
    return value.strftime("%Y-%m-%d %H:%M UTC") if hasattr(value, "strftime") else str(value)


def json_block(value: Any) -> Markup:
    """JSON for a ``<script type="application/json">`` block; nothing in it can close the block."""
    data = orjson.dumps(value).decode()
    return Markup(data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True, lstrip_blocks=True,
)
_env.filters.update(money=money, label=label, when=when, json_block=json_block)
_env.globals.update(urlencode=urlencode, quote=quote, ASSETS=ASSETS)


def _static_version() -> str:
    newest = max((p.stat().st_mtime_ns for p in (HERE / "static").iterdir()), default=0)
    return format(newest, "x")


_env.globals["STATIC_V"] = _static_version()

SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                                "media-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                                "form-action 'self'"),
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # the storefront may ask for the shopper's position (stores near them), the POS for the camera (QR codes)
    "Permissions-Policy": "geolocation=(self), camera=(self)",
}


def render(template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    body = _env.get_template(template).render(context)
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


# ---------------------------------------------------------------- what people typed

def whole(value: str | None, field: str, *, low: int = 1, high: int = 99) -> int:
    """A quantity typed in a shop's form (the console's rule, a shopper's bounds)."""
    return console_web.whole(value, field, low=low, high=high)


def amount(value: str | None, field: str) -> Decimal | None:
    """A money amount typed at a till (``12.50`` or ``12,50``), None when empty."""
    raw = (value or "").strip().replace(",", ".")
    if not raw:
        return None
    try:
        number = Decimal(raw)
    except ArithmeticError:
        raise Invalid("an amount such as 12.50", field=field) from None
    if not number.is_finite() or number <= 0 or number > Decimal("100000") or number.as_tuple().exponent < -2:
        raise Invalid("an amount such as 12.50 (more than 0, at most two decimals)", field=field)
    return number


async def form_fields(request: Request) -> dict[str, str]:
    """The text fields of a submitted form; NUL refused."""
    try:
        form = await request.form()
    except Exception:
        return {}
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    for name, value in fields.items():
        if NUL in value or NUL in name:
            raise Invalid(f"{name} contains the NUL character, which text cannot hold", field=name)
    return fields


class Errors(dict[str, str]):
    """Error messages by field, shown next to each control (``_`` for the form as a whole)."""

    def add(self, exc: Any, fields: tuple[str, ...] = ()) -> None:
        name = exc.field if exc.field in fields else "_"
        self[name] = exc.message


# ---------------------------------------------------------------- the shopper's cookie

def _sign(secret: bytes, payload: bytes) -> str:
    return hmac.new(secret, payload, hashlib.sha256).hexdigest()[:40]


@dataclass
class Shopper:
    """Who is shopping on this device: an anonymous id always, a customer once logged in; ``store``: the store
    they chose (stock near them)."""

    anonymous_id: str
    customer_id: str | None = None
    store: str | None = None
    changed: bool = False  # the cookie must be (re)written with the answer
    extra: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return {"a": self.anonymous_id, "c": self.customer_id, "s": self.store}


def read_shopper(request: Request, channel: Channel) -> Shopper:
    """The shopper of this device in ``channel`` (a new anonymous one when the cookie is missing or forged)."""
    raw = request.cookies.get(COOKIE, "")
    body, _, signature = raw.rpartition(".")
    if body and signature:
        try:
            payload = base64.urlsafe_b64decode(body.encode() + b"=" * (-len(body) % 4))
        except ValueError:
            payload = b""
        if payload and hmac.compare_digest(_sign(state(request).secret, payload), signature):
            try:
                data = orjson.loads(payload)
                return Shopper(anonymous_id=str(data["a"]), customer_id=data.get("c"), store=data.get("s"))
            except (orjson.JSONDecodeError, KeyError, TypeError):
                pass
    return Shopper(anonymous_id=f"{channel.code}-{new_id()}", changed=True)


def write_shopper(request: Request, response: Response, channel: Channel, shopper: Shopper) -> Response:
    payload = orjson.dumps(shopper.payload())
    value = base64.urlsafe_b64encode(payload).rstrip(b"=").decode() + "." + _sign(state(request).secret, payload)
    secure = request.url.scheme == "https"
    response.set_cookie(COOKIE, value, max_age=COOKIE_MAX_AGE_S, path=channel.prefix, httponly=True, samesite="lax",
                        secure=secure)
    return response


def form_token(request: Request, anonymous_id: str) -> str:
    """The token every shopper form carries: only a page of ours, read with the shopper's cookie, can know it."""
    return _sign(state(request).secret, f"form|{anonymous_id}".encode())


def check_form(request: Request, anonymous_id: str, sent: str | None) -> None:
    if not sent or not hmac.compare_digest(form_token(request, anonymous_id), sent):
        raise Invalid("this form had expired (or came from another site): reload the page and send it again",
                      field="_", code="form_expired")


# ---------------------------------------------------------------- tracking, as a real channel does it

def source_for(session: Session, kind: str, store: str | None = None) -> Source | None:
    """The enabled source of the channel ``kind`` (``store``'s own for a POS); the oldest when there are several."""
    q = select(Source).where(Source.channel == kind, Source.enabled.is_(True))
    if store is not None:
        q = q.where(Source.store_code == store)
    return session.scalars(q.order_by(Source.created_at, Source.id).limit(1)).first()


def tracking(request: Request, session: Session, *, kind: str, anonymous_id: str, page: tuple[str, str],
             store: str | None = None, events: list[tuple[str, dict[str, Any]]] | None = None,
             identify: dict[str, Any] | None = None, screen: bool = False,
             page_properties: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``static/shop.js`` hands to analytics.js on this page: the source's write key (from the server, never
    typed into a page), the device's anonymous id, the page (or app screen) and the events of the page."""
    source = source_for(session, kind, store)
    bundle = state(request).bundle
    if source is None:
        where = f" for store {store}" if store else ""
        return {"on": False, "reason": f"no {kind} source{where} is set up (omni sources add ... --channel {kind})"}
    if bundle.js is None:
        return {"on": False, "reason": bundle.reason, "source": source.name}
    category, name = page
    return {"on": True, "source": source.name, "writeKey": source.write_key,
            "cdn": str(request.base_url).rstrip("/"), "src": f"{ASSETS}/analytics.js?v={analytics_js.VERSION}",
            "anonymousId": anonymous_id, "screen": screen, "category": category, "name": name,
            "properties": page_properties or {}, "identify": identify,
            "events": [[e, p] for e, p in (events or [])]}
