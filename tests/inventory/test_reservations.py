"""Reservations and availability: what every channel is promised, held, given back, and out of stock."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text, update

from omnijourney.core.time import utcnow
from omnijourney.inventory import reservations, stock
from omnijourney.inventory.models import Reservation
from omnijourney.jobs.models import Job
from tests.factories import run_jobs
from tests.factories_inventory import BERLIN, network, stock_up


def _availability(client, headers, **params) -> dict:
    got = client.get("/api/v1/inventory/availability", params=params, headers=headers)
    assert got.status_code == 200, got.text
    return got.json()


def _reserve(client, headers, channel: str, *lines: tuple[str, str, int], ttl_s: int | None = 900):
    return client.post("/api/v1/inventory/reservations", headers=headers, json={
        "channel": channel, "ttl_s": ttl_s,
        "lines": [{"sku": s, "location": loc, "quantity": q} for s, loc, q in lines]})


def test_availability_answers_where_and_when_nearest_first(db, client, admin_headers):
    network(db)
    stock_up(db, {("TEE-M", "WH"): 20, ("TEE-M", "S02"): 3, ("TEE-M", "S03"): 1, ("JEANS-32", "S01"): 2})
    found = _availability(client, admin_headers, sku=["TEE-M", "JEANS-32"], channel="web",
                          near=f"{BERLIN[0]},{BERLIN[1]}")
    tee, jeans = found["items"]
    assert tee["sku"] == "TEE-M" and tee["available"] == 24
    assert [r["code"] for r in tee["locations"]][:3] == ["S01", "S02", "WH"]  # nearest first
    assert [r["code"] for r in tee["nearest_stores"]] == ["S02", "S03"]  # S01 has none on the shelf
    modes = {p["mode"]: p for p in tee["promises"]}
    assert modes["ship"]["possible"] and modes["ship"]["location"] == "WH"
    assert modes["pickup"]["location"] == "S02"  # the nearest shelf that has it
    assert "in_store" not in modes  # the web has no till
    # jeans: only on S01's shelf, and S01 ships from store
    jmodes = {p["mode"]: p for p in jeans["promises"]}
    assert jmodes["ship"]["possible"] and jmodes["ship"]["location"] == "S01"
    assert jmodes["pickup"]["location"] == "S01"


def test_the_same_question_gets_the_same_answer_in_every_channel_and_a_till_sees_its_shelf(db, client,
                                                                                            admin_headers):
    network(db)
    stock_up(db, {("TEE-S", "S01"): 2, ("TEE-S", "WH"): 5})
    web = _availability(client, admin_headers, sku="TEE-S", channel="web")["items"][0]
    app = _availability(client, admin_headers, sku="TEE-S", channel="app")["items"][0]
    assert web["available"] == app["available"] == 7
    till = _availability(client, admin_headers, sku="TEE-S", channel="S01")["items"][0]
    modes = {p["mode"]: p for p in till["promises"]}
    assert modes["in_store"]["possible"] and modes["in_store"]["location"] == "S01"
    assert till["locations"][0]["code"] == "S01"  # a store channel's own coordinates order the list
    # endless aisle: the store sells what the warehouse ships home
    assert modes["ship"]["possible"]


def test_a_store_keeps_its_online_floor_for_walk_in_customers(db, client, admin_headers):
    network(db, online_floor=2)
    stock_up(db, {("TEE-M", "S02"): 3})
    web = _availability(client, admin_headers, sku="TEE-M", channel="web")["items"][0]
    assert web["available"] == 1
    refused = _reserve(client, admin_headers, "web", ("TEE-M", "S02", 2))
    assert refused.status_code == 409 and refused.json()["code"] == "out_of_stock"
    assert refused.json()["field"] == "lines[0].quantity"
    assert _reserve(client, admin_headers, "web", ("TEE-M", "S02", 1)).status_code == 201
    # the store's own till sells the protected units
    sold = client.post("/api/v1/inventory/sales", headers=admin_headers, json={
        "channel": "S02", "lines": [{"sku": "TEE-M", "location": "S02", "quantity": 2}]})
    assert sold.status_code == 201, sold.text
    assert sold.json()["levels"][0] == {**sold.json()["levels"][0], "on_hand": 1, "reserved": 1}


def test_safety_stock_is_never_promised(db, client, admin_headers):
    network(db)
    stock_up(db, {("JEANS-32", "WH"): 5})
    got = client.put("/api/v1/inventory/safety-stock", headers=admin_headers,
                     json={"sku": "JEANS-32", "location": "WH", "safety_stock": 4})
    assert got.status_code == 200
    assert _availability(client, admin_headers, sku="JEANS-32", channel="web")["items"][0]["available"] == 1
    assert _reserve(client, admin_headers, "web", ("JEANS-32", "WH", 2)).status_code == 409
    assert _reserve(client, admin_headers, "web", ("JEANS-32", "WH", 1)).status_code == 201


def test_out_of_stock_offers_other_locations_and_modes(db, client, admin_headers):
    network(db)
    stock_up(db, {("TEE-M", "WH"): 1, ("TEE-M", "S02"): 2})
    assert _reserve(client, admin_headers, "web", ("TEE-M", "WH", 1)).status_code == 201
    refused = _reserve(client, admin_headers, "web", ("TEE-M", "WH", 1))
    assert refused.status_code == 409
    body = refused.json()
    assert body["code"] == "out_of_stock" and "TEE-M" in body["message"]
    alternatives = body["details"]["alternatives"]
    assert [a["location"] for a in alternatives["locations"]] == ["S02"]
    assert {m["mode"] for m in alternatives["modes"]} >= {"pickup", "reserve_in_store"}


def test_all_lines_or_none(db, client, admin_headers):
    network(db)
    stock_up(db, {("TEE-M", "WH"): 3, ("TEE-S", "WH"): 1})
    refused = _reserve(client, admin_headers, "web", ("TEE-M", "WH", 2), ("TEE-S", "WH", 2))
    assert refused.status_code == 409 and refused.json()["field"] == "lines[1].quantity"
    levels = client.get("/api/v1/inventory/levels", params={"location": "WH"}, headers=admin_headers).json()
    assert {lv["sku"]: lv["reserved"] for lv in levels} == {"TEE-M": 0, "TEE-S": 0}


def test_a_reservation_can_be_released_and_only_once(db, client, admin_headers):
    network(db)
    stock_up(db, {("TEE-M", "WH"): 3})
    held = _reserve(client, admin_headers, "app", ("TEE-M", "WH", 2)).json()
    assert _availability(client, admin_headers, sku="TEE-M", channel="web")["items"][0]["available"] == 1
    got = client.post(f"/api/v1/inventory/reservations/{held['id']}/release", headers=admin_headers)
    assert got.status_code == 200 and got.json()["status"] == "released"
    assert _availability(client, admin_headers, sku="TEE-M", channel="web")["items"][0]["available"] == 3
    again = client.post(f"/api/v1/inventory/reservations/{held['id']}/release", headers=admin_headers)
    assert again.status_code == 409 and again.json()["code"] == "reservation_settled"
    with db.transaction() as s:  # its expiry went with it: no worker will wake for it in 15 minutes
        assert s.scalar(select(func.count()).select_from(Job).where(Job.kind == reservations.EXPIRE_JOB)) == 0


def test_an_expired_reservation_frees_its_stock_without_anyone_reading_it(db, client, admin_headers):
    network(db)
    stock_up(db, {("TEE-M", "WH"): 1})
    held = _reserve(client, admin_headers, "web", ("TEE-M", "WH", 1), ttl_s=60).json()
    assert _reserve(client, admin_headers, "app", ("TEE-M", "WH", 1)).status_code == 409
    assert run_jobs(db) == 0  # not due yet: still held
    # a minute passes: the expiry job comes due
    past = utcnow() - timedelta(seconds=1)
    with db.transaction() as s:
        s.execute(update(Reservation).values(expires_at=past))
        s.execute(update(Job).where(Job.kind == reservations.EXPIRE_JOB).values(run_at=past))
    assert run_jobs(db) == 1
    got = client.get(f"/api/v1/inventory/reservations/{held['id']}", headers=admin_headers).json()
    assert got["status"] == "expired" and got["lines"][0]["status"] == "released"
    assert _reserve(client, admin_headers, "app", ("TEE-M", "WH", 1)).status_code == 201
    with db.transaction() as s:
        assert stock.check(s) == []


def test_a_held_reservation_is_consumed_by_the_sale(db):
    network(db)
    stock_up(db, {("TEE-M", "WH"): 2, ("TEE-M", "S01"): 1})
    with db.transaction() as s:
        r = reservations.reserve(s, channel_code="web", lines=[("TEE-M", "WH", 2), ("TEE-M", "S01", 1)])
        reservations.hold(s, reservation_id=r.id, ref="order-1")  # an order keeps it until it ships
    with db.transaction() as s:
        reservations.consume(s, reservation_id=r.id, location="WH", ref="shipment-1")  # one shipment of two
        assert s.get(Reservation, r.id).status == "active"
        reservations.consume(s, reservation_id=r.id, location="S01", ref="shipment-2")
        assert s.get(Reservation, r.id).status == "consumed"
        assert (stock.level(s, "TEE-M", "WH").on_hand, stock.level(s, "TEE-M", "WH").reserved) == (0, 0)
        assert stock.check(s) == []


def test_quarantine_and_transit_are_never_sold_from(db, client, admin_headers):
    network(db)
    got = _reserve(client, admin_headers, "web", ("TEE-M", "QUAR", 1))
    assert got.status_code == 422 and got.json()["field"] == "lines[0].location"


def test_a_location_that_does_not_feed_the_channel_is_refused(db, client, admin_headers):
    network(db)
    stock_up(db, {("TEE-M", "S02"): 3})
    got = _reserve(client, admin_headers, "S01", ("TEE-M", "S02", 1))  # another store's shelf, not S01's
    assert got.status_code == 422 and got.json()["code"] == "location_not_feeding"


def test_bad_availability_questions(db, client, admin_headers):
    network(db)
    h = admin_headers
    assert client.get("/api/v1/inventory/availability", params={"sku": "NOPE", "channel": "web"},
                      headers=h).json()["field"] == "sku"
    assert client.get("/api/v1/inventory/availability", params={"sku": "TEE-M", "channel": "nope"},
                      headers=h).status_code == 404
    bad = client.get("/api/v1/inventory/availability", params={"sku": "TEE-M", "channel": "web", "near": "north"},
                     headers=h)
    assert bad.status_code == 422 and bad.json()["field"] == "near"


def test_the_last_unit_goes_to_exactly_one_of_five_channels_at_once(db):
    """Forced interleaving on PostgreSQL: five channels reserve the last unit while a sixth holds it mid-update."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers with BEGIN IMMEDIATE: no interleaving to force")
    network(db)
    stock_up(db, {("TEE-M", "S01"): 1})
    first = db.begin()
    reservations.reserve(first, channel_code="S01", lines=[("TEE-M", "S01", 1)])  # holds the row, not committed
    results: list[str] = []

    def attempt(channel: str) -> None:
        try:
            with db.transaction() as s:
                reservations.reserve(s, channel_code=channel, lines=[("TEE-M", "S01", 1)])
            results.append("won")
        except stock.OutOfStock:
            results.append("out")

    threads = [threading.Thread(target=attempt, args=(c,)) for c in ("web", "app", "web", "app", "S01")]
    for t in threads:
        t.start()
    try:
        with db.engine.connect() as probe:  # every contender is waiting on the row lock before the first commits
            for _ in range(500):  # up to 10 s: on a loaded machine five threads take a while to get there
                waiting = probe.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                             "AND datname = current_database()")).scalar()
                probe.rollback()  # PostgreSQL keeps one snapshot of the activity per transaction: look again
                if waiting == 5:
                    break
                threading.Event().wait(0.02)
            seen = probe.execute(text("SELECT pid, state, wait_event_type, wait_event, left(query, 120) FROM "
                                      "pg_stat_activity WHERE datname = current_database() AND pid <> "
                                      "pg_backend_pid()")).all()
        assert waiting == 5, f"results so far {results}; the database's sessions: {seen}"
        first.commit()
    finally:  # a failure above must not leave the row locked: the contenders, and every later test, would wait
        first.close()
        for t in threads:
            t.join()
    assert sorted(results) == ["out"] * 5
    with db.transaction() as s:
        lv = stock.level(s, "TEE-M", "S01")
        assert (lv.on_hand, lv.reserved) == (1, 1)
        assert stock.check(s) == []
