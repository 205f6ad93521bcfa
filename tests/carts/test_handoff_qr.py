"""Handoff QR codes as a phone reads them (standard QR, decoded by zxing-cpp), and the page the scanned link opens."""

from __future__ import annotations

import base64
import io
import re
from datetime import timedelta
from typing import Any

import pytest
import zxingcpp
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select, update

from omnijourney.carts import handoff
from omnijourney.carts.models import Cart, CartHandoff
from omnijourney.config import Settings
from omnijourney.core.time import utcnow
from omnijourney.db import Database
from omnijourney.tracking.models import Event
from tests import factories_catalog as fc

PUBLIC_URL = "http://testserver"  # the TestClient's own origin: a scanned link is a URL this server answers


@pytest.fixture
def settings(request: pytest.FixtureRequest) -> Settings:
    """The app's settings, with ``OMNI_PUBLIC_URL`` (parametrize indirectly to change it; None: bare codes)."""
    return Settings(database_url="sqlite://", public_url=getattr(request, "param", PUBLIC_URL))


@pytest.fixture
def shop(db: Database) -> Database:
    from omnijourney.pricing import service as pricing

    fc.shop(db)  # web + store-12 (EUR); TEE-S/TEE-M everywhere
    fc.product(db, "odd", ["ODD-1"], channels=("web", "store-12"), title="Socks <b>&</b> more")
    with db.transaction() as session:
        pricing.create_price_list(session, code="base-eur", name="Base EUR", currency="EUR")
        pricing.set_prices(session, price_list="base-eur", prices={"TEE-M": "20.00", "ODD-1": "3.50"})
    return db


def decode(png: bytes) -> tuple[Any, str]:
    """What a phone camera reads in ``png``: (symbol format, text); exactly one symbol expected."""
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(found) == 1, found
    return found[0].format, found[0].text


def data_uri_png(uri: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    return base64.b64decode(uri[len(prefix):])


def handed_off_cart(client: TestClient, headers: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A cart started at the till of store-12 (2 x TEE-M, 1 x ODD-1) and its handoff code (the cart, the code)."""
    cart = client.post("/api/v1/carts", json={"channel": "store-12", "anonymous_id": "anon-qr"}, headers=headers)
    assert cart.status_code == 201, cart.text
    for sku, qty in (("TEE-M", 2), ("ODD-1", 1)):
        r = client.post(f"/api/v1/carts/{cart.json()['id']}/lines",
                        json={"sku": sku, "quantity": qty, "channel": "store-12"}, headers=headers)
        assert r.status_code == 200, r.text
    h = client.post(f"/api/v1/carts/{cart.json()['id']}/handoff", json={"channel": "store-12"}, headers=headers)
    assert h.status_code == 201, h.text
    return cart.json(), h.json()


def cart_views(db: Database) -> int:
    with db.transaction(write=False) as session:
        return session.scalar(select(func.count()).select_from(Event).where(Event.event == "Cart Viewed")) or 0


def claimed_at(db: Database, code: str) -> Any:
    with db.transaction(write=False) as session:
        return session.get(CartHandoff, code).claimed_at


# ---------------------------------------------------------------- the symbol


@pytest.mark.parametrize("content", ["ABCD2345", "https://shop.example/handoff/ABCD2345"])
def test_qr_images_are_standard_qr_codes(content: str) -> None:
    # an 8-character code alone fits a Micro QR symbol, which phone cameras and POS scanners do not read
    for png in (handoff.qr_png(content), data_uri_png(handoff.qr_png_data_uri(content))):
        assert decode(png) == (zxingcpp.BarcodeFormat.QRCode, content)
    # the SVG: a standard symbol is at least 21 modules plus a 4-module quiet zone each side (Micro: 11-17 + 2 x 2)
    svg = handoff.qr_svg(content).decode()
    width = int(re.search(r'width="(\d+)"', svg).group(1))  # type: ignore[union-attr]
    assert svg.startswith("<svg") and width >= (21 + 8) * 4


@pytest.mark.parametrize("settings", [None], indirect=True)
def test_api_qr_of_a_bare_code_reads_back(client: TestClient, shop: Database, admin_headers: dict[str, str]) -> None:
    _, h = handed_off_cart(client, admin_headers)
    assert h["link"] == h["code"]
    png = client.get(h["png_url"], headers=admin_headers).content
    assert decode(png) == decode(data_uri_png(h["png_data_uri"])) == (zxingcpp.BarcodeFormat.QRCode, h["code"])


# ---------------------------------------------------------------- the page the scanned link opens


def test_scanned_link_shows_the_cart_and_claims_once(client: TestClient, shop: Database,
                                                     admin_headers: dict[str, str]) -> None:
    cart, h = handed_off_cart(client, admin_headers)
    code = h["code"]
    fmt, url = decode(data_uri_png(h["png_data_uri"]))
    assert (fmt, url) == (zxingcpp.BarcodeFormat.QRCode, f"{PUBLIC_URL}/handoff/{code}") == \
        (fmt, h["link"]) == decode(client.get(h["png_url"], headers=admin_headers).content)
    views = cart_views(shop)

    # the phone opens the link: no API key, the cart's lines and quoted total, a button; nothing claimed
    for _ in range(2):  # a link previewer fetched it first
        page = client.get(url)
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-store"
        html = page.text
        assert "Basic Tee" in html and "TEE-M" in html and ">2<" in html and "40.00 EUR" in html
        assert "Socks &lt;b&gt;&amp;&lt;/b&gt; more" in html and "<b>" not in html  # catalog text is escaped
        assert "43.50 EUR" in html  # the quoted total
        assert '<form method="post">' in html and "Continue with this cart here" in html and "<script" not in html
    assert claimed_at(shop, code) is None and cart_views(shop) == views
    assert "omni_cart" not in client.cookies

    # the button: the code is claimed for the web, this device keeps the cart in a cookie
    r = client.post(url)
    assert r.status_code == 200, r.text
    assert "Your cart is here" in r.text and "43.50 EUR" in r.text
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"omni_cart={cart['id']};")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie and "Secure" not in cookie
    assert client.cookies["omni_cart"] == cart["id"]
    assert claimed_at(shop, code) is not None and cart_views(shop) == views + 1
    with shop.transaction(write=False) as session:
        assert session.get(Cart, cart["id"]).channel_code == "web"

    # reloading on this device shows the cart again; it is not a second claim
    for again in (client.get(url), client.post(url)):
        assert again.status_code == 200 and "Your cart is here" in again.text
    assert cart_views(shop) == views + 1

    # another device (no cookie) finds the code used, on the page and on the button
    client.cookies.clear()
    for other in (client.get(url), client.post(url)):
        assert other.status_code == 409 and "Code already used" in other.text and "40.00" not in other.text
        assert "set-cookie" not in other.headers
    assert cart_views(shop) == views + 1


@pytest.mark.parametrize("settings", ["https://shop.example"], indirect=True)
def test_cookie_is_secure_behind_an_https_public_url(client: TestClient, shop: Database,
                                                     admin_headers: dict[str, str]) -> None:
    _, h = handed_off_cart(client, admin_headers)
    assert decode(data_uri_png(h["png_data_uri"]))[1] == f"https://shop.example/handoff/{h['code']}"
    r = client.post(f"/handoff/{h['code']}")
    assert r.status_code == 200 and "Secure" in r.headers["set-cookie"]


def test_expired_unknown_and_closed_codes_show_a_page(client: TestClient, shop: Database,
                                                      admin_headers: dict[str, str]) -> None:
    cart, h = handed_off_cart(client, admin_headers)
    with shop.transaction() as session:
        session.execute(update(CartHandoff).where(CartHandoff.code == h["code"])
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
    for r in (client.get(f"/handoff/{h['code']}"), client.post(f"/handoff/{h['code']}")):
        assert (r.status_code, r.headers["content-type"][:9]) == (410, "text/html"), r.text
        assert "Code expired" in r.text and "Continue with this cart here" not in r.text

    for r in (client.get("/handoff/ZZZZZZZZ"), client.post("/handoff/zzzz-zzzz")):
        assert (r.status_code, r.headers["content-type"][:9]) == (404, "text/html")
        assert "Unknown code" in r.text

    # the cart was checked out after the code was made: the claim fails and rolls back whole (code not burnt)
    code = client.post(f"/api/v1/carts/{cart['id']}/handoff", json={"channel": "store-12"},
                       headers=admin_headers).json()["code"]
    with shop.transaction() as session:
        session.execute(update(Cart).where(Cart.id == cart["id"]).values(status="converted"))
    r = client.get(f"/handoff/{code}")
    assert (r.status_code, "Cart closed" in r.text, "Continue with this cart here" in r.text) == (409, True, False)
    r = client.post(f"/handoff/{code}")
    assert (r.status_code, "Cart closed" in r.text, "set-cookie" in r.headers) == (409, True, False)
    assert claimed_at(shop, code) is None
