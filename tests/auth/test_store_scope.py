"""A store associate acts only in their own stores: every route that acts in a channel or at a location refuses
another store's code (or a warehouse) with 403 ``store_not_allowed`` naming the field; in their store it works."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from omnijourney.db import Database
from tests.factories import run_jobs
from tests.factories_inventory import network, priced, stock_up
from tests.factories_staff import login, staff
from tests.orders.test_checkout import CARD, cart, checkout, level

ORDER = "01a0000000000000000000000000000f"  # made up: the store check comes before the order is looked up
LINE = {"sku": "TEE-M", "quantity": 1}
RETURN_LINE = {"sku": "TEE-M", "quantity": 1, "reason": "too small"}

# (method, path, body naming another store's code (or a place of no store), the field the 403 names)
ELSEWHERE: list[tuple[str, str, dict[str, Any], str]] = [
    ("POST", "/api/v1/inventory/receipts", {"sku": "TEE-M", "location": "S02", "quantity": 1}, "location"),
    ("POST", "/api/v1/inventory/receipts", {"sku": "TEE-M", "location": "WH", "quantity": 1}, "location"),
    ("POST", "/api/v1/inventory/adjustments", {"sku": "TEE-M", "location": "S02", "delta": -1, "reason": "lost"},
     "location"),
    ("POST", "/api/v1/inventory/counts", {"sku": "TEE-M", "location": "S02", "counted": 0}, "location"),
    ("PUT", "/api/v1/inventory/safety-stock", {"sku": "TEE-M", "location": "S02", "safety_stock": 1}, "location"),
    ("POST", "/api/v1/inventory/transfers", {"sku": "TEE-M", "from": "WH", "to": "S01", "quantity": 1}, "from"),
    ("POST", "/api/v1/inventory/reservations", {"channel": "S02", "lines": [{**LINE, "location": "S02"}]},
     "channel"),
    ("POST", "/api/v1/inventory/reservations", {"channel": "S01", "lines": [{**LINE, "location": "S02"}]},
     "lines.0.location"),
    ("POST", "/api/v1/inventory/sales", {"channel": "S02", "lines": [{**LINE, "location": "S02"}]}, "channel"),
    ("POST", "/api/v1/inventory/sales", {"channel": "S01", "lines": [{**LINE, "location": "WH"}]},
     "lines.0.location"),
    ("POST", "/api/v1/locations", {"code": "S09", "name": "Mine now", "type": "store", "channel_code": "S02"},
     "channel_code"),
    ("POST", "/api/v1/locations", {"code": "WH2", "name": "A warehouse", "type": "warehouse"}, "channel_code"),
    ("PATCH", "/api/v1/locations/S02", {"online_floor": 0}, "code"),
    ("POST", "/api/v1/carts/01a0000000000000000000000000000c/checkout",
     {"channel": "S02", "payments": [{"method": "cash"}], "fulfilment": {"mode": "in_store"}}, "channel"),
    ("POST", f"/api/v1/orders/{ORDER}/transitions", {"to": "picked", "channel": "S02"}, "channel"),
    ("POST", f"/api/v1/orders/{ORDER}/transitions", {"to": "shipped", "channel": "S01", "location": "WH"},
     "location"),
    ("POST", f"/api/v1/orders/{ORDER}/payments", {"channel": "S02", "payments": [{"method": "cash"}]}, "channel"),
    ("POST", f"/api/v1/orders/{ORDER}/returns", {"channel": "S02", "lines": [RETURN_LINE]}, "channel"),
    ("POST", f"/api/v1/orders/{ORDER}/returns", {"channel": "S01", "location": "S02", "lines": [RETURN_LINE]},
     "location"),
]


@pytest.fixture
def berlin(db: Database, client: TestClient) -> dict[str, str]:
    """The network (stores S01-S03, warehouse WH), priced and stocked; the headers of an associate of S01."""
    network(db)
    priced(db)
    stock_up(db, {("TEE-M", "WH"): 10, ("TEE-M", "S01"): 3, ("TEE-M", "S02"): 4, ("JEANS-32", "S01"): 2})
    return login(client, staff(db, "store_associate", stores=["S01"])).headers


def test_another_store_is_refused_naming_the_field(client: TestClient, db: Database, berlin: dict[str, str],
                                                   admin_headers: dict[str, str]) -> None:
    for method, path, body, field in ELSEWHERE:  # one network for all: building it is the slow part
        r = client.request(method, path, json=body, headers=berlin)
        assert (r.status_code, r.json()["code"], r.json()["field"]) == (403, "store_not_allowed", field), \
            (method, path, body, r.text)
        assert "S01" in r.json()["message"]
        # an admin may act in any store (the request may still fail for other reasons: made-up ids)
        assert client.request(method, path, json=body, headers=admin_headers).status_code != 403, (method, path)


def test_an_associate_works_at_their_own_store(client: TestClient, db: Database, berlin: dict[str, str],
                                               admin_headers: dict[str, str]) -> None:
    h = berlin
    assert client.post("/api/v1/inventory/receipts", json={"sku": "TEE-M", "location": "S01", "quantity": 2},
                       headers=h).status_code == 201
    assert client.post("/api/v1/inventory/counts", json={"sku": "TEE-M", "location": "S01", "counted": 5},
                       headers=h).status_code == 201
    assert client.patch("/api/v1/locations/S01", json={"online_floor": 1}, headers=h).status_code == 200
    sale = client.post("/api/v1/inventory/sales", json={"channel": "S01", "lines": [{**LINE, "location": "S01"}]},
                       headers=h)
    assert sale.status_code == 201, sale.text
    held = client.post("/api/v1/inventory/reservations",
                       json={"channel": "S01", "lines": [{**LINE, "location": "S01"}]}, headers=h)
    assert held.status_code == 201
    assert client.post(f"/api/v1/inventory/reservations/{held.json()['id']}/release", headers=h).status_code == 200
    # a transfer into their store is theirs to receive; one into another store is not
    into_s01 = client.post("/api/v1/inventory/transfers", json={"sku": "TEE-M", "from": "WH", "to": "S01",
                                                                "quantity": 1}, headers=admin_headers).json()
    into_s02 = client.post("/api/v1/inventory/transfers", json={"sku": "TEE-M", "from": "S01", "to": "S02",
                                                                "quantity": 1}, headers=h)
    assert into_s02.status_code == 201  # sent from their shelf
    assert client.post(f"/api/v1/inventory/transfers/{into_s01['id']}/receive", headers=h).status_code == 200
    r = client.post(f"/api/v1/inventory/transfers/{into_s02.json()['id']}/receive", headers=h)
    assert (r.status_code, r.json()["field"]) == (403, "transfer_id")
    # a reservation made in another store's channel is not theirs to release
    other = client.post("/api/v1/inventory/reservations",
                        json={"channel": "S02", "lines": [{**LINE, "location": "S02"}]}, headers=admin_headers)
    r = client.post(f"/api/v1/inventory/reservations/{other.json()['id']}/release", headers=h)
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (403, "store_not_allowed", "reservation_id")


def test_an_associate_sells_collects_and_takes_returns_at_their_store(
        client: TestClient, db: Database, berlin: dict[str, str], admin_headers: dict[str, str]) -> None:
    h = berlin
    till = cart(client, h, "S01", ("JEANS-32", 1))
    sold = checkout(client, h, till["id"], channel="S01", fulfilment={"mode": "in_store"},
                    payments=[{"method": "cash"}])
    assert sold.status_code == 201 and sold.json()["status"] == "collected"
    assert level(db, "JEANS-32", "S01") == (1, 0)

    # click and collect at S01, ordered in the app: the associate of S01 hands it over, one of S02 may not
    online = cart(client, admin_headers, "app", ("TEE-M", 1), anonymous_id="anon-2")
    order = checkout(client, admin_headers, online["id"], channel="app",
                     fulfilment={"mode": "pickup", "location": "S01"}, payments=[CARD]).json()
    run_jobs(db)
    hamburg = login(client, staff(db, "store_associate", email="s02@shop.example", stores=["S02"])).headers
    move = f"/api/v1/orders/{order['id']}/transitions"
    r = client.post(move, json={"to": "picked", "channel": "S01"}, headers=hamburg)
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (403, "store_not_allowed", "channel")
    assert client.post(move, json={"to": "picked", "channel": "S01"}, headers=h).status_code == 200
    code = client.post(move, json={"to": "ready_for_pickup", "channel": "S01"}, headers=h).json()["pickup_code"]
    assert client.post(move, json={"to": "collected", "channel": "S01", "pickup_code": code},
                       headers=h).json()["status"] == "collected"
    back = client.post(f"/api/v1/orders/{order['id']}/returns", json={"channel": "S01", "lines": [RETURN_LINE]},
                       headers=h)
    assert back.status_code == 201, back.text
    # an agent works for every store
    agent = login(client, staff(db, "agent")).headers
    r = client.post(f"/api/v1/orders/{order['id']}/transitions", json={"to": "cancelled", "channel": "S02"},
                    headers=agent)
    assert r.status_code not in (401, 403)
