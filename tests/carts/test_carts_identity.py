"""Carts follow their owner when identity resolution finds two profiles are one person."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from omnijourney.carts.models import Cart
from omnijourney.db import Database
from omnijourney.tracking.models import Source
from tests import factories_catalog as fc
from tests.carts.test_carts import add, lines, open_cart
from tests.customers.test_identity import customer_of
from tests.factories import msg, run_jobs, send, source


def two_profiles(db: Database) -> tuple[Source, str, str]:
    """A shop, a web profile (user u-1) and a store profile (loyalty card LC-1): the same person, not yet known to
    be; returns the web source and the two profile ids (the first will survive a merge)."""
    fc.shop(db)
    web, store = source(db, "web"), source(db, "store", store="store-12")
    send(db, msg(web, "identify", user_id="u-1", anonymous_id="w-1", minutes=0))
    send(db, msg(store, "identify", anonymous_id="pos-1", minutes=5,
                 context={"externalIds": [{"id": "LC-1", "type": "loyalty_card"}]}))
    first, second = customer_of(db, "user_id", "u-1"), customer_of(db, "loyalty_card", "LC-1")
    assert first and second and first != second
    return web, first, second


def test_two_profiles_carts_become_one(client: TestClient, db: Database, admin_headers: dict[str, str]) -> None:
    web, first, second = two_profiles(db)
    kept = open_cart(client, admin_headers, customer_id=first)["id"]
    other = open_cart(client, admin_headers, customer_id=second, channel="store-12")["id"]
    assert add(client, admin_headers, kept, "TEE-M", 1).status_code == 200
    assert add(client, admin_headers, other, "TEE-M", 2, channel="store-12").status_code == 200
    assert add(client, admin_headers, other, "SOCK-1", 1, channel="store-12").status_code == 200

    send(db, msg(web, "identify", user_id="u-1", minutes=10,
                 context={"externalIds": [{"id": "LC-1", "type": "loyalty_card"}]}))
    assert run_jobs(db) == 1  # the carts follow in a background job, outside the ingestion lock

    assert lines(db, kept) == {"TEE-M": 3, "SOCK-1": 1}
    with db.transaction(write=False) as s:
        merged = s.get(Cart, other)
        assert (merged.status, merged.merged_into, merged.customer_id) == ("merged", kept, first)
        assert s.scalars(select(Cart.id).where(Cart.status == "active")).all() == [kept]
    listed = client.get("/api/v1/carts", params={"customer_id": second}, headers=admin_headers).json()
    assert [c["id"] for c in (listed["items"] if isinstance(listed, dict) else listed)] == [kept]


def test_logging_in_adopts_the_anonymous_cart(client: TestClient, db: Database, admin_headers: dict[str, str]) -> None:
    fc.shop(db)
    web, app = source(db, "web"), source(db, "app")
    send(db, msg(app, "identify", user_id="u-7", anonymous_id="phone-1", minutes=0))
    known = customer_of(db, "user_id", "u-7")
    theirs = open_cart(client, admin_headers, customer_id=known)["id"]
    assert add(client, admin_headers, theirs, "TEE-S", 1).status_code == 200
    # on the laptop, not logged in yet
    anon = open_cart(client, admin_headers, anonymous_id="laptop-1")["id"]
    assert add(client, admin_headers, anon, "TEE-S", 1).status_code == 200
    assert add(client, admin_headers, anon, "HOOD-M", 1).status_code == 200
    send(db, msg(web, "track", anonymous_id="laptop-1", event="Cart Viewed", minutes=5))
    assert lines(db, anon) == {"TEE-S": 1, "HOOD-M": 1}  # still anonymous: nobody logged in
    send(db, msg(web, "identify", anonymous_id="laptop-1", user_id="u-7", minutes=6))  # the login
    assert run_jobs(db) >= 1
    assert lines(db, theirs) == {"TEE-S": 2, "HOOD-M": 1}
    with db.transaction(write=False) as s:
        assert s.get(Cart, anon).status == "merged"
