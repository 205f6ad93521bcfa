"""Stock as a retailer's systems send it: receipts, adjustments, counts, transfers, and the ledger that rebuilds it."""

from __future__ import annotations

from sqlalchemy import func, select, text

from omnijourney.inventory import stock
from omnijourney.inventory.models import StockMovement
from tests.factories_inventory import network, stock_up


def _level(client, headers, sku: str, location: str) -> dict:
    found = client.get("/api/v1/inventory/levels", params={"sku": sku, "location": location}, headers=headers)
    assert found.status_code == 200, found.text
    return found.json()[0] if found.json() else {"on_hand": 0, "reserved": 0}


def test_receipts_adjustments_and_counts_move_on_hand_and_the_ledger_rebuilds_it(db, client, admin_headers):
    network(db)
    h = admin_headers
    got = client.post("/api/v1/inventory/receipts", json={"sku": "TEE-M", "location": "WH", "quantity": 40,
                                                          "ref": "PO-1"}, headers=h)
    assert got.status_code == 201, got.text
    assert got.json()["on_hand"] == 40
    got = client.post("/api/v1/inventory/adjustments", json={"sku": "TEE-M", "location": "WH", "delta": -3,
                                                             "reason": "damaged in handling"}, headers=h)
    assert got.status_code == 201 and got.json()["on_hand"] == 37
    got = client.post("/api/v1/inventory/counts", json={"sku": "TEE-M", "location": "WH", "counted": 35}, headers=h)
    assert got.status_code == 201 and got.json()["on_hand"] == 35
    ledger = client.get("/api/v1/inventory/movements", params={"sku": "TEE-M", "location": "WH"}, headers=h).json()
    assert [(m["kind"], m["on_hand_delta"]) for m in ledger["items"]] == [("count", -2), ("adjustment", -3),
                                                                          ("receipt", 40)]
    assert ledger["items"][0]["counted"] == 35 and ledger["items"][1]["reason"] == "damaged in handling"
    with db.transaction() as s:
        assert stock.check(s) == []


def test_a_movement_that_would_make_stock_negative_is_refused_and_changes_nothing(db, client, admin_headers):
    network(db)
    stock_up(db, {("TEE-M", "S01"): 2})
    h = admin_headers
    with db.transaction() as s:
        before = s.scalar(select(func.count()).select_from(StockMovement))
    got = client.post("/api/v1/inventory/adjustments", json={"sku": "TEE-M", "location": "S01", "delta": -3,
                                                             "reason": "lost"}, headers=h)
    assert got.status_code == 409 and got.json()["code"] == "negative_stock"
    assert "2 on hand" in got.json()["message"] and got.json()["field"] == "delta"
    assert _level(client, h, "TEE-M", "S01")["on_hand"] == 2
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(StockMovement)) == before


def test_bad_input_names_the_field(db, client, admin_headers):
    network(db)
    h = admin_headers
    cases = [
        ({"sku": "NOPE", "location": "WH", "quantity": 1}, 404, "sku"),
        ({"sku": "TEE-M", "location": "NOWHERE", "quantity": 1}, 404, "location"),
        ({"sku": "TEE-M", "location": "WH", "quantity": 0}, 422, "quantity"),
        ({"sku": "TEE-M", "location": "WH", "quantity": "3"}, 422, "quantity"),
        ({"sku": "TEE-M", "location": "WH", "quantity": True}, 422, "quantity"),
    ]
    for body, status, field in cases:
        got = client.post("/api/v1/inventory/receipts", json=body, headers=h)
        assert got.status_code == status, (body, got.text)
        assert got.json()["field"] == field, (body, got.json())
    got = client.post("/api/v1/inventory/adjustments", json={"sku": "TEE-M", "location": "WH", "delta": 2,
                                                             "reason": " "}, headers=h)
    assert got.status_code == 422 and got.json()["field"] == "reason"


def test_a_count_below_what_is_reserved_is_refused(db, client, admin_headers):
    network(db)
    stock_up(db, {("TEE-M", "WH"): 5})
    h = admin_headers
    held = client.post("/api/v1/inventory/reservations", json={"channel": "web", "lines": [
        {"sku": "TEE-M", "location": "WH", "quantity": 4}]}, headers=h)
    assert held.status_code == 201, held.text
    got = client.post("/api/v1/inventory/counts", json={"sku": "TEE-M", "location": "WH", "counted": 3}, headers=h)
    assert got.status_code == 409 and got.json()["code"] == "count_below_reserved"
    assert _level(client, h, "TEE-M", "WH")["on_hand"] == 5


def test_a_transfer_goes_through_transit_and_arrives_once(db, client, admin_headers):
    network(db)
    stock_up(db, {("JEANS-32", "WH"): 10})
    h = admin_headers
    sent = client.post("/api/v1/inventory/transfers", json={"sku": "JEANS-32", "from": "WH", "to": "S02",
                                                            "quantity": 4}, headers=h)
    assert sent.status_code == 201, sent.text
    assert sent.json()["via"] == "TRANSIT" and sent.json()["status"] == "shipped"
    assert _level(client, h, "JEANS-32", "WH")["on_hand"] == 6
    assert _level(client, h, "JEANS-32", "TRANSIT")["on_hand"] == 4
    assert _level(client, h, "JEANS-32", "S02")["on_hand"] == 0
    tid = sent.json()["id"]
    got = client.post(f"/api/v1/inventory/transfers/{tid}/receive", headers=h)
    assert got.status_code == 200 and got.json()["status"] == "received"
    assert _level(client, h, "JEANS-32", "S02")["on_hand"] == 4
    assert _level(client, h, "JEANS-32", "TRANSIT")["on_hand"] == 0
    again = client.post(f"/api/v1/inventory/transfers/{tid}/receive", headers=h)
    assert again.status_code == 409 and again.json()["code"] == "transfer_received"
    too_many = client.post("/api/v1/inventory/transfers", json={"sku": "JEANS-32", "from": "WH", "to": "S02",
                                                                "quantity": 7}, headers=h)
    assert too_many.status_code == 409
    with db.transaction() as s:
        assert stock.check(s) == []


def test_check_finds_a_level_that_its_ledger_does_not_explain(db):
    network(db)
    stock_up(db, {("TEE-S", "WH"): 8, ("TEE-M", "S01"): 3})
    with db.transaction() as s:
        assert stock.check(s) == []
        s.execute(text("UPDATE stock_levels SET on_hand = 9 WHERE sku = 'TEE-S' AND location_code = 'WH'"))
    with db.transaction() as s:
        found = stock.check(s)
    assert [(d.sku, d.location, d.on_hand, d.ledger_on_hand) for d in found] == [("TEE-S", "WH", 9, 8)]


def test_the_database_itself_refuses_negative_stock(db):
    """A bug that bypassed the guards would still not oversell: the CHECK constraints refuse it."""
    import pytest
    from sqlalchemy.exc import IntegrityError

    network(db)
    stock_up(db, {("TEE-S", "WH"): 1})
    with pytest.raises(IntegrityError), db.transaction() as s:
        s.execute(text("UPDATE stock_levels SET reserved = 2 WHERE sku = 'TEE-S'"))
