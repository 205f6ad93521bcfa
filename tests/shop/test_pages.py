"""The demo channels over HTTP (the browser tests drive the same pages in Chromium): a guest's cart becomes the
customer's at a demo login and is the same cart in the app view, a handoff code opens it at the till, a split
tender pays it, a return of an online order is taken at the store; forms refuse bad input next to the field and
nothing typed is a 500; the till is for staff of the store; the login by email alone is off outside the demo.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from omnijourney.shop import analytics_js, web
from tests.console.seed import World
from tests.factories_staff import login
from tests.shop.conftest import GIFT_CARD

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def token(html: str) -> str:
    found = re.search(r'name="token" value="([^"]+)"', html)
    assert found, html[:2000]
    return found.group(1)


def tracking(html: str) -> dict[str, Any]:
    import json

    found = re.search(r'<script type="application/json" id="tracking-config">(.*?)</script>', html, re.S)
    assert found
    return json.loads(found.group(1))


def cart_skus(client: TestClient, prefix: str) -> list[str]:
    return re.findall(r'<span class="muted mono">([A-Z0-9-]+)</span>', client.get(f"{prefix}/cart").text)


def add(client: TestClient, prefix: str, handle: str, sku: str, quantity: int = 1) -> Any:
    page = client.get(f"{prefix}/p/{handle}")
    assert page.status_code == 200, page.text[:2000]
    return client.post(f"{prefix}/cart/lines", data={"token": token(page.text), "handle": handle, "sku": sku,
                                                      "quantity": str(quantity)})


def test_browse_search_and_product_pages(client: TestClient) -> None:
    home = client.get("/shop")
    assert home.status_code == 200 and 'href="/shop/c/tops"' in home.text and "Basic Tee" in home.text
    assert client.cookies.get(web.COOKIE)  # the device's anonymous id, signed
    listing = client.get("/shop/c/denim")
    assert "Jeans" in listing.text and "Basic Tee" not in listing.text
    assert tracking(listing.text)["events"][0][0] == "Product List Viewed"
    found = client.get("/shop/search", params={"q": "tee"})
    assert "Basic Tee" in found.text and tracking(found.text)["events"] == [
        ["Products Searched", {"query": "tee", "results": 1}]]
    product = client.get("/shop/p/basic-tee", params={"sku": "TEE-M"})
    config = tracking(product.text)
    [(name, props)] = config["events"]
    assert name == "Product Viewed" and props["sku"] == "TEE-M" and props["price"] == 18.0  # web's 10 % off
    assert config["on"] == (analytics_js.load().js is not None)
    # stock per store, nearest first once the shopper is placed: Berlin Mitte has 6 on the shelf, Potsdam 4
    near = client.get("/shop/p/basic-tee", params={"sku": "TEE-M", "near": "52.52,13.40"})
    rows = re.findall(r"<tr>\s*<td>([^<]+)</td>\s*<td>([^<]+)</td>", near.text)
    assert [r[0] for r in rows][:2] == ["Berlin Mitte", "Potsdam"] and rows[0][1].endswith("km")
    chosen = client.post("/shop/store", data={"token": token(near.text), "store": "S03", "back": "/shop/p/basic-tee"})
    assert chosen.status_code == 303
    rows = re.findall(r"<tr>\s*<td>([^<]+)</td>", client.get("/shop/p/basic-tee").text)
    assert rows[0] == "Hamburg"  # the chosen store orders them when the browser gives no position
    assert client.get("/shop/p/no-such-thing").status_code == 404
    assert 'data-error-code="not_found"' in client.get("/shop/c/nope").text


def test_the_cart_follows_the_customer_from_the_web_to_the_app(world: World) -> None:
    with TestClient(world.app, follow_redirects=False) as laptop, \
            TestClient(world.app, follow_redirects=False) as phone:
        assert add(laptop, "/shop", "basic-tee", "TEE-M", 2).status_code == 303
        assert cart_skus(laptop, "/shop") == ["TEE-M"]
        page = laptop.get("/shop/login").text
        done = laptop.post("/shop/login", data={"token": token(page), "email": "Ann@Example.com",
                                                "back": "/shop/cart"})
        assert done.status_code == 303 and done.headers["location"] == "/shop/cart"
        cart = laptop.get("/shop/cart").text
        assert "Hi, Ann Smith" in cart
        assert tracking(cart)["identify"]["traits"]["email"] == "ann@example.com" if tracking(cart)["on"] else True
        assert "identify" not in str(tracking(laptop.get("/shop/cart").text).get("identify") or "")  # once only
        # the phone: a guest until Ann logs in there too, then the same cart
        assert cart_skus(phone, "/app") == []
        page = phone.get("/app/login").text
        phone.post("/app/login", data={"token": token(page), "email": "ann@example.com", "back": "/app/cart"})
        assert cart_skus(phone, "/app") == ["TEE-M"]
        assert add(phone, "/app", "jeans", "JEANS-32").status_code == 303
        assert cart_skus(laptop, "/shop") == ["TEE-M", "JEANS-32"]
        # logging out on the laptop forgets Ann there, not on the phone
        laptop.post("/shop/logout", data={"token": token(laptop.get("/shop").text)})
        assert cart_skus(laptop, "/shop") == [] and cart_skus(phone, "/app") == ["TEE-M", "JEANS-32"]
        # an order of the app, picked up in a store, paid with the gift card and a card for the rest
        form = phone.get("/app/checkout").text
        assert tracking(form)["events"][0][0] == "Checkout Started" if tracking(form)["on"] else True
        placed = phone.post("/app/checkout", data={"token": token(form), "key": re.search(
            r'name="key" value="([^"]+)"', form).group(1), "mode": "pickup", "store": "S01", "card": "pm_card_visa",
            "gift_card": GIFT_CARD.lower(), "gift_amount": "5"})
        assert placed.status_code == 303, placed.text[:3000]
        order = phone.get(placed.headers["location"]).text
        assert "Thank you! Your order is placed." in order and "pickup at S01" in order
        listed = phone.get("/app/orders").text
        assert re.search(r"O-[0-9A-F]+", listed) and "app · pickup" in listed


def test_checkout_refusals_are_shown_next_to_their_field(client: TestClient) -> None:
    add(client, "/shop", "jeans", "JEANS-32")
    form = client.get("/shop/checkout").text
    sent = {"token": token(form), "key": "k-refusals", "mode": "ship", "card": "pm_card_visa", "email": "x@example.com"}
    answer = client.post("/shop/checkout", data=sent)
    assert answer.status_code == 422 and 'id="name-error"' in answer.text  # an address is needed to deliver
    answer = client.post("/shop/checkout", data={**sent, "mode": "pickup", "store": "S01", "email": ""})
    assert answer.status_code == 422 and 'id="email-error"' in answer.text  # a guest gives an email
    answer = client.post("/shop/checkout", data={**sent, "mode": "pickup", "store": "S01",
                                                 "card": "pm_card_chargeDeclined", "key": "k-declined"})
    assert answer.status_code == 402 and 'id="card-error"' in answer.text and "declined" in answer.text
    answer = client.post("/shop/checkout", data={**sent, "mode": "pickup", "store": "S01", "gift_card": "NOPE-1",
                                                 "key": "k-gift"})
    assert answer.status_code == 404 and 'id="gift_card-error"' in answer.text
    answer = client.post("/shop/checkout", data={**sent, "token": "forged"})
    assert answer.status_code == 422 and "expired" in answer.text
    for nasty in ("\x00", "x" * 5000, "💥", "../../etc"):
        safe = quote(nasty, safe="")
        for path in ("/shop/search", f"/shop/p/{safe}", f"/shop/c/{safe}"):
            assert client.get(path, params={"q": nasty}).status_code < 500
        assert client.post("/shop/checkout", data={**sent, "mode": nasty, "store": nasty,
                                                   "gift_amount": nasty}).status_code < 500
        assert client.post(f"/shop/cart/lines/{safe}", data={"token": sent["token"],
                                                             "quantity": nasty}).status_code < 500


def test_a_till_pulls_a_handed_over_cart_and_takes_a_split_tender(world: World, client: TestClient) -> None:
    add(client, "/app", "jeans", "JEANS-32")
    handed = client.post("/app/cart/handoff", data={"token": token(client.get("/app/cart").text)})
    code = handed.headers["location"].rsplit("/", 1)[1]
    shown = client.get(handed.headers["location"]).text
    assert code in shown and "<svg" in shown  # the code and its QR code
    assert client.get("/pos").headers["location"] == "/console/login?next=%2Fpos"  # staff only
    csrf = login(client, world.accounts["store_associate"], keep_cookie=True).csrf
    till = client.get("/pos").text
    assert "Till" in till and "Berlin Mitte (S01)" in till
    wrong = client.post("/pos/pull", data={"csrf_token": csrf, "code": "WRONGCOD"})
    assert wrong.status_code == 404 and 'id="code-error"' in wrong.text
    pulled = client.post("/pos/pull", data={"csrf_token": csrf, "code": f"http://phone.example/handoff/{code}"})
    assert pulled.status_code == 303, pulled.text[:2000]
    sale = client.get(pulled.headers["location"]).text
    assert "JEANS-32" in sale and 'id="to-pay">80.00 EUR' in sale
    cart_id = re.search(r"/pos/sale/([0-9a-f]+)/pay", sale).group(1)
    again = client.post("/pos/pull", data={"csrf_token": csrf, "code": code})
    assert again.status_code == 409 and "claimed already" in again.text  # a code works once
    short = client.post(f"/pos/sale/{cart_id}/pay", data={"csrf_token": csrf, "key": "till-1", "cash": "20",
                                                          "card": ""})
    assert short.status_code == 422 and 'id="cash-error"' in short.text and "leaves 60.00 to pay" in short.text
    paid = client.post(f"/pos/sale/{cart_id}/pay", data={"csrf_token": csrf, "key": "till-2", "gift_card": GIFT_CARD,
                                                         "gift_amount": "10", "cash": "20", "card": "pm_card_visa"})
    assert paid.status_code == 303, paid.text[:3000]
    receipt = client.get(paid.headers["location"]).text
    tenders = re.search(r'<ul class="plain" id="tenders">(.*?)</ul>', receipt, re.S).group(1)
    assert "gift card ending DEMO: 10.00 EUR" in tenders and "cash: 20.00 EUR" in tenders
    assert "card ending 4242: 50.00 EUR" in tenders and "Paid." in receipt
    # another store's till is not this associate's
    assert client.get("/pos", params={"store": "S02"}).status_code == 403


def test_a_return_of_a_web_order_is_taken_at_the_store(world: World, client: TestClient) -> None:
    csrf = login(client, world.accounts["store_associate"], keep_cookie=True).csrf
    ann = world.orders["delivered"]
    found = client.get("/pos/orders", params={"number": ann["number"].lower()})
    assert found.status_code == 303
    page = client.get(found.headers["location"]).text
    assert "web · ship" in page and 'name="qty-TEE-S"' in page
    nothing = client.post(f"/pos/orders/{ann['id']}/returns", data={"csrf_token": csrf, "qty-TEE-S": "0"})
    assert nothing.status_code == 422 and "form-error" in nothing.text
    done = client.post(f"/pos/orders/{ann['id']}/returns", data={"csrf_token": csrf, "qty-TEE-S": "1",
                                                                 "reason": "Does not fit"})
    assert done.status_code == 303
    page = client.get(done.headers["location"]).text
    assert "Return accepted" in page and "(1 back)" in page and "at S01: refund" in page


def test_the_till_finds_customers_and_stock_nearby(world: World, client: TestClient) -> None:
    csrf = login(client, world.accounts["store_associate"], keep_cookie=True).csrf
    for by, value in (("loyalty_card", "LC-1001"), ("email", "UMAR@example.com"), ("phone", "+49 30 23125 001")):
        found = client.post("/pos/find", data={"csrf_token": csrf, "by": by, "value": value})
        assert found.status_code == 303, (by, found.text[:1000])
        page = client.get(found.headers["location"]).text
        assert "Serving Umar Nguyen" in page and "Open their cart at the till" in page
    missing = client.post("/pos/find", data={"csrf_token": csrf, "by": "email", "value": "nobody@example.com"})
    assert missing.status_code == 404 and 'id="value-error"' in missing.text
    stock = client.get("/pos/stock", params={"sku": "tee-m"}).text
    rows = re.findall(r"<tr><td>([^<]+)</td>", stock)
    assert rows[0] == "Berlin Mitte (here)" and "Potsdam" in rows
    assert client.get("/pos/stock", params={"sku": "NOPE"}).status_code == 404


def test_the_till_is_for_staff_with_orders_rights(world: World, client: TestClient) -> None:
    login(client, world.accounts["marketer"], keep_cookie=True)
    denied = client.get("/pos")
    assert denied.status_code == 403 and 'data-error-code="missing_scope"' in denied.text


def test_the_email_login_is_demo_only(world: World, client: TestClient) -> None:
    before = world.app.state.shop
    world.app.state.shop = web.new_state(web.ShopSettings(demo_login=False))
    try:
        page = client.get("/shop/login").text
        assert "Demo only" in page and "is off on this server" in page
        refused = client.post("/shop/login", data={"token": token(page), "email": "ann@example.com"})
        assert refused.status_code == 403 and 'id="email-error"' in refused.text
    finally:
        world.app.state.shop = before


def test_without_analytics_js_the_pages_work_and_say_tracking_is_off(world: World, client: TestClient,
                                                                     tmp_path: Any, monkeypatch: Any) -> None:
    tampered = tmp_path / analytics_js.TARBALL
    tampered.write_bytes(b"not the pinned tarball")
    monkeypatch.setenv("OMNI_SHOP_ANALYTICS_JS", str(tampered))
    monkeypatch.setenv("OMNI_CACHE_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("OMNI_TEST_CACHE", str(tmp_path / "empty"))
    assert analytics_js.load().js is None  # a file that is not the pinned one is never served
    before = world.app.state.shop
    world.app.state.shop = web.new_state(web.ShopSettings(demo_login=True))
    try:
        page = client.get("/shop/p/jeans")
        assert page.status_code == 200 and "Tracking off: analytics.js" in page.text
        assert tracking(page.text) == {"on": False, "reason": analytics_js.load().reason, "source": "Web shop"}
        assert client.get("/shop/assets/analytics.js").status_code == 404
    finally:
        world.app.state.shop = before


def test_the_pin_is_the_browser_tests_pin() -> None:
    from tests.support import browser

    assert (analytics_js.VERSION, analytics_js.INTEGRITY) == (browser.ANALYTICS_NEXT_VERSION,
                                                             browser.ANALYTICS_NEXT_INTEGRITY)


def test_a_card_that_asks_the_bank_sends_the_shopper_to_the_bank_page(client: TestClient) -> None:
    add(client, "/shop", "basic-tee", "TEE-S")
    form = client.get("/shop/checkout").text
    placed = client.post("/shop/checkout", data={"token": token(form), "key": "k-3ds", "mode": "pickup",
                                                 "store": "S01", "card": "pm_card_threeDSecure2Required",
                                                 "email": "guest@example.com"})
    assert placed.status_code == 303, placed.text[:2000]
    order = client.get(placed.headers["location"]).text
    assert "Your bank asks you to confirm this payment" in order
    bank = re.search(r'href="([^"]*/payments/test-provider/authenticate/[^"]+)"', order).group(1)
    assert client.get(bank).status_code == 200  # the test provider's bank page
    assert re.search(r"<dt>Payment</dt><dd>pending</dd>", order)
