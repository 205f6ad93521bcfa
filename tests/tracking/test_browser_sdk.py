"""The real analytics.js (``@segment/analytics-next``, pinned) in Debian's Chromium, on a shop page served from
another origin than the API and loaded as a shop loads it, with only the hosts pointed at us: what it sends
is stored, the visitor who logs in becomes one known profile, and the browser reports nothing wrong.

Skipped with the reason when Chromium, Playwright or the npm tarball is missing; an error instead when
``OMNI_TEST_REQUIRE_BROWSER=1`` (CI). SQLite only: these tests prove the HTTP contract with a real browser,
and the storage underneath is the code every other test runs on both databases.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from omnijourney.core.errors import TooBusy
from omnijourney.db import Database
from omnijourney.tracking import segment_api
from omnijourney.tracking.models import Event, Source
from omnijourney.tracking.sources import create_source
from tests.conftest import make_key
from tests.support.browser import (
    ANALYTICS_NEXT_VERSION,
    Seen,
    Unavailable,
    analytics_js,
    chromium,
    record_requests,
    shop_server,
    unavailable,
)

pytestmark = pytest.mark.parametrize("db", ["sqlite"], indirect=True)

T = TypeVar("T")

# Segment's snippet, written out readably, with the hosts changed as a shop that uses its own endpoint changes
# them: calls made before analytics.js has loaded queue on window.analytics, each with the page it was made
# on (the "bpc" record), and the bundle replays them. ``_cdn`` is where analytics.js fetches its settings
# (GET {_cdn}/v1/projects/{writeKey}/settings), which in turn name the host events go to.
SNIPPET = """
(function () {
  var analytics = (window.analytics = []);
  analytics._writeKey = %(write_key)s;
  analytics._cdn = %(api)s;
  analytics._loadOptions = %(load_options)s;
  analytics.SNIPPET_VERSION = "5.2.1";
  ["page", "track", "identify", "group", "alias", "screen", "ready"].forEach(function (method) {
    analytics[method] = function () {
      var args = Array.prototype.slice.call(arguments);
      if (method !== "ready") {
        args.push({__t: "bpc", c: undefined, p: location.pathname, u: location.href, s: location.search,
                   t: document.title, r: document.referrer});
      }
      analytics.push([method].concat(args));
      return analytics;
    };
  });
  var script = document.createElement("script");
  script.async = true;
  script.src = "/analytics.min.js";
  document.head.appendChild(script);
})();
"""

PRODUCT_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Linen Shirt | Maison Test</title>
<link rel="icon" href="data:,">
<script>%(snippet)s</script>
<script>%(calls)s</script>
</head>
<body>
<h1>Linen Shirt</h1>
<button id="login" onclick="%(on_login)s">Log in</button>
</body>
</html>
"""
NEXT_PAGE = b"<!doctype html><title>Cart | Maison Test</title><link rel='icon' href='data:,'>"

PRODUCT_PATH = "/products/linen-shirt"


@dataclass
class BrowserLog:
    """What a person would see in the browser's developer tools."""

    console: list[str] = field(default_factory=list)  # errors, warnings and uncaught exceptions
    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # requests that failed or were answered >= 400


@pytest.fixture(scope="module")
def bundle() -> bytes:
    try:
        return analytics_js()
    except Unavailable as exc:
        reason = str(exc)
    unavailable(reason)  # outside the except block: the report shows the reason, not a chained traceback


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture(autouse=True)
def api_log(app: FastAPI) -> list[Seen]:
    """What the API receives; autouse so the recorder is in place before ``live_server`` starts the app."""
    return record_requests(app)


@pytest.fixture
def web(db: Database) -> Source:
    with db.transaction() as session:
        return create_source(session, name="Web shop", channel="web")


def shop_files(bundle: bytes, api: str, write_key: str, calls: str, on_login: str = "",
               load_options: dict[str, Any] | None = None) -> dict[str, tuple[str, bytes]]:
    """The shop: a product page with the snippet, ``calls`` made as it loads and ``on_login`` run by its
    "Log in" button; a second page; and the analytics.js bundle, which the shop hosts itself."""
    snippet = SNIPPET % {"write_key": json.dumps(write_key), "api": json.dumps(api),
                         "load_options": json.dumps(load_options or {})}
    page = PRODUCT_PAGE % {"snippet": snippet, "calls": calls, "on_login": html.escape(on_login)}
    return {PRODUCT_PATH: ("text/html; charset=utf-8", page.encode()),
            "/cart": ("text/html; charset=utf-8", NEXT_PAGE),
            "/analytics.min.js": ("text/javascript; charset=utf-8", bundle)}


def open_page(browser: Any, url: str) -> tuple[Any, BrowserLog]:
    """A new visitor (no cookies, nothing stored) on ``url``, with what the developer tools show recorded."""
    context = browser.new_context()
    page = context.new_page()
    log = BrowserLog()
    page.on("console", lambda m: log.console.append(f"console.{m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: log.console.append(f"uncaught: {e}"))
    context.on("request", lambda r: log.requests.append(r.url))
    context.on("requestfailed", lambda r: log.failed.append(f"{r.method} {r.url}: {r.failure}"))
    context.on("response", lambda r: log.failed.append(f"{r.request.method} {r.url}: {r.status}")
               if r.status >= 400 else None)
    page.goto(url)
    return page, log


def wait_for(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 10.0) -> T:
    """Poll ``read`` until ``done`` holds of its value; the last value either way."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def stored(db: Database) -> list[Event]:
    with db.transaction(write=False) as session:
        return list(session.scalars(select(Event).order_by(Event.id)))


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def test_analytics_js_on_a_shop_of_another_origin(live_server: str, db: Database, web: Source, browser: Any,
                                                   bundle: bytes, api_log: list[Seen]) -> None:
    calls = """
      analytics.page();
      analytics.track("Viewed Product", {sku: "SHIRT-LIN-M", price: 59.9, currency: "EUR"});
    """
    login = 'analytics.identify("user-1", {email: "Ann@Example.com", first_name: "Ann"})'
    with shop_server(shop_files(bundle, live_server, web.write_key, calls, login)) as shop:
        url = f"{shop}{PRODUCT_PATH}?color=white"
        page, log = open_page(browser, url)
        wait_for(lambda: stored(db), lambda rows: len(rows) >= 2)
        page.click("#login")  # the visitor, anonymous so far, logs in
        rows = wait_for(lambda: stored(db), lambda rows: len(rows) >= 3)
        page.context.close()

    assert log.console == [] and log.failed == []
    assert {origin(u) for u in log.requests} == {shop, live_server}  # nothing went to Segment's hosts
    # Cross-origin for real: settings are a simple GET; each event is a POST with an Authorization header,
    # so the browser asked first (OPTIONS) and would have refused the answer without our CORS headers.
    assert origin(shop) != live_server and {s.origin for s in api_log} == {shop}
    assert sorted((s.method, s.path, s.status) for s in api_log) == sorted(
        [("GET", f"/v1/projects/{web.write_key}/settings", 200)]
        + [(method, f"/v1/{path}", 200) for path in "pti" for method in ("OPTIONS", "POST")])
    assert {(s.content_type, s.allow_origin) for s in api_log if s.method == "POST"} == {("text/plain", "*")}

    by_type = {e.type: e for e in rows}
    assert sorted(by_type) == ["identify", "page", "track"] and len(rows) == 3
    page_view, viewed, identify = by_type["page"], by_type["track"], by_type["identify"]
    assert viewed.event == "Product Viewed"  # sent under the legacy name, stored under the spec's
    assert viewed.properties == {"sku": "SHIRT-LIN-M", "price": 59.9, "currency": "EUR"}
    anonymous_id = page_view.anonymous_id
    assert anonymous_id and {e.anonymous_id for e in rows} == {anonymous_id}  # one visitor, one cookie
    assert (page_view.user_id, viewed.user_id, identify.user_id) == (None, None, "user-1")
    assert identify.traits == {"email": "Ann@Example.com", "first_name": "Ann"}
    for e in rows:
        assert (e.channel, e.source_id) == ("web", web.id)
        assert {k: e.context["page"][k] for k in ("url", "path", "search", "title")} == {
            "url": url, "path": PRODUCT_PATH, "search": "?color=white", "title": "Linen Shirt | Maison Test"}
        assert e.context["library"] == {"name": "analytics.js", "version": f"next-{ANALYTICS_NEXT_VERSION}"}
        assert e.context["userAgent"].startswith("Mozilla/5.0")
        assert e.sent_at is not None and e.original_timestamp is not None

    # The visitor who logged in is one known profile, found by email, whose timeline holds the page view and
    # the product view they made before logging in.
    headers = {"Authorization": f"Bearer {make_key(db, 'customers:read')}"}
    found = httpx.get(f"{live_server}/api/v1/customers", params={"email": "ann@example.com"}, headers=headers)
    assert found.status_code == 200
    [profile] = found.json()
    assert profile["traits"] == {"email": "Ann@Example.com", "first_name": "Ann"}  # traits as sent
    timeline = httpx.get(f"{live_server}/api/v1/customers/{profile['id']}/timeline", headers=headers).json()
    assert sorted((i["type"], i["message_id"]) for i in timeline["items"]) == \
        sorted((e.type, e.message_id) for e in rows)
    by_cookie = httpx.get(f"{live_server}/api/v1/customers", params={"anonymous_id": anonymous_id},
                          headers=headers).json()
    assert [p["id"] for p in by_cookie] == [profile["id"]]


def test_batched_events_are_delivered_when_the_visitor_leaves(live_server: str, db: Database, web: Source,
                                                              browser: Any, bundle: bytes,
                                                              api_log: list[Seen]) -> None:
    # Batching with a long timeout holds events in the page until the visitor leaves it; analytics.js then
    # posts the batch to /v1/b as a keepalive request, which outlives the page.
    options = {"integrations": {"Segment.io": {
        "deliveryStrategy": {"strategy": "batching", "config": {"size": 50, "timeout": 60_000}}}}}
    calls = """
      analytics.page("Product");
      analytics.track("Product Added", {sku: "SHIRT-LIN-M", quantity: 1});
    """
    with shop_server(shop_files(bundle, live_server, web.write_key, calls, load_options=options)) as shop:
        page, log = open_page(browser, f"{shop}{PRODUCT_PATH}")
        page.wait_for_function("() => window.analytics.initialized === true", timeout=10_000)
        time.sleep(0.2)
        assert stored(db) == []  # held in the page
        page.goto(f"{shop}/cart")
        rows = wait_for(lambda: stored(db), lambda rows: len(rows) >= 2)
        page.context.close()

    assert log.console == [] and log.failed == []
    assert [(s.method, s.path, s.status, s.origin) for s in api_log] == [
        ("GET", f"/v1/projects/{web.write_key}/settings", 200, shop),
        ("OPTIONS", "/v1/b", 200, shop),
        ("POST", "/v1/b", 200, shop),
    ]
    assert [(e.type, e.event) for e in rows] == [("page", "Product"), ("track", "Product Added")]
    assert rows[0].anonymous_id == rows[1].anonymous_id is not None
    assert rows[1].properties == {"sku": "SHIRT-LIN-M", "quantity": 1}
    assert [e.context["page"]["path"] for e in rows] == [PRODUCT_PATH] * 2  # the page they were made on


def test_a_busy_server_is_retried_after_its_retry_after(live_server: str, db: Database, web: Source,
                                                        browser: Any, bundle: bytes, api_log: list[Seen],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # The first write answers 429 with Retry-After: 1. analytics.js can only honour it if the browser lets
    # it read that header across origins; otherwise it retries on its own schedule, well under a second.
    real_ingest = segment_api.ingest
    refused: list[bool] = []

    def busy_once(*args: Any, **kwargs: Any) -> Any:
        if not refused:
            refused.append(True)
            raise TooBusy("ingestion is saturated; retry shortly", retry_after=1)
        return real_ingest(*args, **kwargs)

    monkeypatch.setattr(segment_api, "ingest", busy_once)
    calls = 'analytics.track("Product Viewed", {sku: "SHIRT-LIN-M"});'
    with shop_server(shop_files(bundle, live_server, web.write_key, calls)) as shop:
        page, log = open_page(browser, f"{shop}{PRODUCT_PATH}")
        rows = wait_for(lambda: stored(db), lambda rows: len(rows) >= 1)
        page.context.close()

    posts = [s for s in api_log if s.method == "POST"]
    assert [(s.path, s.status) for s in posts] == [("/v1/t", 429), ("/v1/t", 200)]
    assert posts[1].at - posts[0].at >= 1.0  # waited as asked
    assert [(e.type, e.event) for e in rows] == [("track", "Product Viewed")]
    # The refusal is the one thing the developer tools show; nothing else went wrong.
    assert log.failed == [f"POST {live_server}/v1/t: 429"]
    assert len(log.console) == 1 and "429" in log.console[0], log.console
