"""A small, realistic shop for the console's tests, built with the factories and the API as the channels would:
a network of channels and locations with stock and prices (a store price list and a web promotion among them),
customers whose journeys cross web, app, a store, the call center and WhatsApp (one of them merged from two
profiles), carts that moved between devices, and orders in every fulfilment mode at various states.

One database per test module: :func:`build` runs once and returns what the tests look for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient

from omnijourney.core.time import utcnow
from omnijourney.customers import service as customers
from omnijourney.db import Database
from omnijourney.pricing import service as pricing
from tests.conftest import make_key
from tests.factories import T0, run_jobs, send, source
from tests.factories import msg as factory_msg
from tests.factories_inventory import network, priced, stock_up
from tests.factories_staff import Account, staff

CARD = {"method": "card", "provider": "test", "payment_method": "pm_card_visa"}
ROLES = ("admin", "marketer", "analyst", "agent", "store_associate")


@dataclass
class World:
    db: Database
    accounts: dict[str, Account]
    umar: str  # the customer whose journey crosses five channels
    ann: str
    merged_away: str  # a profile merged into Umar's
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> the API's order body
    app: Any = None  # the app around ``db`` (set by the fixture that built the world)


def _identity(db: Database, id_type: str, value: str) -> str:
    from omnijourney.config import IdentitySettings

    with db.transaction(write=False) as s:
        found = customers.find(s, id_type=id_type, value=value, settings=IdentitySettings())
    assert len(found) == 1, (id_type, value, found)
    return found[0].id


def _journeys(db: Database) -> tuple[str, str, str]:
    # the journeys end about a day ago (the orders are placed now), so the timeline shows a few days
    start = (utcnow() - T0).total_seconds() / 60 - 4 * 24 * 60

    def msg(*args: Any, minutes: float = 0, **kwargs: Any) -> Any:
        return factory_msg(*args, minutes=start + minutes, **kwargs)

    web = source(db, "web", "Web shop")
    app = source(db, "app", "Shop app")
    pos = source(db, "store", "Berlin Mitte till", store="S01")
    calls = source(db, "call_center", "Call center")
    whatsapp = source(db, "whatsapp", "WhatsApp")
    consent = {"consent": {"categoryPreferences": {"marketing": True, "analytics": True}}}
    send(db,
         # Umar browses the web anonymously, then signs in on the app: two profiles so far
         msg(web, "page", anonymous_id="w-umar", event="Home", minutes=0),
         msg(web, "track", anonymous_id="w-umar", event="Product Viewed", properties={"sku": "TEE-M"}, minutes=1),
         msg(web, "track", anonymous_id="w-umar", event="Product Added", properties={"sku": "TEE-M"}, minutes=2),
         msg(app, "identify", anonymous_id="d-umar", user_id="u-umar", minutes=60, context=consent,
             traits={"first_name": "Umar", "last_name": "Nguyen", "email": "umar@example.com",
                     "phone": "+49 30 23125 001"}),
         msg(app, "screen", anonymous_id="d-umar", user_id="u-umar", event="Cart", minutes=61),
         # he logs in on the web with the same email: the two profiles merge
         msg(web, "identify", anonymous_id="w-umar", minutes=120, traits={"email": "umar@example.com"}),
         msg(pos, "identify", anonymous_id="pos-umar", minutes=24 * 60,
             traits={"email": "umar@example.com"}, context={"externalIds": [
                 {"id": "LC-1001", "type": "loyalty_card", "collection": "users", "encoding": "none"}]}),
         msg(pos, "track", anonymous_id="pos-umar", event="Store Visited", minutes=24 * 60 + 1),
         msg(calls, "track", anonymous_id="call-1", event="Call Completed", minutes=2 * 24 * 60,
             context={"traits": {"phone": "+49 30 23125 001"}}),
         msg(whatsapp, "track", anonymous_id="wa-1", event="Message Received", minutes=3 * 24 * 60,
             context={"traits": {"phone": "+49 30 23125 001"}}),
         # Ann shops on the web
         msg(web, "identify", anonymous_id="w-ann", user_id="u-ann", minutes=10,
             traits={"first_name": "Ann", "last_name": "Smith", "email": "ann@example.com"}),
         msg(web, "track", anonymous_id="w-ann", user_id="u-ann", event="Product Viewed",
             properties={"sku": "JEANS-32"}, minutes=11),
         msg(app, "identify", anonymous_id="d-bea", user_id="u-bea", minutes=20,
             traits={"first_name": "Bea", "last_name": "Annan", "email": "bea@example.com"}),
         )
    umar = _identity(db, "email", "umar@example.com")
    with db.transaction(write=False) as s:
        merges = customers.profile(s, customer_id=umar).merged_from
    assert merges, "the seed's two profiles of Umar did not merge"
    return umar, _identity(db, "email", "ann@example.com"), merges[0].merged_id


def _prices(db: Database) -> None:
    with db.transaction() as s:
        pricing.create_price_list(s, code="hamburg", name="Hamburg store prices", currency="EUR", kind="channel",
                                  channel_codes=["S03"], priority=10)
        pricing.set_prices(s, price_list="hamburg", prices={"TEE-S": "18.00"})
        pricing.create_promotion(s, code="web-tees", name="Tees 10% off online", channel_codes=["web"],
                                 rule={"type": "percent_off", "percent": "10"},
                                 target={"skus": ["TEE-M"]})


def build(db: Database, client: TestClient) -> World:
    """The shop, its people, their carts and orders, and one staff account per role (and one to be changed)."""
    network(db)
    priced(db)
    _prices(db)
    stock_up(db, {("TEE-M", "WH"): 40, ("TEE-S", "WH"): 30, ("JEANS-32", "WH"): 20, ("TEE-M", "S01"): 6,
                  ("JEANS-32", "S01"): 4, ("TEE-S", "S01"): 3, ("TEE-M", "S02"): 4})
    umar, ann, merged_away = _journeys(db)
    h = {"Authorization": f"Bearer {make_key(db, 'admin', name='seed')}"}

    def cart(channel: str, customer: str, *lines: tuple[str, int], add_in: str | None = None) -> str:
        got = client.post("/api/v1/carts", json={"channel": channel, "customer_id": customer}, headers=h)
        assert got.status_code in (200, 201), got.text
        cid = got.json()["id"]
        for i, (sku, q) in enumerate(lines):
            where = add_in if add_in and i else channel  # the cart follows: later lines added on another device
            r = client.post(f"/api/v1/carts/{cid}/lines", json={"sku": sku, "quantity": q, "channel": where},
                            headers=h)
            assert r.status_code in (200, 201), r.text
        return cid

    def checkout(cid: str, channel: str, key: str, fulfilment: dict[str, Any], payments: list[Any]) -> dict[str, Any]:
        r = client.post(f"/api/v1/carts/{cid}/checkout", json={"channel": channel, "fulfilment": fulfilment,
                                                                "payments": payments},
                        headers={**h, "Idempotency-Key": key})
        assert r.status_code == 201, r.text
        return r.json()

    def move(order: dict[str, Any], *steps: str, channel: str = "S01") -> dict[str, Any]:
        body = order
        for to in steps:
            r = client.post(f"/api/v1/orders/{order['id']}/transitions", json={"to": to, "channel": channel},
                            headers=h)
            assert r.status_code == 200, r.text
            body = r.json()
        return body

    orders: dict[str, dict[str, Any]] = {}
    # Umar: bought in the app, collected at Berlin Mitte; the code is waiting
    o = checkout(cart("app", umar, ("TEE-M", 1)), "app", "k-umar-1", {"mode": "pickup", "location": "S01"}, [CARD])
    run_jobs(db)
    orders["ready"] = move(o, "picked", "ready_for_pickup")
    # Umar: jeans shipped home from the warehouse, not picked yet
    orders["to_ship"] = checkout(cart("web", umar, ("JEANS-32", 1)), "web", "k-umar-2",
                                 {"mode": "ship", "ship_to": {"city": "Berlin", "latitude": 52.5, "longitude": 13.4}},
                                 [CARD])
    # Ann: delivered by the web shop
    o = checkout(cart("web", ann, ("TEE-S", 2)), "web", "k-ann-1",
                 {"mode": "ship", "ship_to": {"city": "Potsdam", "latitude": 52.4, "longitude": 13.06}}, [CARD])
    run_jobs(db)
    orders["delivered"] = move(o, "picked", "shipped", "delivered", channel="web")
    # Ann at the till of Berlin Mitte, cash
    orders["till"] = checkout(cart("S01", ann, ("JEANS-32", 1)), "S01", "k-ann-2", {"mode": "in_store"},
                              [{"method": "cash"}])
    # Ann: a pickup at Berlin Mitte for the store to prepare
    orders["to_prepare"] = checkout(cart("web", ann, ("TEE-S", 1)), "web", "k-ann-3",
                                    {"mode": "pickup", "location": "S01"}, [CARD])
    run_jobs(db)
    # Umar's open cart: begun in the app, carried on on the web
    cart("app", umar, ("TEE-S", 1), ("JEANS-32", 1), add_in="web")
    for name, order in orders.items():
        r = client.get(f"/api/v1/orders/{order['id']}", headers=h)
        orders[name] = r.json()
    accounts = {role: staff(db, role, stores=["S01"] if role == "store_associate" else (),
                            name={"admin": "Ada Admin", "marketer": "Mia Marketer", "analyst": "Nils Analyst",
                                  "agent": "Gina Agent", "store_associate": "Sam Associate"}[role])
                for role in ROLES}
    accounts["new"] = staff(db, "agent", email="new@shop.example", must_change=True, name="Newt Agent")
    return World(db=db, accounts=accounts, umar=umar, ann=ann, merged_away=merged_away, orders=orders)
