"""The customer list: newest first, page by page, and searches by name, email, phone or any identifier."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from omnijourney.customers.service import phone_prefix
from omnijourney.db import Database
from tests.conftest import make_key
from tests.factories import msg, send, source


def people(db: Database) -> None:
    """Six people first seen one after the other (Ann first, Dora last); Bea's and Cal's profiles merge."""
    web, store = source(db, "web"), source(db, "store", store="S7")
    send(db,
         msg(web, "identify", user_id="u-ann", traits={"first_name": "Ann", "last_name": "Smith",
                                                        "email": "ann.smith@shop.io"}, minutes=0),
         msg(web, "identify", user_id="u-bea", traits={"first_name": "Bea", "last_name": "Annan",
                                                        "email": "bea_x@shop.io"}, minutes=1),
         msg(store, "identify", anonymous_id="pos-cal", traits={"name": "Anna Karenina", "phone": "+1 415 555 0101"},
             minutes=2),
         msg(web, "identify", anonymous_id="w-eve", traits={"name": "Élodie Roux", "email": "beaux@shop.io"},
             minutes=3),
         msg(store, "identify", anonymous_id="pos-dan", traits={"first_name": "Dan"}, minutes=4,
             context={"externalIds": [{"id": "LC-7", "type": "loyalty_card"},
                                      {"id": "+14155550199", "type": "whatsapp"}]}),
         msg(web, "track", anonymous_id="w-dora", event="Product Viewed", minutes=5))
    # Cal turns out to be Bea: one profile (Bea's, the older), which Cal's phone now finds
    send(db, msg(web, "identify", user_id="u-bea", traits={"phone": "+14155550101"}, minutes=6))


def names(found: list[dict[str, Any]]) -> list[str]:
    return [c["traits"].get("first_name") or c["traits"].get("name") or "?" for c in found]


@pytest.fixture
def reader(db: Database) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(db, 'customers:read')}"}


def test_the_list_is_newest_first_page_by_page(client: TestClient, db: Database, reader: dict[str, str]) -> None:
    people(db)
    r = client.get("/api/v1/customers", params={"limit": 2}, headers=reader)
    assert r.status_code == 200, r.text
    pages, seen = [names(r.json())], 1
    while "link" in r.headers:
        assert r.links["next"]["url"].endswith(f"cursor={r.headers['x-next-cursor']}")
        r = client.get(r.links["next"]["url"], headers=reader)
        pages.append(names(r.json()))
        seen += 1
    # merged profiles are not listed: Cal's is part of Bea's
    assert pages == [["?", "Dan"], ["Élodie Roux", "Bea"], ["Ann"]]
    assert "x-next-cursor" not in r.headers
    everyone = client.get("/api/v1/customers", params={"limit": 200}, headers=reader)
    assert names(everyone.json()) == ["?", "Dan", "Élodie Roux", "Bea", "Ann"] and "link" not in everyone.headers


def test_search_by_name(client: TestClient, db: Database, reader: dict[str, str]) -> None:
    people(db)
    for name, found in [
        ("ann", ["Bea", "Ann"]),           # last name Annan; first name Ann (not Anna Karenina: merged into Bea)
        ("ANN S", ["Ann"]),                # first name and the start of the last name
        ("smi", ["Ann"]),
        ("Él", ["Élodie Roux"]),           # as written, on both engines
        ("élodie r" if db.dialect == "postgresql" else "Élodie r", ["Élodie Roux"]),  # SQLite lowers ASCII only
        ("zed", []),
    ]:
        r = client.get("/api/v1/customers", params={"name": name}, headers=reader)
        assert (r.status_code, names(r.json())) == (200, found), name


def test_search_by_email_and_phone_prefix(client: TestClient, db: Database, reader: dict[str, str]) -> None:
    people(db)

    def search(**params: str) -> list[str]:
        r = client.get("/api/v1/customers", params=params, headers=reader)
        assert r.status_code == 200, r.text
        return names(r.json())

    assert search(email_prefix="ANN.") == ["Ann"]
    assert search(email_prefix="bea") == ["Élodie Roux", "Bea"]
    assert search(email_prefix="bea_") == ["Bea"]  # LIKE's wildcards are plain characters here
    assert search(email_prefix="ann%") == []
    assert search(phone_prefix="+1 415 555 01") == ["Dan", "Bea"]  # WhatsApp numbers too; Cal's phone is Bea's
    assert search(phone_prefix="(415) 555-019") == ["Dan"]  # as dialled in the default region (US)
    assert search(phone_prefix="+44 20") == []
    # exact identifiers, as before
    assert search(identifier="loyalty_card:lc-7") == ["Dan"]
    assert search(phone="415 555 0101") == ["Bea"]
    assert search(email="BEAUX@shop.io") == ["Élodie Roux"]


def test_bad_list_queries(client: TestClient, db: Database, reader: dict[str, str]) -> None:
    people(db)
    for params, field in [({"name": "a"}, "name"), ({"email_prefix": "an"}, "email_prefix"),
                          ({"phone_prefix": "+1 4"}, "phone_prefix"), ({"name": "ann", "email_prefix": "ann"}, "query"),
                          ({"cursor": "bm9wZQ"}, "cursor"), ({"limit": 201}, "limit"), ({"limit": 0}, "limit")]:
        r = client.get("/api/v1/customers", params=params, headers=reader)
        assert (r.status_code, r.json()["field"]) == (422, field), params


def test_phone_prefixes() -> None:
    assert phone_prefix("+44 (0)20 7", "US") == "+440207"  # as typed: the (0) is the caller's to drop
    assert phone_prefix("0044 20 79", "US") == "+442079"
    assert phone_prefix("020 79", "GB") == "+442079"
    assert phone_prefix("1 (415) 5", "US") == "+14155"
    assert phone_prefix("41", "US") is None
