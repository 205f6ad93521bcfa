"""The console's returns desk over HTTP: an order of any channel found by number, pickup code, email or phone; lines
taken back at a store's counter or by the call center into a warehouse (damaged ones into quarantine), an exchange
for another size; the receipt with the refund over the original tenders and the stock where the units went; every
refusal (window closed, returned twice, never bought, another store, an order not yet with the shopper) is the
domain's message next to its line, and nothing changed. The browser test is in test_browser_returns.py."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from omnijourney.core.time import utcnow
from omnijourney.inventory import stock
from omnijourney.orders.models import Order, OrderHistory, Return
from omnijourney.payments import providers
from omnijourney.payments.models import Payment
from tests.conftest import make_key
from tests.console.seed import CARD, World
from tests.console.test_pages import csrf, field_error, form_error, log_in
from tests.factories import run_jobs

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
TIMES = "\N{MULTIPLICATION SIGN}"


@pytest.fixture(scope="module")
def client(world: World) -> TestClient:
    return TestClient(world.app)


@pytest.fixture(scope="module")
def api(world: World) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(world.db, 'admin', name='returns')}"}


def delivered(world: World, client: TestClient, api: dict[str, str], *lines: tuple[str, int], channel: str = "web",
              customer: str | None = None) -> dict[str, Any]:
    """A fresh order bought in ``channel``, shipped home and delivered (each test takes back its own)."""
    r = client.post("/api/v1/carts", json={"channel": channel, "customer_id": customer or world.ann}, headers=api)
    cid = r.json()["id"]
    for sku, q in lines:
        assert client.post(f"/api/v1/carts/{cid}/lines", json={"sku": sku, "quantity": q, "channel": channel},
                           headers=api).status_code in (200, 201)
    r = client.post(f"/api/v1/carts/{cid}/checkout", headers={**api, "Idempotency-Key": f"k-{cid}"},
                    json={"channel": channel, "payments": [CARD], "fulfilment": {
                        "mode": "ship", "ship_to": {"city": "Berlin", "latitude": 52.5, "longitude": 13.4}}})
    assert r.status_code == 201, r.text
    order = r.json()
    run_jobs(world.db)  # the capture
    for to in ("picked", "shipped", "delivered"):
        r = client.post(f"/api/v1/orders/{order['id']}/transitions", json={"to": to, "channel": channel},
                        headers=api)
        assert r.status_code == 200, r.text
    return r.json()


def on_hand(world: World, sku: str, location: str) -> int:
    with world.db.transaction(write=False) as s:
        return stock.level(s, sku, location).on_hand


def state(world: World, order_id: str) -> tuple[str, str, int]:
    """The order's status, what it refunded, and how many returns it has."""
    with world.db.transaction(write=False) as s:
        o = s.get(Order, order_id)
        assert o is not None
        n = s.scalar(select(func.count()).select_from(Return).where(Return.order_id == order_id)) or 0
        return o.status, str(o.refunded), n


def send(client: TestClient, order_id: str, **fields: Any) -> Any:
    page = client.get(f"/console/returns/{order_id}")
    assert page.status_code == 200, page.text
    body = {"csrf_token": csrf(page.text), "sku-0": fields.pop("sku", None) or _skus(page.text)[0], **fields}
    return client.post(f"/console/returns/{order_id}", data=body, follow_redirects=False)


def _skus(page: str) -> list[str]:
    return re.findall(r'name="sku-\d+" value="([^"]+)"', page)


def text_of(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


# ---------------------------------------------------------------- finding the order

def test_an_order_is_found_by_number_pickup_code_email_or_phone(client: TestClient, world: World) -> None:
    log_in(client, world, "agent")
    number = world.orders["delivered"]["number"]
    for q in (number, number.lower(), world.orders["delivered"]["id"]):
        r = client.get("/console/returns", params={"q": q}, follow_redirects=False)
        assert (r.status_code, r.headers["location"]) == (303, f"/console/returns/{world.orders['delivered']['id']}")
    code = world.orders["ready"]["pickup_code"]
    r = client.get("/console/returns", params={"q": code.lower()}, follow_redirects=False)
    assert r.headers["location"] == f"/console/returns/{world.orders['ready']['id']}"
    by_email = client.get("/console/returns", params={"q": "ANN@example.com"}).text
    for name in ("delivered", "till", "to_prepare"):
        assert world.orders[name]["number"] in by_email
    assert world.orders["ready"]["number"] not in by_email  # Umar's
    by_phone = client.get("/console/returns", params={"q": "+49 30 23125 001"}).text
    assert world.orders["ready"]["number"] in by_phone and world.orders["till"]["number"] not in by_phone
    nobody = client.get("/console/returns", params={"q": "nobody@example.com"})
    assert nobody.status_code == 200 and "No order has this email" in nobody.text
    unknown = client.get("/console/returns", params={"q": "O-NOSUCH"})
    assert unknown.status_code == 404 and "no order has the number" in field_error(unknown.text, "q")
    bad = client.get("/console/returns", params={"q": "ann@"})
    assert bad.status_code == 422 and "not an email address" in field_error(bad.text, "q")


# ---------------------------------------------------------------- taking goods back

def test_bought_online_taken_back_at_the_store_counter_with_the_refund_and_the_stock(client: TestClient, world: World,
                                                                                    api: dict[str, str]) -> None:
    order = delivered(world, client, api, ("JEANS-32", 2))
    before = on_hand(world, "JEANS-32", "S01")
    log_in(client, world, "store_associate")
    page = client.get(f"/console/returns/{order['id']}").text
    assert "2 bought, 0 back already; 80.00 EUR each; may come back until" in text_of(page)
    r = send(client, order["id"], channel="S01", **{"qty-0": "1", "reason-0": "too long", "condition-0": "resellable"})
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith(f"/console/returns/{order['id']}?channel=S01&done=")
    receipt = client.get(r.headers["location"]).text
    said = text_of(receipt)
    assert f"1 {TIMES} JEANS-32 taken back at S01; 80.00 EUR refunded to the original tenders" in said
    assert re.search(r"card visa ••4242 80\.00 EUR pending", said), said
    assert re.search(rf"JEANS-32 1 S01 {before + 1}", said), said
    assert on_hand(world, "JEANS-32", "S01") == before + 1
    assert state(world, order["id"]) == ("partly_returned", "80.00", 1)
    run_jobs(world.db)  # the refund job sends it to the provider
    assert re.search(r"card visa ••4242 80\.00 EUR succeeded", text_of(client.get(r.headers["location"]).text))
    # what is left can come back later: the form offers the one unit still out
    assert "2 bought, 1 back already" in text_of(client.get(f"/console/returns/{order['id']}").text)


def test_the_call_center_takes_a_damaged_item_back_into_quarantine(client: TestClient, world: World,
                                                                  api: dict[str, str]) -> None:
    order = delivered(world, client, api, ("TEE-S", 1), ("TEE-M", 1))
    quarantined = on_hand(world, "TEE-S", "QUAR")
    log_in(client, world, "agent")
    page = client.get(f"/console/returns/{order['id']}").text
    assert _skus(page) == ["TEE-M", "TEE-S"]
    assert re.search(r'<option value="web" selected>', page)  # where the order was sold: the shop has no call center
    assert re.search(r'<option value="WH" selected>', page)  # so the goods come back by post, to the warehouse
    fields = {"channel": "web", "sku-0": "TEE-M", "sku-1": "TEE-S", "qty-1": "1", "reason-1": "torn seam",
              "condition-1": "damaged"}
    # without a place: a store's counter is not where a parcel arrives, so the page asks where
    nowhere = send(client, order["id"], **fields)
    assert nowhere.status_code == 422 and "say where the goods are received" in field_error(nowhere.text, "location")
    assert state(world, order["id"])[2] == 0
    r = send(client, order["id"], location="WH", **fields)
    assert r.status_code == 303, r.text
    said = text_of(client.get(r.headers["location"]).text)
    assert f"1 {TIMES} TEE-S taken back at WH; 20.00 EUR refunded" in said
    assert re.search(rf"TEE-S 1 QUAR \(quarantine: not sold\) {quarantined + 1}", said), said
    assert state(world, order["id"]) == ("partly_returned", "20.00", 1)


def test_a_refund_the_provider_refuses_is_on_the_order_page_with_what_to_do(client: TestClient, world: World,
                                                                            api: dict[str, str]) -> None:
    order = delivered(world, client, api, ("TEE-M", 1))
    with world.db.transaction(write=False) as s:
        ref = s.scalar(select(Payment.provider_ref).where(Payment.order_id == order["id"]))
    # refunded in full at the provider behind the shop's back: the return's refund is refused there
    providers.get("test", world.db).refund(ref=ref, amount=Decimal(order["total"]), currency="EUR",
                                           idempotency_key=f"elsewhere:{ref}")
    log_in(client, world, "store_associate")
    r = send(client, order["id"], channel="S01", **{"qty-0": "1", "reason-0": "too small",
                                                    "condition-0": "resellable"})
    assert r.status_code == 303, r.text
    run_jobs(world.db)
    said = text_of(client.get(f"/console/orders/{order['id']}").text)
    assert re.search(r"18\.00 EUR card ••4242 failed Refund amount \(1800\) is greater than unrefunded amount on "
                     r"charge \(0\); refund it another way", said), said
    log_in(client, world, "agent")  # and the call center sees it on the customer's timeline
    assert "Refund Failed" in text_of(client.get(f"/console/customers/{world.ann}").text)


def test_an_exchange_for_another_size_at_the_counter(client: TestClient, world: World, api: dict[str, str]) -> None:
    order = delivered(world, client, api, ("TEE-M", 1))
    log_in(client, world, "store_associate")
    page = client.get(f"/console/returns/{order['id']}").text
    sizes = re.findall(r'<option value="(TEE-\w+)">Basic Tee \(TEE-\w+\)</option>', page)
    assert sizes == ["TEE-S", "TEE-M"]  # the product's sizes, in the catalog's order
    r = send(client, order["id"], channel="S01", **{"qty-0": "1", "reason-0": "too big", "exchange-0": "TEE-S"})
    assert r.status_code == 303, r.text
    said = text_of(client.get(r.headers["location"]).text)
    assert f"1 {TIMES} TEE-M taken back at S01; nothing to refund" in said
    assert re.search(r"Exchange: order O-\w+ \(collected\), paid by the goods returned", said), said
    assert state(world, order["id"]) == ("returned", "0.00", 1)


# ---------------------------------------------------------------- refusals: the domain's message, nothing changed

def test_returned_twice_is_refused_with_the_reason(client: TestClient, world: World, api: dict[str, str]) -> None:
    order = delivered(world, client, api, ("TEE-S", 2))
    log_in(client, world, "store_associate")
    page = client.get(f"/console/returns/{order['id']}").text  # a page opened before the first return was taken
    form = {"csrf_token": csrf(page), "channel": "S01", "sku-0": "TEE-S", "qty-0": "1", "reason-0": "too small"}
    assert client.post(f"/console/returns/{order['id']}", data=form, follow_redirects=False).status_code == 303
    shelf = on_hand(world, "TEE-S", "S01")
    # the same page sent for both units: one of them came back already
    again = client.post(f"/console/returns/{order['id']}", data={**form, "qty-0": "2"}, follow_redirects=False)
    assert again.status_code == 409
    message = "TEE-S: 2 bought, 1 returned already; 1 can come back"
    assert form_error(again.text) == f"Nothing was taken back: {message}"
    assert field_error(again.text, "qty-0") == message
    assert state(world, order["id"]) == ("partly_returned", "20.00", 1) and on_hand(world, "TEE-S", "S01") == shelf
    # the last unit, then the same form once more (a double click): the order has nothing left to take back
    form["qty-0"] = "1"
    assert client.post(f"/console/returns/{order['id']}", data=form, follow_redirects=False).status_code == 303
    twice = client.post(f"/console/returns/{order['id']}", data=form, follow_redirects=False)
    assert twice.status_code == 409
    assert form_error(twice.text) == (f"Nothing was taken back: order {order['number']} is returned: nothing can "
                                      "come back")
    assert state(world, order["id"]) == ("returned", "40.00", 2) and on_hand(world, "TEE-S", "S01") == shelf + 1


def test_outside_the_window_the_line_says_so_and_a_forced_return_is_refused(client: TestClient, world: World,
                                                                           api: dict[str, str]) -> None:
    order = delivered(world, client, api, ("TEE-M", 1))
    with world.db.transaction() as s:  # delivered 40 days ago
        s.execute(update(OrderHistory).where(OrderHistory.order_id == order["id"])
                  .values(at=utcnow() - timedelta(days=40)))
    closed = (utcnow() - timedelta(days=10)).date()
    message = f"TEE-M: the 30-day return window closed on {closed}"
    log_in(client, world, "agent")
    page = client.get(f"/console/returns/{order['id']}").text
    assert message in page and 'name="qty-0"' not in page  # nothing to type for that line
    shelf = on_hand(world, "TEE-M", "S01")
    r = send(client, order["id"], channel="S01", **{"qty-0": "1", "reason-0": "changed mind"})
    assert r.status_code == 409
    assert form_error(r.text) == f"Nothing was taken back: {message}"
    assert state(world, order["id"]) == ("delivered", "0.00", 0) and on_hand(world, "TEE-M", "S01") == shelf


def test_never_bought_no_reason_and_bad_numbers_are_refused_by_name(client: TestClient, world: World,
                                                                   api: dict[str, str]) -> None:
    order = delivered(world, client, api, ("TEE-S", 1))
    log_in(client, world, "agent")
    never = send(client, order["id"], channel="S01", sku="JEANS-32", **{"qty-0": "1", "reason-0": "x"})
    assert never.status_code == 422
    assert f"JEANS-32 was never bought in order {order['number']}" in field_error(never.text, "qty-0")
    why = send(client, order["id"], channel="S01", **{"qty-0": "1", "reason-0": " "})
    assert why.status_code == 422 and "say why it comes back" in field_error(why.text, "reason-0")
    assert why.text.count('value="1"') >= 1  # what was typed stays
    for typed in ("two", "-1", "10000"):
        bad = send(client, order["id"], channel="S01", **{"qty-0": typed, "reason-0": "x"})
        assert bad.status_code == 422 and "whole number" in field_error(bad.text, "qty-0")
    nothing = send(client, order["id"], channel="S01", **{"qty-0": "0"})
    assert nothing.status_code == 422 and "how many of which line" in form_error(nothing.text)
    assert state(world, order["id"]) == ("delivered", "0.00", 0)


def test_an_order_not_yet_with_the_shopper_offers_no_form(client: TestClient, world: World) -> None:
    log_in(client, world, "agent")
    page = client.get(f"/console/returns/{world.orders['to_prepare']['id']}").text
    assert "Nothing of this order can come back" in page and "cancel it instead" in page
    assert "Take the return" not in page


def test_a_store_associate_takes_returns_in_their_own_store_only(client: TestClient, world: World,
                                                               api: dict[str, str]) -> None:
    order = delivered(world, client, api, ("TEE-S", 1))
    log_in(client, world, "store_associate")
    page = client.get(f"/console/returns/{order['id']}").text
    assert re.findall(r'<option value="(S\d\d)"', page) == ["S01", "S01"]  # the channel and the shelf: theirs
    other = send(client, order["id"], channel="S02", **{"qty-0": "1", "reason-0": "x"})
    assert other.status_code == 403 and "works in S01 only" in other.text
    warehouse = send(client, order["id"], channel="S01", location="WH", **{"qty-0": "1", "reason-0": "x"})
    assert warehouse.status_code == 403
    assert state(world, order["id"]) == ("delivered", "0.00", 0)


def test_a_forged_form_is_refused_without_its_token(client: TestClient, world: World, api: dict[str, str]) -> None:
    order = delivered(world, client, api, ("TEE-S", 1))
    log_in(client, world, "agent")
    r = client.post(f"/console/returns/{order['id']}", data={"channel": "S01", "sku-0": "TEE-S", "qty-0": "1",
                                                             "reason-0": "x", "csrf_token": "forged"})
    assert r.status_code == 403 and 'data-error-code="csrf_failed"' in r.text
    assert state(world, order["id"]) == ("delivered", "0.00", 0)


def test_nothing_typed_into_the_returns_desk_is_a_500(client: TestClient, world: World, api: dict[str, str]) -> None:
    from tests.console.test_pages import NASTY

    order = delivered(world, client, api, ("TEE-S", 1))
    log_in(client, world, "admin")
    for template in ("/console/returns?q={v}", "/console/returns/{v}", "/console/returns/{o}?channel={v}&done={v}"):
        for value in NASTY:
            r = client.get(template.format(v=value, o=order["id"]))
            assert r.status_code < 500, (template, value, r.status_code, r.text[-500:])
            assert "<script>alert(1)</script>" not in r.text
    token = csrf(client.get("/console").text)
    good = {"csrf_token": token, "channel": "S01", "sku-0": "TEE-S", "qty-0": "1", "reason-0": "x"}
    for value in ("\x00", "x" * 5000, "\ud7ff", "Z" * 17, "<script>alert(1)</script>"):
        for name in ("channel", "location", "sku-0", "qty-0", "reason-0", "condition-0", "exchange-0"):
            if name == "reason-0" and len(value) < 200 and "\x00" not in value:
                continue  # a fine reason
            r = client.post(f"/console/returns/{order['id']}", data={**good, name: value}, follow_redirects=False)
            assert r.status_code < 500 and r.status_code != 303, (name, value, r.status_code, r.text[-300:])
            assert "<script>alert(1)</script>" not in r.text
    assert state(world, order["id"]) == ("delivered", "0.00", 0)
