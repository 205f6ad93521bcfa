"""The demo retailer's stock and orders: the journeys' purchases are real orders from every channel and fulfilment
mode, with their payments, reservations and returns in the stock ledger, consistent with what the services do."""

from __future__ import annotations

import random
import shutil
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from omnijourney.api.app import create_app
from omnijourney.auth.service import create_key
from omnijourney.catalog.models import Variant
from omnijourney.config import JobSettings, Settings
from omnijourney.core.time import clock
from omnijourney.db import Database
from omnijourney.demo.build import STEPS, DemoContext, default_now
from omnijourney.inventory import audit, stock
from omnijourney.inventory.models import Location, Reservation, ReservationLine, StockLevel, StockMovement
from omnijourney.migrate import upgrade
from omnijourney.orders import lifecycle
from omnijourney.orders.models import Order, OrderHistory, OrderLine, Return, Shipment
from omnijourney.payments import giftcards
from omnijourney.payments.models import GiftCard, Payment
from omnijourney.tracking.models import Event

# big enough to have orders still open at the demo's "now" (this seed has some in every open state but one)
SEED, PEOPLE = 7, 400
OPEN = ("allocated", "picked", "shipped", "ready_for_pickup")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("orders") / "demo.db"
    db = Database(f"sqlite:///{path}")
    upgrade(db.engine)
    ctx = DemoContext(db=db, seed=SEED, people=PEOPLE, now=default_now(), rng=random.Random(SEED))
    for _, _, run in STEPS:
        run(ctx, lambda n: None)
    db.dispose()  # folds the WAL into the file: a test may copy it
    return path


@pytest.fixture(scope="module")
def demo(built: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{built}")
    yield db
    db.dispose()


def orders(db: Database) -> list[Order]:
    with db.transaction(write=False) as s:
        return list(s.scalars(select(Order).order_by(Order.placed_at, Order.id)))


def test_orders_from_every_channel_in_every_fulfilment_mode(demo: Database) -> None:
    found = orders(demo)
    stores = {"S01", "S02", "S03", "S04", "S05"}
    modes: dict[str, set[str]] = defaultdict(set)
    for o in found:
        modes[o.fulfilment].add("store" if o.channel_code in stores else o.channel_code)
    assert set(modes) == {"ship", "pickup", "reserve_in_store", "in_store"}
    assert modes["in_store"] == {"store"}  # a till sells from its shelf
    assert {"web", "app"} <= modes["ship"] and "store" in modes["ship"]  # order in store, deliver home
    assert {"web", "app", "call-center", "marketplace", *stores} <= {o.channel_code for o in found}
    rules = {(o.fulfilment, o.sourcing["rule"]) for o in found}
    assert ("pickup", "transfer_to_store") in rules  # click and collect sent from a warehouse to the store
    with demo.transaction(write=False) as s:
        parcels = s.execute(select(Order.fulfilment, Shipment.location_code, Shipment.to_location)
                            .join(Shipment, Shipment.order_id == Order.id)).all()
        kinds = dict(s.execute(select(Location.code, Location.type)).all())
    assert any(f == "ship" and kinds[loc] == "store" for f, loc, _ in parcels)  # ship from store
    assert any(f == "pickup" and kinds[loc] == "warehouse" and to in stores for f, loc, to in parcels)
    # months of them, older ones done, recent ones still on their way
    assert (found[-1].placed_at - found[0].placed_at).days > 60
    statuses = {o.status for o in found}
    assert {"delivered", "collected", "cancelled", "returned"} <= statuses
    assert len(statuses & set(OPEN)) >= 3


def test_each_order_is_its_journeys_purchase_with_the_same_total(demo: Database) -> None:
    with demo.transaction(write=False) as s:
        completed = {e.properties["order_id"]: e for e in s.scalars(select(Event).where(
            Event.event == "Order Completed"))}
        lines = defaultdict(list)
        for ln in s.scalars(select(OrderLine)):
            lines[ln.order_id].append(ln)
    found = orders(demo)
    assert len(completed) == len(found)  # one purchase event per order, naming it
    for o in found:
        e = completed[o.id]
        assert Decimal(str(e.properties["total"])) == o.total, o.number
        assert e.customer_id == o.customer_id and e.timestamp == o.placed_at
        assert e.store_code == (o.channel_code if o.channel_code.startswith("S") else None)
        assert sorted((p["sku"], p["quantity"]) for p in e.properties["products"]) == \
            sorted((ln.sku, ln.quantity) for ln in lines[o.id])
        assert sum((ln.total for ln in lines[o.id]), Decimal("0")) + o.shipping == o.total
        if e.source_id is not None:  # the channel's own event keeps its reference beside the order's
            assert e.properties["channel_order_id"].startswith(("o-", "pos-"))


def test_every_history_is_a_path_the_lifecycle_allows(demo: Database) -> None:
    with demo.transaction(write=False) as s:
        rows = s.execute(select(OrderHistory.order_id, OrderHistory.from_status, OrderHistory.to_status,
                                OrderHistory.note).order_by(OrderHistory.id)).all()
    fulfilment = {o.id: o.fulfilment for o in orders(demo)}
    final = {o.id: o.status for o in orders(demo)}
    last: dict[str, str] = {}
    for oid, frm, to, note in rows:
        assert frm == last.get(oid), oid
        if frm == to:
            assert note == "paid at the till" and fulfilment[oid] == "reserve_in_store"
        elif frm is not None:
            assert to in lifecycle.allowed(fulfilment[oid], frm), (oid, frm, to)
        last[oid] = to
    assert last == final


def test_stock_in_every_location_and_the_ledger_agrees(demo: Database) -> None:
    with demo.transaction(write=False) as s:
        assert stock.check(s) == []
        found = audit.audit(s)
        assert found.ok, str(found)
        places = dict(s.execute(select(Location.code, Location.type)).all())
        assert sorted(places.values()).count("warehouse") == 2 and sorted(places.values()).count("store") == 5
        assert {"transit", "quarantine"} <= set(places.values())
        held = dict(s.execute(select(StockLevel.location_code, func.sum(StockLevel.on_hand))
                              .group_by(StockLevel.location_code)).all())
        assert all(held.get(code, 0) > 100 for code, kind in places.items() if kind in ("warehouse", "store"))
        assert held.get("QUARANTINE", 0) > 0 or not s.scalar(select(func.count()).select_from(Return))
        received = s.scalar(select(func.count(StockMovement.sku.distinct())).where(StockMovement.kind == "receipt"))
        assert received == s.scalar(select(func.count()).select_from(Variant))  # every SKU was stocked somewhere
        sold_out = s.scalar(select(func.count()).select_from(StockLevel).where(
            StockLevel.on_hand == 0, StockLevel.location_code.like("S0%")))
        assert sold_out and sold_out > 5  # some sizes sold out on the shelves
        kinds = set(s.scalars(select(StockMovement.kind).distinct()))
        assert {"receipt", "reservation", "sale", "release", "return", "transfer_out", "transfer_in"} <= kinds
        # the ledger is history: each movement at its moment, none after the demo's "now"
        first, latest = s.execute(select(func.min(StockMovement.created_at), func.max(StockMovement.created_at))).one()
        assert (default_now() - first).days >= 90 and latest <= default_now()


def test_reserved_units_are_what_open_orders_hold(demo: Database) -> None:
    with demo.transaction(write=False) as s:
        reserved = s.scalar(select(func.sum(StockLevel.reserved)))
        active = s.execute(select(Order.status, ReservationLine.quantity)
                           .join(Reservation, Reservation.id == ReservationLine.reservation_id)
                           .join(Order, Order.id == Reservation.ref)
                           .where(ReservationLine.status == "active")).all()
        ready = list(s.scalars(select(Order).where(Order.status == "ready_for_pickup")))
    assert reserved and reserved == sum(q for _, q in active)  # audit checks it per SKU and location
    assert {status for status, _ in active} <= set(OPEN) - {"shipped"}
    assert all(o.pickup_code and len(o.pickup_code) == 6 and o.pickup_deadline for o in ready)


def test_uncollected_pickups_went_back_to_stock(demo: Database) -> None:
    with demo.transaction(write=False) as s:
        released = s.execute(select(Event.properties).where(Event.event == "Pickup Released")).all()
        assert released
        for (props,) in released:
            o = s.get(Order, props["order_id"])
            assert o is not None and o.status == "cancelled" and o.fulfilment in ("pickup", "reserve_in_store")
            note = s.scalar(select(OrderHistory.note).where(OrderHistory.order_id == o.id,
                                                            OrderHistory.to_status == "cancelled"))
            assert note == "not collected by the deadline"
            r = s.get(Reservation, o.reservation_id)
            assert r is not None and r.status == "released"
            released_at = s.scalar(select(func.max(StockMovement.created_at)).where(
                StockMovement.ref == r.id, StockMovement.kind == "release"))
            assert released_at == o.pickup_deadline  # back on the shelf at the deadline, not before
            assert o.payment_status in ("refunded", "unpaid")


def test_returns_in_other_channels_than_the_sale(demo: Database) -> None:
    with demo.transaction(write=False) as s:
        rows = s.execute(select(Order, Return).join(Return, Return.order_id == Order.id)).all()
        received = s.scalar(select(func.count()).select_from(Order).where(
            Order.status.in_(("delivered", "collected", "partly_returned", "returned"))))
        kinds = dict(s.execute(select(Location.code, Location.type)).all())
    assert 0.04 < len(rows) / received < 0.12
    online_to_store = [r for o, r in rows if not o.channel_code.startswith("S") and kinds[r.location_code] == "store"]
    store_to_warehouse = [r for o, r in rows if o.channel_code.startswith("S")
                          and kinds[r.location_code] == "warehouse"]
    assert online_to_store and store_to_warehouse
    assert any(ln["condition"] == "damaged" and ln["location"] == "QUARANTINE" for _, r in rows for ln in r.lines)
    for o, r in rows:
        assert all(ln["reason"] for ln in r.lines)
        assert r.refund_amount > 0 and r.status == "refunded" and o.refunded >= r.refund_amount
        assert o.status in ("partly_returned", "returned")


def test_payments_are_captured_tenders_that_add_up(demo: Database) -> None:
    with demo.transaction(write=False) as s:
        paid: dict[str, list[Payment]] = defaultdict(list)
        for p in s.scalars(select(Payment)):
            paid[p.order_id].append(p)  # type: ignore[index]
        for o in orders(demo):
            tenders = paid.get(o.id, [])
            if o.payment_status == "unpaid":
                assert not tenders and o.fulfilment == "reserve_in_store"
                continue
            assert sum(p.captured_minor for p in tenders) == int(o.total * 100), o.number
            assert sum(p.refunded_minor for p in tenders) == int(o.refunded * 100), o.number
        methods = {p.method for ps in paid.values() for p in ps}
        assert methods == {"card", "cash", "gift_card"}
        assert any(len(ps) == 2 for ps in paid.values())  # gift card + card
        at_till = {o.id for o in orders(demo) if o.channel_code.startswith("S") or o.fulfilment == "reserve_in_store"}
        assert all(p.method != "cash" or p.order_id in at_till for ps in paid.values() for p in ps)  # cash at a till
        for card in s.scalars(select(GiftCard)):
            assert giftcards.ledger_balance(s, card.code) == card.balance_minor


def test_orders_payments_and_the_providers_book_agree(built: Path, demo: Database) -> None:
    """The orders' checker: every order has its payment and its units, no money held without an order, and the test
    provider holds for each card payment what it says (captured, less its refunds)."""
    from omnijourney.orders import audit as orders_audit
    from omnijourney.payments.simulator import TestProvider

    provider = TestProvider(built.with_name("demo.test-provider.db"), webhook_secret="unused")
    try:
        intents, refunds = provider.intents(), provider.refunds()
    finally:
        provider.close()
    assert refunds  # the demo's returns were refunded to their cards
    with demo.transaction(write=False) as s:
        found = orders_audit.audit(s, intents=intents, refunds=refunds)
        cards = s.scalar(select(func.count()).select_from(Payment).where(Payment.provider == "test"))
    assert found.ok, str(found)
    assert found.intents == cards and found.orders == len(orders(demo))


def test_a_demo_order_is_refunded_by_the_services(built: Path, tmp_path: Path) -> None:
    """The test provider knows the demo's card charges: a return of a demo order refunds the card as any other."""
    from omnijourney.orders import returns
    from omnijourney.payments import refunds

    copy = tmp_path / "demo.db"
    shutil.copy(built, copy)
    shutil.copy(built.with_name("demo.test-provider.db"), tmp_path / "demo.test-provider.db")
    db = Database(f"sqlite:///{copy}")
    try:
        with clock(default_now), db.transaction() as s:
            order = s.scalar(select(Order).join(Payment, Payment.order_id == Order.id).where(
                Order.status == "delivered", Payment.method == "card", Order.channel_code.in_(("web", "app")),
                Order.placed_at > default_now().replace(month=10, day=10)).order_by(Order.placed_at).limit(1))
            assert order is not None
            line = s.scalar(select(OrderLine).where(OrderLine.order_id == order.id).limit(1))
            returns.create_return(s, order_id=order.id, channel_code="S03", location="S03",
                                  lines=[{"sku": line.sku, "quantity": 1, "reason": "too small"}])
            asked = [p.id for p in s.scalars(select(Payment).where(Payment.order_id == order.id))]
        with clock(default_now), db.transaction(write=False) as s:
            from omnijourney.payments.models import PaymentOperation

            requests = list(s.scalars(select(PaymentOperation.id).where(
                PaymentOperation.payment_id.in_(asked), PaymentOperation.kind == "refund",
                PaymentOperation.phase == "request", PaymentOperation.reference.like("return:%"))
                .order_by(PaymentOperation.created_at)))
        done = refunds.send_refunds(db, requests[-1:])
        assert [r.status for r in done] == ["succeeded"], done
        with db.transaction(write=False) as s:
            assert stock.check(s) == [] and audit.audit(s).ok
    finally:
        db.dispose()


def test_the_api_answers_a_customers_orders_from_several_channels(demo: Database) -> None:
    with demo.transaction() as s:
        channels: dict[str, set[str]] = defaultdict(set)
        for cid, channel in s.execute(select(Order.customer_id, Order.channel_code)):
            channels[cid].add(channel)
        customer = min((c for c in channels if c), key=lambda c: (-len(channels[c]), c))
        _, key = create_key(s, name="test", scopes=["admin"])
    assert len(channels[customer]) >= 2
    app = create_app(demo, Settings(database_url="sqlite://", jobs=JobSettings(embedded=False)))
    with TestClient(app) as client:
        h = {"Authorization": f"Bearer {key}"}
        got = client.get("/api/v1/orders", params={"customer_id": customer}, headers=h)
        assert got.status_code == 200, got.text
        items = got.json()["items"]
        assert {o["channel"] for o in items} == channels[customer]
        one: dict[str, Any] = client.get(f"/api/v1/orders/{items[0]['id']}", headers=h).json()
        assert one["lines"] and one["history"][0]["to_status"] == "placed" and one["sourcing"]["explanation"]
        if one["payment_status"] != "unpaid":
            assert one["payments"] and all(p["status"] != "new" for p in one["payments"])
        # the timeline shows each order's way, in the channel each step happened in, linked by the order's id
        timeline = client.get(f"/api/v1/customers/{customer}/timeline", params={"limit": 200}, headers=h).json()
        steps = {(e["event"], e["properties"].get("order_id")) for e in timeline["items"]}
        for o in items:
            assert ("Order Placed", o["id"]) in steps and ("Order Completed", o["id"]) in steps
