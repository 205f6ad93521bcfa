"""The console in Debian's Chromium (Playwright), against a live server on the seeded shop: each role logs in
through the form and walks its pages with real data; on every page the browser reports no console error and no
failed request the page did not expect, every control has an accessible name, every text is readable against its
background (contrast computed from the rendered colours), and at phone width (375 px) nothing scrolls sideways.
Keyboard: Tab reaches the skip link and the main controls. A store associate hands a pickup over, an agent moves an
order on with a button, a marketer meets a 403 page. Screenshots of the main pages go to docs/screenshots/ when
missing there (``OMNI_SCREENSHOTS=1`` takes them all again).

Skipped with the reason when Chromium or Playwright is missing; an error under ``OMNI_TEST_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.console.seed import World

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}

# every visible control and link: its accessible name as a screen reader computes it, in simple form (aria-label,
# aria-labelledby, <label>, its own text, a submit's value, title)
UNNAMED_CONTROLS = """() => {
  const text = (el) => (el ? el.textContent.replace(/\\s+/g, " ").trim() : "");
  const out = [];
  for (const el of document.querySelectorAll("input, select, textarea, button, a[href]")) {
    if (el.type === "hidden") continue;
    const style = getComputedStyle(el);
    if (style.display === "none" || style.visibility === "hidden") continue;
    let name = el.getAttribute("aria-label") || "";
    if (!name && el.getAttribute("aria-labelledby")) {
      name = el.getAttribute("aria-labelledby").split(/\\s+/).map((id) => text(document.getElementById(id))).join(" ");
    }
    if (!name && el.labels && el.labels.length) name = Array.from(el.labels).map(text).join(" ");
    if (!name && (el.tagName === "BUTTON" || el.tagName === "A")) name = text(el);
    if (!name && el.type === "submit") name = el.value;
    if (!name) name = el.getAttribute("title") || "";
    if (!name.trim()) out.push(el.outerHTML.slice(0, 160));
  }
  return out;
}"""

# WCAG 2 contrast of every visible text against the background it is drawn on (the nearest opaque ancestor's):
# 4.5:1, or 3:1 for large text (24 px, or 18.66 px bold). Text inside SVG (the chart's axes) is Plotly's.
LOW_CONTRAST = """() => {
  const parse = (c) => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(",").map((x) => parseFloat(x));
    return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1};
  };
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = parse(getComputedStyle(el).backgroundColor);
      if (c && c.a > 0.99) return c;
    }
    return {r: 255, g: 255, b: 255, a: 1};
  };
  const out = [];
  const seen = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const el = node.parentElement;
    if (!node.textContent.trim() || !el || seen.has(el)) continue;
    seen.add(el);
    if (el.closest("svg, script, .skip")) continue;
    const cs = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    if (cs.display === "none" || cs.visibility === "hidden" || box.width === 0 || box.height === 0) continue;
    const fg = parse(cs.color), bg = background(el);
    const l1 = lum(fg), l2 = lum(bg);
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    const size = parseFloat(cs.fontSize), bold = parseInt(cs.fontWeight, 10) >= 700;
    const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    if (ratio < need) {
      out.push(ratio.toFixed(2) + " " + cs.color + " on rgb(" + [bg.r, bg.g, bg.b] + "): " +
               node.textContent.trim().slice(0, 40));
    }
  }
  return out;
}"""

SIDEWAYS = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
ANALYTICS_LINKS = ["KPI dashboard", "Journey map", "Funnel", "Channel paths", "Retention", "Attribution",
                   "Customer value"]  # tests/console/test_analytics.py walks them


@dataclass
class Log:
    problems: list[str] = field(default_factory=list)
    expected: set[tuple[str, int]] = field(default_factory=set)  # (url, status) a page asked for on purpose


class Tab:
    """One person's browser: a context of its own, logged in through the login form."""

    def __init__(self, browser: Any, base: str, world: World, role: str) -> None:
        self.base, self.world, self.role = base, world, role
        self.context = browser.new_context(viewport=DESKTOP)
        self.page = self.context.new_page()
        self.log = Log()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.log.problems.append(f"uncaught: {e}"))
        self.context.on("requestfailed", lambda r: self.log.problems.append(f"failed {r.method} {r.url}: {r.failure}"))
        self.context.on("response", self._answered)
        if role:
            self.log_in()

    def _console(self, message: Any) -> None:
        if message.type not in ("error", "warning"):
            return
        found = re.search(r"Failed to load resource: the server responded with a status of (\d+)", message.text)
        if found and (message.location.get("url"), int(found.group(1))) in self.log.expected:
            return  # the browser's own note of an answer the page asked for on purpose (a refused form)
        self.log.problems.append(f"console.{message.type}: {message.text}")

    def _answered(self, response: Any) -> None:
        if response.status >= 400 and (response.url, response.status) not in self.log.expected:
            self.log.problems.append(f"{response.request.method} {response.url}: {response.status}")

    def expect(self, path: str, status: int) -> None:
        self.log.expected.add((self.base + path, status))

    def log_in(self) -> None:
        account = self.world.accounts[self.role]
        self.page.goto(self.base + "/console/login")
        self.page.get_by_label("Email").fill(account.email)
        self.page.get_by_label("Password").fill(account.password)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url(self.base + "/console")

    def open(self, path: str, *, status: int = 200) -> Any:
        if status != 200:
            self.expect(path, status)
        answer = self.page.goto(self.base + path)
        assert answer is not None and answer.status == status, (self.role, path, answer and answer.status)
        self.page.wait_for_load_state("load")
        return self.page

    def check(self, what: str) -> None:
        """The checks every page must pass, at desktop and at phone width."""
        page = self.page
        if page.locator("#timeline-chart").count():  # the chart has drawn: one lane per channel
            page.locator("#timeline-chart .main-svg").first.wait_for()
        assert page.locator("h1").count() == 1, what
        assert page.evaluate(UNNAMED_CONTROLS) == [], what
        assert page.evaluate(LOW_CONTRAST) == [], what
        page.set_viewport_size(PHONE)
        assert page.evaluate(SIDEWAYS) <= 0, f"{what} scrolls sideways at 375 px"
        assert page.evaluate(LOW_CONTRAST) == [], f"{what} at 375 px"
        page.set_viewport_size(DESKTOP)
        assert self.log.problems == [], (what, self.log.problems)

    def shot(self, name: str, *, phone: bool = False) -> None:
        path = SHOTS / f"{name}.png"
        if path.exists() and not os.environ.get("OMNI_SCREENSHOTS"):
            return
        SHOTS.mkdir(parents=True, exist_ok=True)
        if phone:
            self.page.set_viewport_size(PHONE)
        self.page.screenshot(path=str(path))
        self.page.set_viewport_size(DESKTOP)

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def tabs(browser: Any, served: str, world: World) -> Iterator[dict[str, Tab]]:
    opened: dict[str, Tab] = {}

    def tab(role: str) -> Tab:
        if role not in opened:
            opened[role] = Tab(browser, served, world, role)
        return opened[role]

    yield tab  # type: ignore[misc]
    for t in opened.values():
        t.close()


def test_the_login_form_works_with_the_keyboard_alone(browser: Any, served: str, world: World) -> None:
    visitor = Tab(browser, served, world, "")
    try:
        page = visitor.open("/console/login")
        visitor.check("login")
        visitor.shot("login")
        account = world.accounts["analyst"]
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Omnijourney console"
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "email"
        page.keyboard.type(account.email)
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "password"
        page.keyboard.type("not the password")
        visitor.expect("/console/login", 401)
        page.keyboard.press("Enter")
        page.wait_for_load_state("load")
        error = page.locator(".form-error")
        assert "Wrong email or password" in error.inner_text()
        page.get_by_label("Password").fill(account.password)
        page.get_by_label("Password").press("Enter")
        page.wait_for_url(served + "/console")
        assert page.get_by_role("heading", level=1).inner_text() == "Hello, Nils Analyst"
        visitor.check("home after login")
        page.get_by_role("button", name="Log out").click()
        page.wait_for_url(served + "/console/login?reason=logged_out")
        assert "You are logged out" in page.locator("main").inner_text()
    finally:
        visitor.close()


def test_an_administrator_walks_every_page(tabs: Any, world: World) -> None:
    admin = tabs("admin")
    page = admin.open("/console")
    nav = page.get_by_role("navigation", name="Console")
    assert [a.inner_text() for a in nav.get_by_role("link").all()] == [
        "Overview", "Find a customer", "Products", "Price quote", "Price consistency", "Availability",
        "Stock movements", "Orders", "Pickup queue", "Returns", *ANALYTICS_LINKS]
    assert page.get_by_role("link", name="Overview").get_attribute("aria-current") == "page"
    admin.check("overview")
    admin.shot("overview")
    for label in ("Find a customer", "Products", "Price quote", "Price consistency", "Availability",
                  "Stock movements", "Orders", "Pickup queue", "Returns"):
        nav.get_by_role("link", name=label).click()
        page.wait_for_load_state("load")
        assert nav.get_by_role("link", name=label).get_attribute("aria-current") == "page"
        admin.check(label)
    # the customer search, typed and sent with Enter, then the 360 page and its timeline
    admin.open("/console/customers")
    page.get_by_label("Search").fill("umar@example.com")
    page.get_by_label("Search").press("Enter")
    page.wait_for_load_state("load")
    page.get_by_role("link", name="Umar Nguyen").click()
    page.wait_for_url(f"**/console/customers/{world.umar}")
    admin.check("customer 360")
    lanes = page.locator("#timeline-chart .ytick text").all_text_contents()
    assert sorted(lanes) == sorted(["web", "app", "store S01", "call center", "whatsapp"])
    assert page.get_by_role("heading", name="Why these are one person").is_visible()
    admin.shot("customer-360")
    for path, name in ((f"/console/orders/{world.orders['to_ship']['id']}", "order"),
                       ("/console/pricing/quote?channel=web&sku=TEE-M&qty=2&sku=JEANS-32&qty=1", "quote"),
                       ("/console/pricing/consistency?show=all", "consistency"),
                       ("/console/inventory/availability?sku=TEE-M&channel=web&near=52.52,13.40", "availability"),
                       ("/console/catalog/products", "products")):
        admin.open(path)
        admin.check(name)
        admin.shot(name)
    page.get_by_role("link", name="Basic Tee").click()
    page.wait_for_load_state("load")
    admin.check("product")


def test_keyboard_reaches_the_skip_link_the_navigation_and_the_search(tabs: Any) -> None:
    admin = tabs("admin")
    page = admin.open("/console/customers")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    reached = []
    for _ in range(8):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()"))
    assert reached[:3] == ["q", "by", "Search"], reached
    # from the top, Tab walks the header and the navigation in order before the page's own controls
    page.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
    page.evaluate("document.body.focus()")
    seen = []
    for _ in range(16 + len(ANALYTICS_LINKS)):
        page.keyboard.press("Tab")
        seen.append(page.evaluate("document.activeElement.textContent.trim() || document.activeElement.id"))
    for stop in ("Omnijourney console", "Log out", "Overview", "Find a customer", "Pickup queue", "q"):
        assert stop in seen, (stop, seen)
    assert seen.index("Log out") < seen.index("Overview") < seen.index("Pickup queue") < seen.index("q")


def test_the_phone_menu_opens_with_its_button(tabs: Any) -> None:
    admin = tabs("admin")
    page = admin.open("/console")
    page.set_viewport_size(PHONE)
    try:
        nav = page.get_by_role("navigation", name="Console")
        menu = page.get_by_role("button", name="Menu")
        assert not nav.is_visible() and menu.get_attribute("aria-expanded") == "false"
        menu.click()
        assert nav.is_visible() and menu.get_attribute("aria-expanded") == "true"
        assert page.evaluate(SIDEWAYS) <= 0
    finally:
        page.set_viewport_size(DESKTOP)


def test_a_store_associate_hands_a_pickup_over_at_phone_width(tabs: Any, world: World) -> None:
    sam = tabs("store_associate")
    page = sam.open("/console")
    assert "1 ready for pickup" in page.locator("main").inner_text()
    page.get_by_role("link", name="1 ready for pickup, 1 to prepare").click()
    page.wait_for_load_state("load")
    sam.check("pickup queue")
    sam.shot("pickup-queue-phone", phone=True)
    code = world.orders["ready"]["pickup_code"]
    field = page.get_by_label("Pickup code")
    field.fill("WRONG1")
    sam.expect("/console/pickups/collect", 404)
    field.press("Enter")
    page.wait_for_load_state("load")
    assert page.get_by_label("Pickup code").get_attribute("aria-invalid") == "true"
    assert "WRONG1" in page.locator("#pickup_code-error").inner_text()
    sam.check("pickup queue with an error")
    page.get_by_label("Pickup code").fill(code.lower())
    page.get_by_role("button", name="Hand over").click()
    page.wait_for_load_state("load")
    assert "Handed over" in page.get_by_role("status").inner_text()
    assert world.orders["ready"]["number"] not in page.locator("table").first.inner_text()
    sam.check("pickup queue after the handover")
    # another store's queue is refused with a page that says so
    sam.open("/console/pickups?store=S02", status=403)
    assert page.get_by_role("heading", level=1).inner_text() == "Not allowed"
    sam.check("another store")


def test_an_agent_moves_orders_on_and_sees_a_refusal_next_to_the_field(tabs: Any, world: World) -> None:
    gina = tabs("agent")
    page = gina.open(f"/console/orders/{world.orders['delivered']['id']}")
    assert page.locator(".transition-buttons").count() == 0  # delivered: returns are taken elsewhere
    target = world.orders["to_ship"]
    page = gina.open(f"/console/orders/{target['id']}")
    gina.check("order")
    assert page.locator(".transition-buttons button").all_inner_texts() == ["Mark picked", "Cancel order"]
    page.get_by_label("Note or reason (optional)").fill("packed at WH")
    page.get_by_role("button", name="Mark picked").click()
    page.wait_for_load_state("load")
    assert "is now picked" in page.get_by_role("status").inner_text()
    page.get_by_label("Carrier (optional)").fill("DHL")
    page.get_by_role("button", name="Mark shipped").click()
    page.wait_for_load_state("load")
    assert "is now shipped" in page.get_by_role("status").inner_text()
    assert page.locator(".transition-buttons button").all_inner_texts() == ["Mark delivered"]
    gina.check("order shipped")
    # a pickup made ready at Berlin Mitte, then a wrong code at the counter: refused next to the code
    pickup = world.orders["to_prepare"]
    page = gina.open(f"/console/orders/{pickup['id']}")
    assert page.get_by_label("Acting from").input_value() == "S01"  # the pickup store, by default
    for button in ("Mark picked", "Ready for pickup"):
        page.get_by_role("button", name=button).click()
        page.wait_for_load_state("load")
    gina.expect(f"/console/orders/{pickup['id']}/transitions", 409)
    page.get_by_label("Pickup code").fill("AAAAAA")
    page.get_by_role("button", name="Hand over (collected)").click()
    page.wait_for_load_state("load")
    assert page.get_by_label("Pickup code").get_attribute("aria-invalid") == "true"
    assert "does not match" in page.locator("#pickup_code-error").inner_text()
    assert page.get_by_label("Pickup code").input_value() == "AAAAAA"  # what was typed stays
    gina.check("order with a refused handover")


def test_a_marketer_sees_customers_and_prices_and_a_403_page_for_orders(tabs: Any, world: World) -> None:
    mia = tabs("marketer")
    page = mia.open("/console")
    links = page.get_by_role("navigation", name="Console").get_by_role("link").all_inner_texts()
    assert links == ["Overview", "Find a customer", "Products", "Price quote", "Price consistency", *ANALYTICS_LINKS]
    mia.open(f"/console/customers/{world.ann}")
    mia.check("customer 360 for a marketer")
    assert page.get_by_role("heading", name="Orders in every channel").count() == 0
    mia.open("/console/orders", status=403)
    assert page.get_by_role("heading", level=1).inner_text() == "Not allowed"
    assert "Your role does not open this page" in page.locator("main").inner_text()
    mia.check("denied")


def test_an_analyst_reads_orders_and_the_ledger_without_buttons(tabs: Any, world: World) -> None:
    nils = tabs("analyst")
    page = nils.open(f"/console/orders/{world.orders['to_prepare']['id']}")
    assert page.locator(".transition-buttons").count() == 0
    nils.check("order for an analyst")
    page = nils.open("/console/inventory/movements?sku=TEE-M")
    assert page.locator("tbody tr").count() >= 3
    nils.check("movements")
    page.get_by_label("Location").select_option("WH")
    page.get_by_role("button", name="Show").click()
    page.wait_for_load_state("load")
    assert set(page.locator("tbody td:nth-child(3)").all_inner_texts()) == {"WH"}
    nils.check("movements at WH")
