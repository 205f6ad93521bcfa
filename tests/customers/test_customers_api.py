"""Customer 360 over HTTP: lookups, profile, timeline, merged ids."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from omnijourney.db import Database
from tests.conftest import make_key
from tests.factories import msg, send, source
from tests.factories_catalog import channel


def journey(db: Database) -> None:
    web, store, cc = source(db, "web"), source(db, "store", store="S7"), source(db, "call_center")
    send(db, msg(web, "page", anonymous_id="w-1", event="Home", minutes=0),
         msg(web, anonymous_id="w-1", event="Product Viewed", properties={"sku": "TEE-M"}, minutes=1),
         msg(web, "identify", anonymous_id="w-1", user_id="u-9", traits={"email": "Zoe@Shop.io"}, minutes=2))
    send(db, msg(store, "identify", anonymous_id="pos-1", traits={"phone": "+1 415 555 2671"},
                 context={"externalIds": [{"id": "LC-9", "type": "loyalty_card"}]}, minutes=30),
         msg(store, anonymous_id="pos-1", event="Order Completed", properties={"total": 30}, minutes=31))
    # the call center hears both the email and the phone: the two profiles are one person
    send(db, msg(cc, "identify", anonymous_id="cc-1", traits={"email": "zoe@shop.io", "phone": "4155552671"},
                 minutes=60))


def test_lookup_profile_and_timeline(client: TestClient, db: Database) -> None:
    journey(db)
    h = {"Authorization": f"Bearer {make_key(db, 'customers:read')}"}
    found = client.get("/api/v1/customers", params={"email": " ZOE@shop.io"}, headers=h).json()
    assert len(found) == 1
    cid = found[0]["id"]
    for params in ({"phone": "(415) 555-2671"}, {"user_id": "u-9"}, {"anonymous_id": "pos-1"},
                   {"identifier": "loyalty_card:lc-9"}):
        assert [c["id"] for c in client.get("/api/v1/customers", params=params, headers=h).json()] == [cid], params
    p = client.get(f"/api/v1/customers/{cid}", headers=h).json()
    assert p["channels"] == {"web": 3, "store": 2, "call_center": 1}
    assert p["first_seen"] == "2026-03-01T12:00:00Z"
    assert p["last_seen"] == "2026-03-01T13:00:00Z"
    assert p["traits"] == {"email": "zoe@shop.io", "phone": "4155552671"}
    assert {(i["type"], i["value"]) for i in p["identities"]} == {
        ("anonymous_id", "w-1"), ("user_id", "u-9"), ("email", "zoe@shop.io"), ("anonymous_id", "pos-1"),
        ("phone", "+14155552671"), ("loyalty_card", "LC-9"), ("anonymous_id", "cc-1")}
    assert len(p["merged_from"]) == 1

    page1 = client.get(f"/api/v1/customers/{cid}/timeline", params={"limit": 4}, headers=h).json()
    assert [e["channel"] for e in page1["items"]] == ["call_center", "store", "store", "web"]
    page2 = client.get(f"/api/v1/customers/{cid}/timeline", params={"limit": 4, "cursor": page1["next_cursor"]},
                       headers=h).json()
    assert [(e["event"], e["stage"]) for e in page2["items"]] == [("Product Viewed", "before"), ("Home", None)]
    assert page2["next_cursor"] is None
    orders = client.get(f"/api/v1/customers/{cid}/timeline", params={"event": "Order Completed"}, headers=h).json()
    assert [(e["properties"], e["stage"]) for e in orders["items"]] == [({"total": 30}, "during")]
    web_only = client.get(f"/api/v1/customers/{cid}/timeline", params={"channel": "web", "type": "page"},
                          headers=h).json()
    assert [e["event"] for e in web_only["items"]] == ["Home"]


def test_merged_id_answers_with_survivor(client: TestClient, db: Database, admin_headers: dict[str, str]) -> None:
    journey(db)
    survivor = client.get("/api/v1/customers", params={"user_id": "u-9"}, headers=admin_headers).json()[0]["id"]
    merged = client.get(f"/api/v1/customers/{survivor}", headers=admin_headers).json()["merged_from"][0]["merged_id"]
    assert client.get(f"/api/v1/customers/{merged}", headers=admin_headers).json()["id"] == survivor
    assert client.get(f"/api/v1/customers/{merged}/timeline", headers=admin_headers).json()["customer_id"] == survivor


def test_bad_queries(client: TestClient, db: Database, admin_headers: dict[str, str]) -> None:
    r = client.get("/api/v1/customers", params={"email": "a@b.co", "user_id": "u-1"}, headers=admin_headers)
    assert r.status_code == 422 and r.json()["field"] == "query"
    r = client.get("/api/v1/customers", params={"email": "not-an-email"}, headers=admin_headers)
    assert r.status_code == 422 and r.json()["field"] == "email"
    r = client.get("/api/v1/customers", params={"identifier": "loyalty_card"}, headers=admin_headers)
    assert r.status_code == 422 and r.json()["field"] == "identifier"
    assert client.get("/api/v1/customers/nope", headers=admin_headers).status_code == 404
    r = client.get("/api/v1/customers/nope/timeline", params={"limit": 0}, headers=admin_headers)
    assert r.status_code == 422 and r.json()["field"] == "limit"
    assert client.get("/api/v1/customers", params={"email": "a@b.co"}, headers=admin_headers).json() == []


def test_timeline_filters_by_channel_kind_or_catalog_code(client: TestClient, db: Database,
                                                          admin_headers: dict[str, str]) -> None:
    journey(db)
    channel(db, "web", "web")
    channel(db, "S7", "store", address="Hauptstr. 7", latitude=52.5, longitude=13.4)
    channel(db, "S8", "store", address="Hauptstr. 8", latitude=52.5, longitude=13.4)
    cid = client.get("/api/v1/customers", params={"user_id": "u-9"}, headers=admin_headers).json()[0]["id"]

    def timeline(**params: str) -> tuple[int, Any]:
        r = client.get(f"/api/v1/customers/{cid}/timeline", params=params, headers=admin_headers)
        return r.status_code, r.json()

    def events(**params: str) -> list[tuple[str, str | None]]:
        status, body = timeline(**params)
        assert status == 200, body
        return [(e["channel"], e["store"]) for e in body["items"]]

    assert events(channel="store") == [("store", "S7")] * 2
    assert events(channel_code="S7") == [("store", "S7")] * 2
    assert events(channel_code="S8") == []  # a store known to the catalog where this person never went
    assert events(channel_code="web") == [("web", None)] * 3
    assert events(channel="web", channel_code="S7") == []
    # a code where a kind belongs, a kind where a code belongs, unknown values: 422 naming the field and the choices
    for params, field, hint in [({"channel": "fax"}, "channel", "call_center"), ({"channel": "S7"}, "channel", "web"),
                                ({"channel_code": "call_center"}, "channel_code", "S7, S8, web"),
                                ({"type": "fax"}, "type", "identify")]:
        status, body = timeline(**params)
        assert (status, body["field"]) == (422, field), params
        assert hint in body["message"], body
