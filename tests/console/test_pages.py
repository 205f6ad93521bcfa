"""The console's pages over HTTP: logging in (with login CSRF) and out, the forced password change, what each role
sees and is refused, the pages' content on the seeded shop, forms that show the server's error next to the field,
and nothing typed that ends in a 500. The browser tests (test_browser.py) drive the same pages in Chromium."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from fastapi.testclient import TestClient

from omnijourney.auth.sessions import COOKIE
from omnijourney.console import plotly_bundle
from tests.console.seed import World

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def client(world: World) -> TestClient:
    return TestClient(world.app)


def login_token(page: str) -> str:
    found = re.search(r'name="login_csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def log_in(client: TestClient, world: World, role: str, next_path: str = "/console") -> Any:
    client.cookies.clear()
    token = login_token(client.get("/console/login").text)
    account = world.accounts[role]
    return client.post("/console/login", data={"email": account.email, "password": account.password,
                                               "login_csrf": token, "next": next_path}, follow_redirects=False)


def field_error(page: str, field: str) -> str:
    """The error shown next to ``field`` (its ``<p id="FIELD-error">``)."""
    found = re.search(rf'id="{re.escape(field)}-error"[^>]*>([^<]*)<', page)
    assert found, f"no error next to {field}"
    return html.unescape(found.group(1))


def form_error(page: str) -> str:
    found = re.search(r'class="form-error"[^>]*>([^<]*)<', page)
    assert found, "no error on the form"
    return html.unescape(found.group(1))


def nav_links(page: str) -> list[str]:
    nav = re.search(r'<nav id="nav".*?</nav>', page, re.S)
    assert nav
    return re.findall(r'<a href="([^"]+)"', nav.group(0))


# ---------------------------------------------------------------- logging in and out

def test_a_page_sends_nobody_to_the_login_page_and_back_after_it(client: TestClient, world: World) -> None:
    client.cookies.clear()
    r = client.get(f"/console/customers/{world.umar}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login?next=")
    page = client.get(r.headers["location"]).text
    assert f'name="next" value="/console/customers/{world.umar}"' in page
    done = log_in(client, world, "agent", f"/console/customers/{world.umar}")
    assert (done.status_code, done.headers["location"]) == (303, f"/console/customers/{world.umar}")
    assert "Umar Nguyen" in client.get(done.headers["location"]).text


def test_a_failed_login_says_so_on_the_form_and_keeps_the_email(client: TestClient, world: World) -> None:
    client.cookies.clear()
    token = login_token(client.get("/console/login").text)
    r = client.post("/console/login", data={"email": world.accounts["admin"].email, "password": "not it",
                                            "login_csrf": token, "next": "/console"})
    assert r.status_code == 401
    assert "Wrong email or password" in form_error(r.text)
    assert f'value="{world.accounts["admin"].email}"' in r.text and COOKIE not in r.cookies
    empty = client.post("/console/login", data={"email": "", "password": "", "login_csrf": login_token(r.text)})
    assert empty.status_code == 422
    assert field_error(empty.text, "email") and field_error(empty.text, "password")


def test_a_login_without_the_forms_token_is_refused(client: TestClient, world: World) -> None:
    """Login CSRF: another site cannot log a browser into an account of its choosing."""
    client.cookies.clear()
    account = world.accounts["admin"]
    r = client.post("/console/login", data={"email": account.email, "password": account.password,
                                            "login_csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 403 and COOKIE not in r.cookies
    assert "expired" in form_error(r.text)


def test_after_login_only_console_paths_are_followed(client: TestClient, world: World) -> None:
    for target in ("//evil.example/", "https://evil.example/console", "/api/v1/keys", "/console\\@evil"):
        r = log_in(client, world, "admin", target)
        assert (r.status_code, r.headers["location"]) == (303, "/console"), target


def test_logout_needs_the_session_token_and_ends_the_session(client: TestClient, world: World) -> None:
    log_in(client, world, "analyst")
    page = client.get("/console").text
    forged = client.post("/console/logout", data={"csrf_token": "nope"})
    assert forged.status_code == 403 and 'data-error-code="csrf_failed"' in forged.text
    assert client.get("/console", follow_redirects=False).status_code == 200  # still logged in
    out = client.post("/console/logout", data={"csrf_token": csrf(page)}, follow_redirects=False)
    assert (out.status_code, out.headers["location"]) == (303, "/console/login?reason=logged_out")
    assert "You are logged out" in client.get(out.headers["location"]).text
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_a_one_time_password_is_changed_first(client: TestClient, world: World) -> None:
    r = log_in(client, world, "new")
    assert r.headers["location"] == "/console/password"
    assert client.get("/console/orders", follow_redirects=False).headers["location"] == "/console/password"
    page = client.get("/console/password").text
    assert "one-time password" in page
    token = csrf(page)
    current = world.accounts["new"].password
    wrong = client.post("/console/password", data={"csrf_token": token, "current_password": "nope",
                                                   "new_password": "a new long password", "new_password_again":
                                                   "a new long password"})
    assert wrong.status_code == 422 and "wrong" in field_error(wrong.text, "current_password")
    weak = client.post("/console/password", data={"csrf_token": token, "current_password": current,
                                                  "new_password": "short", "new_password_again": "short"})
    assert weak.status_code == 422 and "12" in field_error(weak.text, "new_password")
    differ = client.post("/console/password", data={"csrf_token": token, "current_password": current,
                                                    "new_password": "a new long password",
                                                    "new_password_again": "another long password"})
    assert differ.status_code == 422 and field_error(differ.text, "new_password_again")
    done = client.post("/console/password", data={"csrf_token": token, "current_password": current,
                                                  "new_password": "a new long password",
                                                  "new_password_again": "a new long password"},
                       follow_redirects=False)
    assert done.headers["location"] == "/console?done=password_changed"
    assert "Your password was changed" in client.get(done.headers["location"]).text
    assert client.get("/console/orders").status_code == 200
    world.accounts["new"].password = "a new long password"


# ---------------------------------------------------------------- roles

ANALYTICS = {"analytics", "analytics/journey-map", "analytics/funnel", "analytics/paths", "analytics/retention",
             "analytics/attribution", "analytics/clv"}  # whoever reads analytics (tests/console/test_analytics.py)
EXPECTED_NAV = {
    "admin": {"customers", "catalog/products", "pricing/quote", "pricing/consistency", "inventory/availability",
              "inventory/movements", "orders", "pickups", "returns", *ANALYTICS},
    "marketer": {"customers", "catalog/products", "pricing/quote", "pricing/consistency", *ANALYTICS},
    # reads orders, takes no return
    "analyst": {"customers", "catalog/products", "pricing/quote", "pricing/consistency", "inventory/availability",
                "inventory/movements", "orders", "pickups", *ANALYTICS},
    "agent": {"customers", "catalog/products", "pricing/quote", "pricing/consistency", "inventory/availability",
              "inventory/movements", "orders", "pickups", "returns"},
    "store_associate": {"customers", "catalog/products", "pricing/quote", "pricing/consistency",
                        "inventory/availability", "inventory/movements", "orders", "pickups", "returns"},
}


@pytest.mark.parametrize("role", sorted(EXPECTED_NAV))
def test_each_role_sees_the_pages_its_scopes_open_and_is_refused_the_others(client: TestClient, world: World,
                                                                           role: str) -> None:
    log_in(client, world, role)
    home = client.get("/console")
    assert home.status_code == 200 and world.accounts[role].email.split("@")[0] not in ("",)
    links = {link.removeprefix("/console/") for link in nav_links(home.text) if link != "/console"}
    assert links == EXPECTED_NAV[role]
    for path in EXPECTED_NAV["admin"]:
        r = client.get(f"/console/{path}")
        if path in links:
            assert r.status_code == 200, (role, path, r.text[:500])
        else:
            assert r.status_code == 403 and 'data-error-code="missing_scope"' in r.text, (role, path)
            assert "<h1>Not allowed</h1>" in r.text and "Your role does not open this page" in r.text


def test_the_header_says_who_is_logged_in_with_a_logout_button(client: TestClient, world: World) -> None:
    log_in(client, world, "store_associate")
    page = client.get("/console").text
    assert "Sam Associate" in page and "Store associate · S01" in page
    assert re.search(r'<form class="logout" method="post" action="/console/logout">\s*<input type="hidden" '
                     r'name="csrf_token" value="[^"]+">', page)
    assert "1 ready for pickup, 1 to prepare" in page


def test_a_store_associate_works_in_their_own_store_only(client: TestClient, world: World) -> None:
    log_in(client, world, "store_associate")
    other = client.get("/console/pickups?store=S02")
    assert other.status_code == 403 and 'data-error-code="store_not_allowed"' in other.text
    order = world.orders["to_ship"]
    page = client.get(f"/console/orders/{order['id']}").text
    assert re.findall(r'<select id="channel"[^>]*>(.*?)</select>', page, re.S)[0].count("<option") == 1  # S01 only
    r = client.post(f"/console/orders/{order['id']}/transitions", data={"csrf_token": csrf(page), "to": "picked",
                                                                        "channel": "web"})
    assert r.status_code == 403 and "works in S01 only" in field_error(r.text, "channel")


# ---------------------------------------------------------------- the pages' content

def test_customers_are_found_by_name_email_phone_identifier_and_id(client: TestClient, world: World) -> None:
    log_in(client, world, "agent")
    for q in ("Umar", "umar ngu", "umar@example.com", "umar@exa", "+49 30 23125 001", "+4930 231", "LC-1001",
              "loyalty_card:LC-1001", world.umar, "u-umar"):
        page = client.get(f"/console/customers?q={quote(q)}").text
        assert f'href="/console/customers/{world.umar}"' in page, q
    page = client.get("/console/customers?q=Ann&by=name").text
    assert f'href="/console/customers/{world.ann}"' in page and world.umar not in page
    short = client.get("/console/customers?q=a&by=name")
    assert short.status_code == 422 and "at least 2 characters" in field_error(short.text, "q")
    none = client.get("/console/customers?q=zz-nobody-zz")
    assert none.status_code == 200 and "No customer matches" in none.text
    newest = client.get("/console/customers").text
    assert "Newest customers" in newest and world.ann in newest


def test_the_customer_360_shows_the_person_in_every_channel(client: TestClient, world: World) -> None:
    log_in(client, world, "agent")
    page = client.get(f"/console/customers/{world.umar}").text
    for text in ("Umar Nguyen", "umar@example.com", "+493023125001", "LC-1001", "loyalty card", "marketing",
                 "granted", "Why these are one person", "email: umar@example.com", "Orders in every channel",
                 world.orders["ready"]["number"], world.orders["to_ship"]["number"], "Carts",
                 "1 \u00d7 TEE-S (app), 1 \u00d7 JEANS-32 (web)", "Call Completed", "Message Received",
                 "Store Visited"):
        assert text in html.unescape(page), text
    lanes = orjson.loads(re.search(r'id="timeline-data">(.*?)</script>', page, re.S).group(1))["lanes"]
    assert [lane["label"] for lane in lanes] == ["web", "app", "store S01", "call center", "whatsapp"]
    assert sum(len(lane["t"]) for lane in lanes) == int(re.search(r"<dt>Events</dt><dd>(\d+)", page).group(1))
    # the merged profile's address leads to the person
    merged = client.get(f"/console/customers/{world.merged_away}", follow_redirects=False)
    assert merged.status_code == 303 and merged.headers["location"].startswith(f"/console/customers/{world.umar}")
    # a channel's events, and a marketer (no orders:read) sees no orders or carts
    web_only = client.get(f"/console/customers/{world.umar}?channel=whatsapp").text.split('id="events"')[1]
    assert "Message Received" in web_only and "Call Completed" not in web_only
    log_in(client, world, "marketer")
    page = client.get(f"/console/customers/{world.umar}").text
    assert "Orders in every channel" not in page and "<h2 id=\"carts\">" not in page and "LC-1001" in page


def test_products_and_their_publication_per_channel(client: TestClient, world: World) -> None:
    log_in(client, world, "marketer")
    page = client.get("/console/catalog/products").text
    assert "2 products" in page and page.count('aria-label="published in S01"') == 2
    product = re.search(r'href="(/console/catalog/products/[0-9a-f]+)">Basic Tee', page).group(1)
    detail = client.get(product).text
    assert "TEE-S" in detail and "TEE-M" in detail and detail.count("published</span>") == 5
    bad = client.get("/console/catalog/products?channel=nowhere")
    assert bad.status_code == 404 and field_error(bad.text, "channel")


def test_a_quote_explains_every_line_and_errors_stand_next_to_their_line(client: TestClient, world: World) -> None:
    log_in(client, world, "agent")
    page = html.unescape(client.get("/console/pricing/quote?channel=web&sku=TEE-M&qty=2&sku=JEANS-32&qty=1").text)
    for text in ("120.95 EUR in web", "Price list <strong>base-eur</strong>", "Tees 10% off online", "\u22124.00",
                 "shipping fee of market DE"):
        assert text in page, text
    bad = client.get("/console/pricing/quote?channel=web&sku=TEE-M&qty=1&sku=NOPE&qty=1&sku=TEE-S&qty=x")
    assert bad.status_code == 422
    assert "whole number" in field_error(bad.text, "lines[2].quantity")
    unknown = client.get("/console/pricing/quote?channel=web&sku=TEE-M&qty=1&sku=NOPE&qty=1")
    assert unknown.status_code == 422 and "unknown SKU NOPE" in field_error(unknown.text, "lines[1].sku")
    channel = client.get("/console/pricing/quote?sku=TEE-M")
    assert field_error(channel.text, "channel")


def test_the_consistency_report_names_the_rule_behind_each_difference(client: TestClient, world: World) -> None:
    log_in(client, world, "analyst")
    page = html.unescape(client.get("/console/pricing/consistency?show=all").text)
    assert "TEE-S" in page and "S03 18.00 EUR by hamburg" in page
    assert "TEE-M" in page and "web 18.00 EUR by web-tees" in page
    problems = client.get("/console/pricing/consistency").text
    assert "every price difference between channels is explained by a rule" in problems


def test_availability_nearest_first_and_the_ledger(client: TestClient, world: World) -> None:
    log_in(client, world, "store_associate")
    page = html.unescape(client.get("/console/inventory/availability?sku=TEE-M&channel=web&near=52.52,13.40").text)
    rows = re.findall(r"<tr><td>([^<]+) <span class=\"muted\">\((\w+)\)", page)
    assert [code for _, code in rows][:2] == ["S01", "S02"]  # Berlin Mitte, then Potsdam
    assert "available to promise" in page
    bad = client.get("/console/inventory/availability?sku=TEE-M&near=north")
    assert bad.status_code == 422 and "latitude,longitude" in field_error(bad.text, "near")
    unknown = client.get("/console/inventory/availability?sku=NOPE")
    assert unknown.status_code == 404 and field_error(unknown.text, "sku")
    ledger = client.get("/console/inventory/movements?sku=TEE-M&location=WH").text
    assert "receipt" in ledger and ">+40<" in ledger


def test_orders_filtered_by_channel_fulfilment_and_state(client: TestClient, world: World) -> None:
    log_in(client, world, "analyst")
    every = client.get("/console/orders").text
    assert all(o["number"] in every for o in world.orders.values())
    pickup = client.get("/console/orders?fulfilment=pickup").text
    assert world.orders["ready"]["number"] in pickup and world.orders["till"]["number"] not in pickup
    till = client.get("/console/orders?channel=S01&status=collected").text
    assert world.orders["till"]["number"] in till and world.orders["delivered"]["number"] not in till
    assert client.get(f"/console/orders?number={world.orders['till']['number']}",
                      follow_redirects=False).headers["location"] == f"/console/orders/{world.orders['till']['id']}"
    missing = client.get("/console/orders?number=O-NOPE")
    assert missing.status_code == 404 and "no order" in field_error(missing.text, "number")
    bad = client.get("/console/orders?fulfilment=teleport")
    assert bad.status_code == 422 and field_error(bad.text, "fulfilment")
    page = client.get(f"/console/orders/{world.orders['delivered']['id']}").text
    assert "Your role does not move orders" not in page and "returns are taken at a till" in page
    ready = client.get(f"/console/orders/{world.orders['ready']['id']}").text
    assert "Your role does not move orders" in ready and 'name="to"' not in ready


def test_an_order_moves_on_by_its_buttons_and_a_refusal_stands_next_to_the_control(client: TestClient,
                                                                                   world: World) -> None:
    log_in(client, world, "agent")
    order = world.orders["to_ship"]
    page = client.get(f"/console/orders/{order['id']}").text
    buttons = re.findall(r'<button type="submit" name="to" value="(\w+)"', page)
    assert buttons == ["picked", "cancelled"]
    token = csrf(page)
    early = client.post(f"/console/orders/{order['id']}/transitions", data={"csrf_token": token, "to": "shipped",
                                                                            "channel": "web"})
    assert early.status_code == 409 and "picked before it ships" in form_error(early.text)
    no_token = client.post(f"/console/orders/{order['id']}/transitions", data={"to": "picked", "channel": "web"})
    assert no_token.status_code == 403 and 'data-error-code="csrf_failed"' in no_token.text
    done = client.post(f"/console/orders/{order['id']}/transitions", data={"csrf_token": token, "to": "picked",
                                                                           "channel": "web", "note": "packed"},
                       follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].endswith("?done=picked")
    after = client.get(done.headers["location"]).text
    assert "is now picked" in after and "packed" in after
    assert re.findall(r'<button type="submit" name="to" value="(\w+)"', after) == ["shipped", "cancelled"]


def test_a_store_hands_over_a_pickup_with_its_code(client: TestClient, world: World) -> None:
    log_in(client, world, "store_associate")
    queue = client.get("/console/pickups").text
    ready, prepare = world.orders["ready"], world.orders["to_prepare"]
    assert ready["number"] in queue and prepare["number"] in queue and ready["pickup_code"] not in queue
    token = csrf(queue)
    wrong = client.post("/console/pickups/collect", data={"csrf_token": token, "store": "S01",
                                                          "pickup_code": "ZZZZZZ"})
    assert wrong.status_code == 404 and "pickup code ZZZZZZ" in field_error(wrong.text, "pickup_code")
    empty = client.post("/console/pickups/collect", data={"csrf_token": token, "store": "S01", "pickup_code": " "})
    assert empty.status_code == 422 and field_error(empty.text, "pickup_code")
    picked = client.post(f"/console/orders/{prepare['id']}/transitions",
                         data={"csrf_token": token, "to": "picked", "channel": "S01",
                               "next": "/console/pickups?store=S01"}, follow_redirects=False)
    assert picked.headers["location"] == "/console/pickups?store=S01&done=picked"
    done = client.post("/console/pickups/collect", data={"csrf_token": token, "store": "S01",
                                                         "pickup_code": ready["pickup_code"].lower()})
    assert done.status_code == 200 and "Handed over" in done.text
    assert ready["number"] not in done.text.split("To prepare")[0].split("Waiting for their shopper")[1]
    order = client.get(f"/console/orders/{ready['id']}").text
    assert "badge-collected" in order


# ---------------------------------------------------------------- robustness

NASTY = ["%00", "a%00b", "x" * 5000, "%ED%A0%80", "%F0%9F%98%80", "'%20OR%201=1--", "<script>alert(1)</script>",
         "-1", "99999999999999999999999", "%FF%FE", "..%2F..%2Fetc%2Fpasswd"]
GET_PAGES = ["/console/customers?q={v}", "/console/customers?q={v}&by=phone", "/console/customers?q={v}&by=email",
             "/console/customers?q={v}&by=identifier", "/console/customers?cursor={v}", "/console/customers/{v}",
             "/console/customers/{umar}?channel={v}", "/console/customers/{umar}?cursor={v}",
             "/console/catalog/products?search={v}&page={v}", "/console/catalog/products?status={v}",
             "/console/catalog/products/{v}", "/console/pricing/quote?channel=web&sku={v}&qty={v}&vouchers={v}",
             "/console/pricing/quote?channel={v}&sku=TEE-M&customer_id={v}&fulfilment={v}",
             "/console/pricing/consistency?show={v}&page={v}",
             "/console/inventory/availability?sku={v}&channel={v}&near={v}&quantity={v}",
             "/console/inventory/movements?sku={v}&location={v}&before={v}",
             "/console/orders?channel={v}&status={v}&fulfilment={v}&customer_id={v}&cursor={v}",
             "/console/orders?number={v}", "/console/orders/{v}", "/console/pickups?store={v}",
             "/console/login?next={v}&reason={v}"]


def test_nothing_typed_into_a_page_is_a_500(client: TestClient, world: World) -> None:
    log_in(client, world, "admin")
    for template in GET_PAGES:
        for value in NASTY:
            url = template.format(v=value, umar=world.umar)
            r = client.get(url)
            assert r.status_code < 500, (url, r.status_code, r.text[-500:])
            assert r.headers["content-type"].startswith("text/html"), url
            assert "<script>alert(1)</script>" not in r.text, url
    token = csrf(client.get("/console").text)
    order = world.orders["delivered"]["id"]
    for value in ("\x00", "x" * 5000, "\ud7ff", "Z" * 17):
        for data in ({"to": value, "channel": "web"}, {"to": "picked", "channel": value},
                     {"to": "collected", "channel": "S01", "pickup_code": value}, {"to": "cancelled", "channel": "web",
                                                                                   "note": value}):
            r = client.post(f"/console/orders/{order}/transitions", data={"csrf_token": token, **data})
            assert r.status_code < 500 and r.status_code != 200, (data, r.status_code)
        r = client.post("/console/pickups/collect", data={"csrf_token": token, "store": value, "pickup_code": value})
        assert r.status_code < 500, value
    r = client.post("/console/login", data={"email": "\x00", "password": "\x00", "login_csrf": "\x00"})
    assert r.status_code < 500


def test_errors_under_console_are_pages_and_the_api_keeps_json(client: TestClient, world: World) -> None:
    log_in(client, world, "admin")
    missing = client.get("/console/no-such-page")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "There is no page at this address" in missing.text
    assert client.get(f"/console/orders/{'0' * 32}").status_code == 404
    api = client.get("/api/v1/no-such-route")
    assert api.status_code == 404 and api.json()["code"] == "not_found"
    wrong_method = client.delete("/console/customers")
    assert wrong_method.status_code == 405 and "text/html" in wrong_method.headers["content-type"]


def test_pages_carry_a_strict_content_security_policy(client: TestClient, world: World) -> None:
    log_in(client, world, "admin")
    r = client.get(f"/console/customers/{world.umar}")
    policy = r.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-eval" not in policy
    assert r.headers["cache-control"] == "no-store"
    assert not re.search(r"<script(?![^>]*(src=|type=\"application/json\"))", r.text)  # no inline script


def test_plotly_comes_from_the_installed_package(client: TestClient) -> None:
    r = client.get("/console/assets/plotly.min.js")
    assert r.status_code == 200 and r.content == plotly_bundle().read_bytes()
    assert "max-age" in r.headers["cache-control"]
