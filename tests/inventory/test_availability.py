"""The availability answer over HTTP is the documented schema, written exactly as pydantic writes it."""

from __future__ import annotations

from omnijourney.inventory.schemas import AvailabilityRead
from tests.factories_inventory import BERLIN, network, stock_up


def test_the_answer_is_its_schema_to_the_byte(db, client, admin_headers):
    network(db)
    stock_up(db, {("TEE-M", "WH"): 20, ("TEE-M", "S02"): 3, ("JEANS-32", "S01"): 2})
    promises = []
    for params in ({"sku": ["TEE-M", "JEANS-32"], "channel": "web", "near": f"{BERLIN[0]},{BERLIN[1]}"},
                   {"sku": "JEANS-32", "channel": "S01", "quantity": 3}):  # a till short of units: reasons
        got = client.get("/api/v1/inventory/availability", params=params, headers=admin_headers)
        assert got.status_code == 200, got.text
        assert got.headers["content-type"] == "application/json"
        answer = AvailabilityRead.model_validate_json(got.content)  # every field there, of its type, nothing more
        assert answer.model_dump_json().encode() == got.content  # times in UTC with Z, floats, field order
        promises += [p for item in answer.items for p in item.promises]
        assert any(r.distance_km is not None for r in answer.items[0].locations)
    assert any(p.at is not None for p in promises) and any(p.reason for p in promises)


def test_unknown_channel_and_sku_are_named(db, client, admin_headers):
    network(db)
    got = client.get("/api/v1/inventory/availability", params={"sku": "TEE-M", "channel": "nope"},
                     headers=admin_headers)
    assert (got.status_code, got.json()["field"]) == (404, "channel")
    got = client.get("/api/v1/inventory/availability", params={"sku": ["TEE-M", "NOPE"], "channel": "web"},
                     headers=admin_headers)
    assert (got.status_code, got.json()["field"]) == (404, "sku[1]")
