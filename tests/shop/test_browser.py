"""The cross-device journey in Debian's Chromium (Playwright) against a live server on an embedded database, with
the real analytics.js: a new customer starts on the phone (the app view at 375 px), finds a product and the stores
near her (the browser's position), adds it to her cart and logs in; on the laptop (the web shop) she logs in too
and finds the same cart; on the phone she hands the cart over and the till, logged in as Berlin Mitte's associate,
reads its QR code with the camera (a fake camera that films the phone's code), takes a gift card, cash and a card
for the rest; the phone then lists the order, and the console's customer 360 shows her journey in the web, app and
store lanes, with the events analytics.js sent from every page (Product Viewed, Cart Viewed, Checkout Started, the
identify at login) next to the domain's (Product Added, Order Placed).

On every page: no console error, no failed request, every control named, text readable against its background, no
sideways scrolling at phone width. Screenshots of the main pages go to docs/screenshots/ when missing there
(``OMNI_SCREENSHOTS=1`` takes them all again). Skipped with the reason when Chromium, Playwright or analytics.js
cannot be had; an error under ``OMNI_TEST_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from omnijourney.carts import handoff
from omnijourney.customers.models import Identity
from omnijourney.shop import web
from omnijourney.tracking.models import Event
from tests.console.seed import World
from tests.console.test_browser import DESKTOP, LOW_CONTRAST, PHONE, SIDEWAYS, UNNAMED_CONTROLS
from tests.shop.conftest import GIFT_CARD
from tests.support.browser import Unavailable, analytics_js, chromium, unavailable

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
EMAIL = "lena.berg@example.com"
CAMERA = (640, 480)


def y4m(path: Path, content: str | None) -> None:
    """A one-frame Y4M video for Chromium's fake camera: the QR code of ``content`` (or nothing) on white."""
    width, height = CAMERA
    luma = bytearray(b"\xff" * (width * height))
    if content is not None:
        matrix = handoff.qr(content).matrix
        quiet, scale = 4, 9
        size = (len(matrix) + 2 * quiet) * scale
        left, top = (width - size) // 2, (height - size) // 2
        for r, row in enumerate(matrix):
            for c, dark in enumerate(row):
                if dark:
                    for y in range(top + (r + quiet) * scale, top + (r + quiet + 1) * scale):
                        start = y * width + left + (c + quiet) * scale
                        luma[start:start + scale] = b"\x00" * scale
    chroma = b"\x80" * (width // 2 * height // 2)
    data = io.BytesIO()
    data.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
    data.write(b"FRAME\n" + bytes(luma) + chroma + chroma)
    path.write_bytes(data.getvalue())


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("camera") / "camera.y4m"
    y4m(path, None)
    return path


@pytest.fixture(scope="module")
def browser(camera: Path) -> Iterator[Any]:
    """Debian's Chromium with a fake camera that films ``camera`` (the test writes the QR code there)."""
    with chromium("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                  f"--use-file-for-fake-video-capture={camera}") as launched:
        yield launched


@pytest.fixture(scope="module")
def shop(world: World) -> World:
    """The world with analytics.js on (downloaded once into the tests' cache when missing)."""
    try:
        analytics_js()
    except Unavailable as exc:
        unavailable(str(exc))
    world.app.state.shop = web.new_state(web.ShopSettings(demo_login=True, secret="tests"))
    assert world.app.state.shop.bundle.js is not None
    return world


class Device:
    """One browser (a phone, a laptop, a till): what its developer tools would show is checked on every page."""

    def __init__(self, browser: Any, base: str, name: str, *, phone: bool = False, **options: Any) -> None:
        self.base, self.name, self.phone = base, name, phone
        self.context = browser.new_context(viewport=PHONE if phone else DESKTOP, **options)
        self.context.set_default_timeout(10_000)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.expected: set[tuple[str, int]] = set()
        self.tracking: set[Any] = set()  # analytics.js's requests in flight
        self.context.on("request", lambda r: self.tracking.add(r) if "/v1/" in r.url else None)
        self.context.on("requestfinished", lambda r: self.tracking.discard(r))
        self.context.on("requestfailed", lambda r: self.tracking.discard(r))
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.problems.append(f"uncaught: {e}"))
        self.context.on("requestfailed", lambda r: self.problems.append(f"failed {r.method} {r.url}: {r.failure}"))
        self.context.on("response", self._answered)

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.problems.append(f"console.{message.type}: {message.text}")

    def _answered(self, response: Any) -> None:
        if response.status >= 400 and (response.url, response.status) not in self.expected:
            self.problems.append(f"{response.request.method} {response.url}: {response.status}")

    def open(self, path: str) -> Any:
        answer = self.page.goto(self.base + path)
        assert answer is not None and answer.status == 200, (self.name, path, answer and answer.status)
        return self.loaded()

    def loaded(self) -> Any:
        """Wait for the page and for analytics.js to have started (its events leave with keepalive)."""
        self.page.wait_for_load_state("load")
        if self.page.locator("#tracking-config").count():
            self.page.wait_for_function("() => document.documentElement.dataset.tracking === 'ready'",
                                        timeout=10_000)
            # what the page tracked has left before the test moves on (a person reads the page meanwhile; a test
            # clicks at once, and a request the page starts as it is left is reported as aborted)
            deadline = time.monotonic() + 5
            while self.tracking and time.monotonic() < deadline:
                self.page.wait_for_timeout(20)
        return self.page

    def check(self, what: str) -> None:
        page = self.page
        assert page.locator("h1").count() == 1, (self.name, what)
        assert page.evaluate(UNNAMED_CONTROLS) == [], (self.name, what)
        assert page.evaluate(LOW_CONTRAST) == [], (self.name, what)
        if not self.phone:
            page.set_viewport_size(PHONE)
        assert page.evaluate(SIDEWAYS) <= 0, f"{self.name}: {what} scrolls sideways at 375 px"
        assert page.evaluate(LOW_CONTRAST) == [], (self.name, what, "at 375 px")
        if not self.phone:
            page.set_viewport_size(DESKTOP)
        assert self.problems == [], (self.name, what, self.problems)
        if self.page.locator("#tracking-config").count():
            assert "Tracking on" in page.locator("#tracking-note").inner_text(), (self.name, what)

    def shot(self, name: str) -> None:
        path = SHOTS / f"{name}.png"
        if path.exists() and not os.environ.get("OMNI_SCREENSHOTS"):
            return
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=self.phone)

    def close(self) -> None:
        self.context.close()


def events_of(world: World, customer_id: str) -> list[Event]:
    with world.db.transaction(write=False) as s:
        return list(s.scalars(select(Event).where(Event.customer_id == customer_id).order_by(Event.id)))


def customer_of(world: World, email: str) -> str:
    with world.db.transaction(write=False) as s:
        found = s.scalar(select(Identity.customer_id).where(Identity.type == "email", Identity.value == email))
    assert found, email
    return found


def wait_for_events(world: World, customer_id: str, wanted: set[tuple[str, str]], timeout: float = 10) -> set:
    """Poll the timeline until it holds every (channel, event) of ``wanted``; what it holds then."""
    deadline = time.monotonic() + timeout
    while True:
        seen = {(e.channel, e.event or e.type) for e in events_of(world, customer_id)}
        if wanted <= seen or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def test_the_journey_from_the_phone_to_the_till_and_the_console(browser: Any, served: str, shop: World,
                                                                 camera: Path) -> None:
    world = shop
    phone = Device(browser, served, "phone", phone=True, geolocation={"latitude": 52.5163, "longitude": 13.3777},
                   permissions=["geolocation"])
    laptop = Device(browser, served, "laptop")
    till = Device(browser, served, "till")
    admin = Device(browser, served, "console")
    try:
        # ---- the phone: browse, a product, the stores near her, add to the cart, log in
        page = phone.open("/app")
        phone.check("app home")
        assert page.get_by_role("link", name="Tops").is_visible()
        page.get_by_role("link", name="Tops").click()
        phone.loaded()
        phone.check("app category")
        page.get_by_role("link", name="Basic Tee").click()
        phone.loaded()
        page.get_by_role("button", name="Use my location").click()
        page.wait_for_url("**near=52.52%2C13.38**")
        phone.loaded()
        assert page.locator("table.stores tbody tr td").first.inner_text() == "Berlin Mitte"
        phone.check("app product near her")
        page.get_by_label("Size").select_option("TEE-M")
        page.get_by_label("Quantity").fill("2")
        page.get_by_role("button", name="Add to cart").click()
        phone.loaded()
        assert "Added Basic Tee" in page.get_by_role("status").inner_text()
        assert page.get_by_role("link", name="Cart (2)").is_visible()
        phone.check("app cart")
        page.get_by_role("link", name="Log in", exact=True).click()
        phone.loaded()
        phone.check("app login")
        phone.shot("app-login-phone")
        page.get_by_label("Email").fill(EMAIL)
        page.get_by_role("button", name="Log in").click()
        phone.loaded()
        assert page.get_by_text("Hi, lena.berg@example.com").is_visible()
        lena = customer_of(world, EMAIL)
        page = phone.open("/app/p/basic-tee?sku=TEE-M")
        phone.shot("app-product-phone")

        # ---- the laptop: the web shop, logged in as her too, holds the same cart
        page = laptop.open("/shop/login")
        page.get_by_label("Email").fill(EMAIL.upper())
        page.get_by_role("button", name="Log in").click()
        laptop.loaded()
        page = laptop.open("/shop/cart")
        assert page.locator("table.cart tbody tr").count() == 1
        assert page.get_by_label(re.compile("^Quantity of Basic Tee")).input_value() == "2"
        laptop.check("web cart")
        page = laptop.open("/shop/p/jeans")
        laptop.check("web product")
        laptop.shot("shop-product")
        page.get_by_role("button", name="Add to cart").click()
        laptop.loaded()
        laptop.check("web cart with jeans")

        # ---- the phone hands the cart over; the till reads its QR code with the camera
        page = phone.open("/app/cart")
        assert page.locator("table.cart tbody tr").count() == 2  # the jeans added on the laptop
        page.get_by_role("button", name="Hand over this cart").click()
        phone.loaded()
        code = page.get_by_label("Handoff code").inner_text()
        assert re.fullmatch(r"[2-9A-HJ-NP-Z]{8}", code), code
        assert page.locator("figure.qr svg").is_visible()
        phone.check("app handoff")
        phone.shot("app-handoff-phone")
        y4m(camera, handoff.link(code, None))  # what the QR code on the phone holds, filmed by the till's camera

        page = till.open("/pos")  # the console's login, and back to the till
        assert "/console/login" in page.url
        account = world.accounts["store_associate"]
        page.get_by_label("Email").fill(account.email)
        page.get_by_label("Password").fill(account.password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(served + "/pos")
        till.loaded()
        till.check("till")
        page.get_by_role("button", name="Scan the QR code").click()
        page.wait_for_url("**/pos/sale/**", timeout=15_000)
        till.loaded()
        assert page.get_by_role("heading", level=1).inner_text() == f"Sale for {EMAIL}"  # her cart, found by code
        assert page.locator("#to-pay").inner_text() == "120.00 EUR"  # 2 tees at 20.00, the jeans at 80.00
        till.check("till sale")
        page.get_by_label("Gift card code").fill(GIFT_CARD)
        page.get_by_label("Amount from the gift card").fill("15")
        page.get_by_label("Cash").fill("50")
        page.get_by_label("Card for the rest (test provider)").select_option("pm_card_visa")
        till.shot("pos-sale")
        page.get_by_role("button", name="Take payment").click()
        till.loaded()
        assert "Paid." in page.get_by_role("status").inner_text()
        tenders = page.locator("#tenders li").all_inner_texts()
        assert [t.split(" (")[0] for t in tenders] == [
            "gift card ending DEMO: 15.00 EUR", "cash: 50.00 EUR", "card ending 4242: 55.00 EUR"]
        number = page.get_by_role("heading", level=1).inner_text().removeprefix("Order ")
        till.check("till receipt")
        till.shot("pos-receipt")

        # ---- the phone lists the order of the store
        page = phone.open("/app/orders")
        assert page.get_by_role("link", name=number).is_visible()
        assert "S01 · in store" in page.locator("table.orders").inner_text()
        phone.check("app orders")

        # ---- the console: her 360, one person, three channels
        wanted = {("app", "Product Viewed"), ("app", "Product Added"), ("app", "identify"), ("web", "Cart Viewed"),
                  ("web", "Product Viewed"), ("app", "Cart Handed Off"), ("store", "Cart Viewed"),
                  ("store", "Checkout Started"), ("store", "Order Placed")}
        seen = wait_for_events(world, lena, wanted)
        assert wanted <= seen, sorted(wanted - seen)
        page = admin.open("/console/login")
        account = world.accounts["admin"]
        page.get_by_label("Email").fill(account.email)
        page.get_by_label("Password").fill(account.password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(served + "/console")
        page = admin.open(f"/console/customers?{'q=' + EMAIL}")
        page.locator(f'a[href="/console/customers/{lena}"]').first.click()
        page.wait_for_url(f"**/console/customers/{lena}")
        page.locator("#timeline-chart .main-svg").first.wait_for()
        lanes = page.locator("#timeline-chart .ytick text").all_text_contents()
        assert sorted(lanes) == ["app", "store S01", "web"], lanes
        assert number in page.locator("main").inner_text()
        assert admin.problems == []
        admin.shot("journey-360")
    finally:
        for device in (phone, laptop, till, admin):
            device.close()
