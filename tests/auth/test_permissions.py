"""Every route x every role (and a machine key, and nobody): allowed or denied as the table below says.

The table is written by hand, route by route, apart from ``auth/roles.py``: changing what a role may do, or adding
a route, fails here until the table says so too. Allowed means "not 401/403" (the made-up ids and empty bodies
sent here may still be 404 or 422, never 500); denied means 403 ``missing_scope`` (``not_staff`` where a person is
needed). Nobody (no key, no cookie) gets 401 on every route that is not public (a console page: a redirect to the
login page). Store scoping (which store's code a store associate may name) has its own tests:
tests/auth/test_store_scope.py.

One app and one SQLite database for the module: about 800 requests in a few seconds.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from omnijourney.api.app import create_app
from omnijourney.api.deps import current_caller
from omnijourney.api.openapi import _api_routes, _depends_on
from omnijourney.config import JobSettings, Settings
from omnijourney.db import Database
from omnijourney.inventory import locations
from tests.auth.conftest import use_cheap_hashes
from tests.conftest import make_key
from tests.factories_catalog import channel
from tests.factories_staff import login, staff

# Who: A admin, M marketer, N analyst, G agent (contact center), S store associate (of S01),
# K a till's API key (scopes TILL_KEY), and PUBLIC for routes that take no principal at all (write keys, signed
# webhooks, pages opened by a phone, the login and logout themselves).
WHO = "AMNGSK"
TILL_KEY = ["carts:write", "orders:write", "inventory:read", "customers:read", "catalog:read", "pricing:read",
            "payments:read"]
PUBLIC = "public"
ALL = "AMNGSK"
CATALOG_READ = "AMNGSK"
CATALOG_WRITE = "AM"
CARTS_READ = "ANGSK"
CARTS_WRITE = "AGSK"
STOCK_READ = "ANGSK"
STOCK_WRITE = "AS"
ORDERS_READ = "ANGSK"
ORDERS_WRITE = "AGSK"

RULES: dict[str, str] = {
    # keys: admins only
    "POST /api/v1/keys": "A",
    "GET /api/v1/keys": "A",
    "DELETE /api/v1/keys/{key_id}": "A",
    # sources (write keys, the debugger): admins create them, analysts read what arrives
    "POST /api/v1/sources": "A",
    "GET /api/v1/sources": "AN",
    "GET /api/v1/sources/{source_id}": "AN",
    "GET /api/v1/sources/{source_id}/rejections": "AN",
    "GET /api/v1/sources/{source_id}/events": "AN",
    # customers: everyone who serves or studies them
    "GET /api/v1/customers": ALL,
    "GET /api/v1/customers/{customer_id}": ALL,
    "GET /api/v1/customers/{customer_id}/timeline": ALL,
    # the event feed: analytics syncs and marketers
    "GET /api/v1/events/feed": "AMN",
    # catalog: marketers change it, everyone reads it
    "POST /api/v1/channels": CATALOG_WRITE,
    "GET /api/v1/channels": CATALOG_READ,
    "GET /api/v1/channels/{code}": CATALOG_READ,
    "PATCH /api/v1/channels/{code}": CATALOG_WRITE,
    "POST /api/v1/catalog/categories": CATALOG_WRITE,
    "GET /api/v1/catalog/categories": CATALOG_READ,
    "POST /api/v1/catalog/products": CATALOG_WRITE,
    "GET /api/v1/catalog/products": CATALOG_READ,
    "GET /api/v1/catalog/products/by-handle/{handle}": CATALOG_READ,
    "GET /api/v1/catalog/products/{product_id}": CATALOG_READ,
    "PATCH /api/v1/catalog/products/{product_id}": CATALOG_WRITE,
    "PUT /api/v1/catalog/products/{product_id}/channels": CATALOG_WRITE,
    "POST /api/v1/catalog/products/{product_id}/variants": CATALOG_WRITE,
    "GET /api/v1/catalog/variants": CATALOG_READ,
    "GET /api/v1/catalog/variants/{sku}": CATALOG_READ,
    "PATCH /api/v1/catalog/variants/{sku}": CATALOG_WRITE,
    # pricing: marketers set prices and promotions; everyone may quote and read them
    "POST /api/v1/pricing/quote": ALL,
    "GET /api/v1/pricing/consistency": ALL,
    "POST /api/v1/pricing/price-lists": "AM",
    "GET /api/v1/pricing/price-lists": ALL,
    "GET /api/v1/pricing/price-lists/{code}": ALL,
    "PATCH /api/v1/pricing/price-lists/{code}": "AM",
    "PUT /api/v1/pricing/price-lists/{code}/prices": "AM",
    "GET /api/v1/pricing/price-lists/{code}/prices": ALL,
    "PUT /api/v1/pricing/markets/{market}": "AM",
    "GET /api/v1/pricing/markets/{market}": ALL,
    "POST /api/v1/pricing/promotions": "AM",
    "GET /api/v1/pricing/promotions": ALL,
    "GET /api/v1/pricing/promotions/{code}": ALL,
    "PATCH /api/v1/pricing/promotions/{code}": "AM",
    "POST /api/v1/pricing/vouchers": "AM",
    "GET /api/v1/pricing/vouchers": ALL,
    "GET /api/v1/pricing/vouchers/{code}": ALL,
    "PATCH /api/v1/pricing/vouchers/{code}": "AM",
    "POST /api/v1/pricing/vouchers/{code}/redemptions": "AM",
    # carts: the call center, the stores and their tills; analysts read them
    "POST /api/v1/carts": CARTS_WRITE,
    "GET /api/v1/carts": CARTS_READ,
    "GET /api/v1/carts/handoff/{code}.svg": CARTS_READ,
    "GET /api/v1/carts/handoff/{code}.png": CARTS_READ,
    "POST /api/v1/carts/handoff/{code}/claim": CARTS_WRITE,
    "GET /api/v1/carts/{cart_id}": CARTS_READ,
    "POST /api/v1/carts/{cart_id}/lines": CARTS_WRITE,
    "PATCH /api/v1/carts/{cart_id}/lines/{sku}": CARTS_WRITE,
    "DELETE /api/v1/carts/{cart_id}/lines/{sku}": CARTS_WRITE,
    "POST /api/v1/carts/{cart_id}/vouchers": CARTS_WRITE,
    "DELETE /api/v1/carts/{cart_id}/vouchers/{code}": CARTS_WRITE,
    "POST /api/v1/carts/{cart_id}/assign": CARTS_WRITE,
    "POST /api/v1/carts/{cart_id}/handoff": CARTS_WRITE,
    # stock: stores move it (their own: store-scoped), the call center and tills see it
    "POST /api/v1/locations": STOCK_WRITE,
    "GET /api/v1/locations": STOCK_READ,
    "GET /api/v1/locations/{code}": STOCK_READ,
    "PATCH /api/v1/locations/{code}": STOCK_WRITE,
    # analytics: analysts and marketers read it; forcing a sync is an admin's
    **{f"GET /api/v1/analytics/{name}": "AMN" for name in (
        "attribution", "clv", "clv/customers", "journey-map", "kpis", "lifecycle", "paths", "repeat-purchase",
        "retention", "stickiness", "sync")},
    **{f"POST /api/v1/analytics/{name}": "AMN" for name in ("funnels", "funnels/people", "funnels/time-to-convert")},
    "POST /api/v1/analytics/sync": "A",
    "GET /api/v1/inventory/availability": STOCK_READ,
    "GET /api/v1/inventory/levels": STOCK_READ,
    "GET /api/v1/inventory/movements": STOCK_READ,
    "POST /api/v1/inventory/receipts": STOCK_WRITE,
    "POST /api/v1/inventory/adjustments": STOCK_WRITE,
    "POST /api/v1/inventory/counts": STOCK_WRITE,
    "PUT /api/v1/inventory/safety-stock": STOCK_WRITE,
    "POST /api/v1/inventory/transfers": STOCK_WRITE,
    "POST /api/v1/inventory/transfers/{transfer_id}/receive": STOCK_WRITE,
    "POST /api/v1/inventory/reservations": STOCK_WRITE,
    "GET /api/v1/inventory/reservations/{reservation_id}": STOCK_READ,
    "POST /api/v1/inventory/reservations/{reservation_id}/release": STOCK_WRITE,
    "POST /api/v1/inventory/sales": STOCK_WRITE,
    # orders: checkout, transitions, till payments and returns by the call center, stores and tills
    "POST /api/v1/carts/{cart_id}/checkout": ORDERS_WRITE,
    "GET /api/v1/orders": ORDERS_READ,
    "GET /api/v1/orders/{order_id}": ORDERS_READ,
    "POST /api/v1/orders/{order_id}/transitions": ORDERS_WRITE,
    "POST /api/v1/orders/{order_id}/payments": ORDERS_WRITE,
    "POST /api/v1/orders/{order_id}/returns": ORDERS_WRITE,
    # payments: stores issue gift cards; whoever handles orders may look a payment or a balance up
    "GET /api/v1/payments/{payment_id}": "ANGSK",
    "POST /api/v1/gift-cards": "AS",
    "GET /api/v1/gift-cards/{code}": "ANGSK",
    "POST /api/v1/payments/webhooks/{provider}": PUBLIC,  # signed by the provider
    # the session: anyone may log in and out; who am I for every caller; a password for people only
    "POST /api/v1/session": PUBLIC,
    "DELETE /api/v1/session": PUBLIC,
    "GET /api/v1/session": ALL,
    "POST /api/v1/session/password": "AMNGS",
    # the Segment-compatible tracking API: write keys
    **{f"POST /v1/{p}": PUBLIC for p in ("track", "identify", "page", "screen", "group", "alias", "batch",
                                         "t", "i", "p", "s", "g", "a", "b", "import")},
    "GET /v1/projects/{write_key}/settings": PUBLIC,
    # pages a shopper's phone opens
    "GET /handoff/{code}": PUBLIC,
    "POST /handoff/{code}": PUBLIC,
    "GET /payments/test-provider/authenticate/{ref}": PUBLIC,
    "POST /payments/test-provider/authenticate/{ref}": PUBLIC,
    "POST /payments/test-provider/api/authenticate/{ref}": PUBLIC,
    "GET /health": PUBLIC,
    # the staff console: each page asks for the scope of the API routes it shows (pages answer a denial with a 403
    # page, and nobody with a redirect to the login page); logging in and out, and Plotly's bundle, are public
    "GET /console/login": PUBLIC,
    "POST /console/login": PUBLIC,
    "POST /console/logout": PUBLIC,
    "GET /console/assets/plotly.min.js": PUBLIC,
    "GET /console": ALL,
    "GET /console/password": "AMNGS",
    "POST /console/password": "AMNGS",
    "GET /console/customers": ALL,
    "GET /console/customers/{customer_id}": ALL,
    "GET /console/catalog/products": CATALOG_READ,
    "GET /console/catalog/products/{product_id}": CATALOG_READ,
    "GET /console/pricing/quote": ALL,
    "GET /console/pricing/consistency": ALL,
    "GET /console/inventory/availability": STOCK_READ,
    "GET /console/inventory/movements": STOCK_READ,
    "GET /console/orders": ORDERS_READ,
    "GET /console/orders/{order_id}": ORDERS_READ,
    "POST /console/orders/{order_id}/transitions": ORDERS_WRITE,
    "GET /console/pickups": ORDERS_READ,
    "POST /console/pickups/collect": ORDERS_WRITE,
    # analytics pages and their tables' CSV: whoever reads analytics (admins, marketers, analysts)
    **{f"GET /console/analytics{page}": "AMN" for page in (
        "", "/journey-map", "/funnel", "/paths", "/retention", "/attribution", "/clv", "/{name}.csv")},
    "GET /console/returns": ORDERS_WRITE,
    "GET /console/returns/{order_id}": ORDERS_WRITE,
    "POST /console/returns/{order_id}": ORDERS_WRITE,
    # the demo channels: the storefront and the app view are the shopper's (no principal; a signed cookie and a
    # form token), analytics.js comes from its cache; the till acts for its store as checkout and returns do
    **{f"{method} {prefix}{path}": PUBLIC for prefix in ("/shop", "/app") for method, path in (
        ("GET", ""), ("GET", "/search"), ("GET", "/c/{code}"), ("GET", "/p/{handle}"), ("POST", "/store"),
        ("GET", "/cart"), ("POST", "/cart/lines"), ("POST", "/cart/lines/{sku}"), ("POST", "/cart/handoff"),
        ("GET", "/cart/handoff/{code}"), ("GET", "/checkout"), ("POST", "/checkout"), ("GET", "/orders"),
        ("GET", "/orders/{order_id}"), ("GET", "/login"), ("POST", "/login"), ("POST", "/logout"))},
    "GET /shop/assets/analytics.js": PUBLIC,
    **{f"{method} /pos{path}": ORDERS_WRITE for method, path in (
        ("GET", ""), ("POST", "/find"), ("POST", "/pull"), ("POST", "/scan"), ("POST", "/carts/{cart_id}/open"),
        ("GET", "/sale/{cart_id}"), ("POST", "/sale/{cart_id}/pay"), ("GET", "/orders"), ("GET", "/orders/{order_id}"),
        ("POST", "/orders/{order_id}/returns"), ("GET", "/stock"))},
}
DENIED_CODE = {("POST /api/v1/session/password", "K"): "not_staff", ("GET /console/password", "K"): "not_staff",
               ("POST /console/password", "K"): "not_staff"}
ALLOWED = {route: rule for route, rule in RULES.items() if rule != PUBLIC}


def _routes(app: Any) -> dict[str, Any]:
    return {f"{m} {getattr(r, 'path_format', None) or r.path}": r for r in _api_routes(app) for m in r.methods
            if m != "HEAD"}


@pytest.fixture(scope="module")
def world(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One app and database: an account per role (logged in), the till key, and each one's request headers."""
    path = tmp_path_factory.mktemp("permissions") / "omni.db"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite:///{path}")
    app = create_app(db, Settings(database_url=f"sqlite:///{path}", jobs=JobSettings(embedded=False)))
    client = TestClient(app)
    headers: dict[str, dict[str, str]] = {}
    with pytest.MonkeyPatch.context() as mp:
        use_cheap_hashes(mp)
        channel(db, "S01", "store")
        with db.transaction() as s:
            locations.create_location(s, code="S01", name="Berlin", type="store", channel_code="S01")
        for who, role in zip("AMNGS", ("admin", "marketer", "analyst", "agent", "store_associate"), strict=True):
            account = staff(db, role, stores=["S01"] if role == "store_associate" else ())
            headers[who] = login(client, account).headers
    headers["K"] = {"Authorization": f"Bearer {make_key(db, *TILL_KEY, name='till S01')}"}
    headers[""] = {}
    yield {"app": app, "client": client, "headers": headers}
    db.dispose()


def _call(world: dict[str, Any], route: str, who: str) -> Any:
    method, path = route.split(" ", 1)
    # made-up ids ({cart_id} -> cart_id), but the associate's own store for a code: the store check passes and the
    # route answers as it would in their store
    url = path.replace("{code}", "S01").replace("{", "").replace("}", "")
    body = {} if method in ("POST", "PUT", "PATCH") else None
    return world["client"].request(method, url, json=body, headers=world["headers"][who], follow_redirects=False)


def _console(route: str) -> bool:
    """A page that sends nobody to the console's login page (the till logs in there too)."""
    return route.split(" ", 1)[1].startswith(("/console", "/pos"))


def _code(r: Any) -> str | None:
    """The error code of an answer: the JSON's, or the one a console page carries (``data-error-code``)."""
    if r.headers.get("content-type", "").startswith("text/html"):
        found = re.search(r'data-error-code="([a-z_0-9]+)"', r.text)
        return found.group(1) if found else None
    return r.json().get("code")


def test_every_route_has_a_rule_and_every_rule_a_route(world: dict[str, Any]) -> None:
    routes = _routes(world["app"])
    missing = sorted(set(routes) - set(RULES))
    assert not missing, f"routes without a rule in RULES (say who may call them): {missing}"
    stale = sorted(set(RULES) - set(routes))
    assert not stale, f"rules for routes that no longer exist: {stale}"
    for route, rule in RULES.items():  # a route called public really takes no principal
        assert (rule == PUBLIC) != _depends_on(routes[route].dependant, current_caller), route


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("route", sorted(ALLOWED))
def test_route_by_role(world: dict[str, Any], route: str, who: str) -> None:
    r = _call(world, route, who)
    assert r.status_code < 500, (route, who, r.status_code, r.text)
    if who in ALLOWED[route]:
        assert r.status_code not in (401, 403), (route, who, r.text)
    else:
        code = DENIED_CODE.get((route, who), "missing_scope")
        assert (r.status_code, _code(r)) == (403, code), (route, who, r.text)


@pytest.mark.parametrize("route", sorted(ALLOWED))
def test_nobody_gets_401(world: dict[str, Any], route: str) -> None:
    r = _call(world, route, "")
    if _console(route):  # a page sends the browser to the login page, and back after it
        assert r.status_code == 303 and r.headers["location"].startswith("/console/login"), (route, r.text)
    else:
        assert r.status_code == 401, (route, r.text)
