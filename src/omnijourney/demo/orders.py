"""The demo retailer's orders: planned from the purchases of the journeys, then written in bulk (see ``commerce``).

:func:`plan` turns every ``Order Completed`` the journeys sent into an order with the same customer, channel, time,
lines and totals (the quote kept by ``build.price_orders``), plus orders the journeys do not send: the call center's
(a caller asking about sizes orders on the phone) and the marketplace's. For each it decides, as the services would:

- the fulfilment: a till sells from its own shelf (``in_store``), or, for what is not on the shelf, delivers home
  from a warehouse (order in store, deliver home); an online order whose basket ships free is shipped, collected in
  a store (from the shelf, or sent there from a warehouse), or reserved and paid at the till; one that pays for
  shipping is shipped. Sourcing picks a warehouse that has everything (the nearest), else a store that ships, else
  the fewest parcels, and explains it in the sourcing service's words;
- the lifecycle up to ``ctx.now``: older orders delivered or collected, recent ones allocated, picked, shipped or
  ready for pickup (with a pickup code); a few cancelled, a few pickups never collected and released after their
  deadline;
- the tenders (card through the test provider, cash at the tills, some gift card + card), captured, and refunds to
  them in the order the payments service uses (the card first);
- returns of part or all of some received orders, many in another channel than the sale, damaged ones into
  quarantine.

:func:`write` stores it all as the services would have left it (rows, ledger, timeline) with bulk inserts, and tells
the test provider about its charges so that a refund of a demo order later is answered like any other.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from omnijourney.catalog.service import variants_for_skus
from omnijourney.core.ids import new_ids
from omnijourney.customers.models import Customer
from omnijourney.db import Database, encode, insert_encoded
from omnijourney.demo.catalog import DemoClock
from omnijourney.demo.commerce import QUARANTINE, RETURNS_CENTRE, SHIP_FROM_STORE, WAREHOUSES, Network, store_of
from omnijourney.inventory.availability import distance_km
from omnijourney.inventory.stock import Change
from omnijourney.pricing.engine import Quote
from omnijourney.tracking.models import Event

if TYPE_CHECKING:
    from omnijourney.demo.build import DemoContext

CENT = Decimal("0.01")
MS = timedelta(milliseconds=1)
PICKUP_DAYS = 7  # as orders.orders.PICKUP_DAYS: an uncollected order goes back to stock after this
RETURN_DAYS = {"marketplace": 14}  # as orders.returns: 30 days, 14 for marketplaces
# the lifecycle's paths (orders.lifecycle), state by state
PATHS = {
    "ship": ("placed", "paid", "allocated", "picked", "shipped", "delivered"),
    "pickup": ("placed", "paid", "allocated", "picked", "ready_for_pickup", "collected"),
    "reserve_in_store": ("placed", "allocated", "picked", "ready_for_pickup", "collected"),
    "in_store": ("placed", "paid", "collected"),
}
EVENTS = {"placed": "Order Placed", "paid": "Order Paid", "shipped": "Order Shipped",
          "ready_for_pickup": "Order Ready for Pickup", "delivered": "Order Delivered", "collected": "Order Collected"}
REFUND_FIRST = {"card": 0, "cash": 1, "gift_card": 2}  # as payments.refunds: the card first, gift cards last
CARDS = (("pm_card_visa", "visa", "4242", 45), ("pm_card_mastercard", "mastercard", "4444", 30),
         ("pm_card_visa_debit", "visa", "5556", 15), ("pm_card_amex", "amex", "8431", 10))
GIFT_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # as orders.orders: pickup codes
CITIES = (  # name, postal code, latitude, longitude
    ("Berlin", "10115", 52.5321, 13.3849), ("Potsdam", "14467", 52.4009, 13.0591),
    ("Hamburg", "20095", 53.5503, 10.0006), ("Lübeck", "23552", 53.8679, 10.6873),
    ("Bremen", "28195", 53.0793, 8.8017), ("Hannover", "30159", 52.3744, 9.7386),
    ("München", "80331", 48.1374, 11.5755), ("Augsburg", "86150", 48.3705, 10.8978),
    ("Nürnberg", "90402", 49.4521, 11.0767), ("Köln", "50667", 50.9375, 6.9603),
    ("Düsseldorf", "40213", 51.2277, 6.7735), ("Bonn", "53111", 50.7374, 7.0982),
    ("Dortmund", "44135", 51.5136, 7.4653), ("Frankfurt am Main", "60311", 50.1109, 8.6821),
    ("Mainz", "55116", 49.9929, 8.2473), ("Stuttgart", "70173", 48.7758, 9.1829),
    ("Leipzig", "04109", 51.3397, 12.3731), ("Dresden", "01067", 51.0504, 13.7373),
)
STORE_CITY = {"S01": "Berlin", "S02": "Hamburg", "S03": "München", "S04": "Köln", "S05": "Frankfurt am Main"}
STREETS = ("Hauptstraße", "Bahnhofstraße", "Gartenstraße", "Schulstraße", "Lindenstraße", "Bergstraße",
           "Kirchstraße", "Waldstraße", "Ringstraße", "Goethestraße", "Schillerstraße", "Am Markt")
CARRIERS = ("DHL", "DPD", "Hermes")
REASONS = ("too small", "too big", "not as pictured", "changed my mind", "colour not as expected",
           "quality not as expected", "ordered two sizes, kept one")
DAMAGED = ("arrived damaged", "seam came apart", "stain on the fabric", "zip broken")
CANCEL_REASONS = ("ordered the wrong size", "changed my mind", "found it in a store", "delivery too slow")


# ---------------------------------------------------------------- what the journeys bought

@dataclass(frozen=True, slots=True)
class QuoteTerms:
    """An order's money as its channel quoted it: totals, each line (sku, quantity, unit price, discount, total)
    and the promotions applied (as a checkout keeps them)."""

    currency: str
    subtotal: Decimal
    discount: Decimal
    shipping: Decimal
    tax: Decimal
    total: Decimal
    lines: tuple[tuple[str, int, Decimal, Decimal, Decimal], ...]
    promotions: tuple[dict[str, Any], ...] = ()


def quote_terms(q: Quote) -> QuoteTerms:
    """The terms of a pricing engine's quote."""
    return QuoteTerms(
        currency=q.currency, subtotal=q.subtotal, discount=q.discount_total, shipping=q.shipping, tax=q.tax_total,
        total=q.total, lines=tuple((ln.sku, ln.quantity, ln.unit_price, ln.discount_total, ln.total) for ln in q.lines),
        promotions=tuple({"promotion_id": p.promotion_id, "name": p.name, "status": p.status, "code": p.code,
                          "reason": p.reason, "amount": str(p.amount), "voucher": p.voucher}
                         for p in q.promotions if p.status == "applied"))


@dataclass(slots=True)
class Purchase:
    """One purchase to turn into an order: the journey's ``Order Completed`` (``event_id``), or one the channel's
    own story adds (the call center, the marketplace: its event is written with the order)."""

    at: datetime
    customer_id: str | None
    anonymous_id: str | None
    channel: str  # the catalog's channel code
    terms: QuoteTerms
    event_id: int | None = None
    event_props: dict[str, Any] | None = None


@dataclass(slots=True)
class Tender:
    id: str
    method: str
    provider: str
    instrument: str | None
    brand: str | None
    last4: str | None
    amount: Decimal
    position: int
    ref: str
    at: datetime
    provider_ref: str = ""
    refunds: list[dict[str, Any]] = field(default_factory=list)  # op id, amount, at, reference, reason, refund ref

    @property
    def refunded(self) -> Decimal:
        return sum((r["amount"] for r in self.refunds), Decimal("0"))



@dataclass(slots=True)
class Parcel:
    id: str
    location: str
    lines: dict[str, int]
    to_location: str | None = None
    carrier: str | None = None
    tracking: str | None = None


@dataclass(slots=True)
class Plan:
    """One order as planned: what the services would have stored for it by ``ctx.now``."""

    p: Purchase
    id: str
    number: str
    email: str | None
    fulfilment: str = "ship"
    pickup: str | None = None
    parcels: list[Parcel] = field(default_factory=list)
    rule: str = "one_location"
    why: list[str] = field(default_factory=list)
    ship_to: dict[str, Any] | None = None
    times: dict[str, datetime] = field(default_factory=dict)  # state -> when it was reached (planned)
    cancelled: tuple[datetime, str, str] | None = None  # when, in which channel, why
    released: datetime | None = None  # an uncollected pickup sent back to stock at its deadline
    returns: list[dict[str, Any]] = field(default_factory=list)
    tenders: list[Tender] = field(default_factory=list)
    till: datetime | None = None  # a reserved order paid at the store's till
    status: str = "placed"
    payment_status: str = "unpaid"
    refunded: Decimal = Decimal("0")
    returned: dict[str, int] = field(default_factory=dict)
    reservation_id: str = ""
    pickup_code: str | None = None
    deadline: datetime | None = None
    history: list[tuple[str | None, str, str, str | None, datetime]] = field(default_factory=list)
    events: list[tuple[str, datetime, str, str, dict[str, Any]]] = field(default_factory=list)
    updated_at: datetime | None = None

    @property
    def received(self) -> datetime | None:
        """When the goods reached the customer (delivered or collected), if they did by now."""
        return self.times.get("delivered") or self.times.get("collected")


@dataclass(slots=True)
class History:
    """Everything :func:`write` stores."""

    now: datetime
    network: Network
    orders: list[Plan]
    titles: dict[str, str]
    changes: list[Change] = field(default_factory=list)
    reservations: list[dict[str, Any]] = field(default_factory=list)
    reservation_lines: list[dict[str, Any]] = field(default_factory=list)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    gift_cards: list[dict[str, Any]] = field(default_factory=list)
    best_sellers: set[str] = field(default_factory=set)


class Deck:
    """Draws from a shuffled deck of ``cards``, reshuffled when used up: each kind appears in its share, even in a
    small demo (a test's), instead of only on average."""

    def __init__(self, rng: random.Random, cards: dict[str, int]) -> None:
        self.rng, self.cards, self.pile = rng, cards, []  # type: list[str]

    def draw(self) -> str:
        if not self.pile:
            self.pile = [k for k, n in sorted(self.cards.items()) for _ in range(n)]
            self.rng.shuffle(self.pile)
        return self.pile.pop()


def _hours(rng: random.Random, lo: float, hi: float) -> timedelta:
    return timedelta(hours=rng.uniform(lo, hi))


def _within(rng: random.Random, t: datetime, opens: int, closes: int) -> datetime:
    """``t``, or a moment in the first hour after opening if it falls outside ``opens`` to ``closes`` o'clock."""
    if opens <= t.hour < closes:
        return t
    day = t if t.hour >= opens else t - timedelta(days=1)
    return (day + timedelta(days=1)).replace(hour=opens, minute=0, second=0, microsecond=0) + _hours(rng, 0, 1)


def _open(rng: random.Random, t: datetime) -> datetime:
    """In a store's opening hours (10 to 20 o'clock): staff hand over and customers collect then."""
    return _within(rng, t, 10, 20)


def _shift(rng: random.Random, t: datetime) -> datetime:
    """In a warehouse's shifts (6 to 22 o'clock)."""
    return _within(rng, t, 6, 22)


def _collection(rng: random.Random, picked: datetime) -> datetime:
    """The carrier collects a warehouse's parcels at four o'clock: the first collection an hour after picking."""
    at = (picked + timedelta(hours=1)).replace(hour=16, minute=0, second=0, microsecond=0)
    if at < picked + timedelta(hours=1):
        at += timedelta(days=1)
    return at + _hours(rng, 0, 0.75)


# ---------------------------------------------------------------- reading the purchases

def _journey_purchases(s: Session, ctx: DemoContext) -> list[Purchase]:
    quotes: dict[str, QuoteTerms] = ctx.extra.get("order_quotes", {})
    rows = s.execute(select(Event.id, Event.message_id, Event.customer_id, Event.anonymous_id, Event.channel,
                            Event.store_code, Event.timestamp, Event.properties)
                     .where(Event.event == "Order Completed", Event.source_id.is_not(None))
                     .order_by(Event.timestamp, Event.id)).all()
    out = []
    for eid, mid, cid, anon, channel, store, at, props in rows:
        code = store if channel == "store" and store else ("call-center" if channel == "call_center" else channel)
        terms = quotes.get(mid) or _terms_of(props)
        out.append(Purchase(at, cid, anon, code, terms, eid, dict(props)))
    return out


def _terms_of(props: dict[str, Any]) -> QuoteTerms:
    """Terms from the event alone (a journey priced without its quote kept): no line discounts."""
    lines = tuple((p["sku"], int(p["quantity"]), Decimal(str(p["price"])), Decimal("0"),
                   Decimal(str(p["price"])) * int(p["quantity"])) for p in props["products"])
    d = {k: Decimal(str(props.get(k, 0))) for k in ("discount", "shipping", "tax", "total")}
    return QuoteTerms(props.get("currency", "EUR"), sum((ln[4] for ln in lines), Decimal("0")), d["discount"],
                      d["shipping"], d["tax"], d["total"], lines)


def _more_purchases(s: Session, ctx: DemoContext, rng: random.Random) -> list[Purchase]:
    """Orders the journeys do not send: callers asking about sizes who order on the phone, and marketplace orders
    (the marketplace passes the buyer's email: the order joins that profile)."""
    from omnijourney.pricing.quoting import Quoter

    facts = ctx.extra["catalog"]
    start = ctx.now - timedelta(days=90)
    online = sorted(facts.skus_by_reach["everywhere"])
    wanted: list[tuple[str, str | None, datetime, list[tuple[str, int]]]] = []
    for cid, at, reason in _calls(s):
        if reason == "sizing" and rng.random() < 0.45:
            when = at + timedelta(minutes=rng.uniform(3, 20))
            if when < ctx.now:
                wanted.append(("call-center", cid, when, _basket(rng, online)))
    # marketplace buyers: known customers (with an email), some time after they first showed up
    first = dict(s.execute(select(Event.customer_id, func.min(Event.timestamp)).where(
        Event.customer_id.is_not(None)).group_by(Event.customer_id)).all())
    known = sorted(cid for cid, traits in s.execute(select(Customer.id, Customer.traits).where(
        Customer.merged_into.is_(None))).all() if (traits or {}).get("email") and cid in first)
    market = sorted(facts.skus_by_reach["marketplace"])
    for cid in rng.sample(known, min(len(known), max(3, ctx.people // 50))):
        since = max(start, first[cid])
        when = since + timedelta(seconds=rng.uniform(0, max(0.0, (ctx.now - since).total_seconds() - 3600)))
        wanted.append(("marketplace", cid, when, _basket(rng, market)))
    quoters: dict[str, Quoter] = {}
    out = []
    for channel, cid, when, lines in wanted:
        if channel not in quoters:
            quoters[channel] = Quoter(s, channel_code=channel)
            quoters[channel].preload(sku for c, _, _, b in wanted if c == channel for sku, _ in b)
        out.append(Purchase(when, cid, None, channel, quote_terms(quoters[channel].quote(lines, at=when))))
    return out


def _calls(s: Session) -> list[tuple[str, datetime, str | None]]:
    """(customer, when, reason) of the calls the call center logged."""
    return [(cid, at, (props or {}).get("reason")) for cid, at, props in s.execute(
        select(Event.customer_id, Event.timestamp, Event.properties).where(
            Event.event == "Call Completed", Event.source_id.is_not(None), Event.customer_id.is_not(None))
        .order_by(Event.timestamp, Event.id)).all()]


def _basket(rng: random.Random, skus: Sequence[str]) -> list[tuple[str, int]]:
    picked = sorted({rng.choice(skus) for _ in range(rng.choice((1, 1, 1, 2)))})
    return [(sku, 1) for sku in picked]


# ---------------------------------------------------------------- planning

class Planner:
    """Decides each order's fulfilment, sourcing and timing, purchase by purchase in time order, keeping the
    network's record of what each location carries and what ran out."""

    def __init__(self, ctx: DemoContext, network: Network, rng: random.Random, clock: DemoClock,
                 customers: dict[str, dict[str, Any]]) -> None:
        self.ctx, self.net, self.rng, self.clock, self.customers = ctx, network, rng, clock, customers
        self.now = ctx.now
        self.homes: dict[str | None, dict[str, Any]] = {}
        self.online = Deck(rng, {"ship": 6, "pickup": 3, "reserve_in_store": 1})
        self.ship_from = Deck(rng, {"warehouse": 11, "store": 1})
        self.pickup = Deck(rng, {"shelf": 3, "transfer": 1})
        self.till = Deck(rng, {"in_store": 14, "deliver": 1})
        self.codes: set[str] = set()
        self.gift_cards: list[dict[str, Any]] = []

    def ids(self, at: datetime, n: int = 1) -> list[str]:
        """Seeded ids whose time part is ``at`` (time-ordered like the services' ids)."""
        self.clock.now = at
        return new_ids(n)

    # ------------------------------------------------ who and where

    def home(self, p: Purchase) -> dict[str, Any]:
        """The customer's address and the store they use (their till's store, else the nearest)."""
        cid = p.customer_id
        if cid not in self.homes:
            store = p.channel if p.channel in self.net.stores else None
            if store and self.rng.random() < 0.75:
                city = next(c for c in CITIES if c[0] == STORE_CITY[store])
            else:
                city = self.rng.choice(CITIES)
            traits = self.customers.get(cid or "", {})
            name = " ".join(x for x in (traits.get("first_name"), traits.get("last_name")) if x) or "Customer"
            self.homes[cid] = {
                "store": store or store_of(self.net, city[2], city[3]),
                "ship_to": {"name": name, "street": f"{self.rng.choice(STREETS)} {self.rng.randint(1, 120)}",
                            "postal_code": city[1], "city": city[0], "country": "DE", "latitude": city[2],
                            "longitude": city[3]}}
        return self.homes[cid]

    # ------------------------------------------------ fulfilment and sourcing

    def fulfil(self, p: Purchase) -> Plan:
        """The order of a purchase: its fulfilment and the locations that fill it, with the sourcing's reasons."""
        oid = self.ids(p.at)[0]
        email = self.customers.get(p.customer_id or "", {}).get("email")
        o = Plan(p, oid, "O-" + oid[-10:].upper(), email)
        wanted = {sku: q for sku, q, *_ in p.terms.lines}
        home = self.home(p)
        if p.channel in self.net.stores:
            store = p.channel
            carried = self.net.has(store, wanted)
            deliver = (self.rng.random() < 0.5) if not carried else self.till.draw() == "deliver"
            if deliver and self._ship(o, wanted, home["ship_to"], stores=False,
                                      lacking=f"{self.net.names[store]} has none on its shelf"):
                # order in store, deliver home (endless aisle): not on this shelf (any more) at the time
                self.net.sold_out.update((sku, store) for sku in wanted)
                o.ship_to = home["ship_to"]
            else:
                o.fulfilment, o.pickup = "in_store", store
                o.parcels = [Parcel(self.ids(p.at)[0], store, dict(wanted))]
                o.why = ["the till sells from its own shelf"]
                self.net.carry[store].update(wanted)
            return o
        mode = "ship" if p.terms.shipping != 0 or p.channel == "marketplace" else self.online.draw()
        if mode == "reserve_in_store":
            store = self._store_with(home["store"], wanted)
            if store is None:
                mode = "pickup"
            else:
                self._at_store(o, "reserve_in_store", store, wanted)
        if mode == "pickup":
            self._pickup(o, home["store"], wanted)
        if mode == "ship":
            self._ship(o, wanted, home["ship_to"], stores=self.ship_from.draw() == "store")
        if o.fulfilment == "ship":
            o.ship_to = home["ship_to"]
        return o

    def _store_with(self, first: str, wanted: dict[str, int]) -> str | None:
        """``first`` if its shelf has everything, else the nearest store that has."""
        if self.net.has(first, wanted):
            return first
        lat, lon = self.net.coords[first]
        near = sorted((c for c in self.net.stores if c != first),
                      key=lambda c: distance_km((lat, lon), self.net.coords[c]))
        return next((c for c in near if self.net.has(c, wanted)), None)

    def _at_store(self, o: Plan, mode: str, store: str, wanted: dict[str, int]) -> None:
        o.fulfilment, o.pickup = mode, store
        o.parcels = [Parcel(self.ids(o.p.at)[0], store, dict(wanted))]
        o.why = [f"{self.net.names[store]} has everything on its shelf: collect there"]

    def _pickup(self, o: Plan, store: str, wanted: dict[str, int]) -> None:
        shelf = {s: q for s, q in wanted.items() if s in self.net.carry[store]}
        if len(shelf) == len(wanted) and self.pickup.draw() == "transfer":
            gone = sorted(shelf)[0]  # sold out on this shelf at the time: it comes from a warehouse
            shelf.pop(gone)
        rest = {s: q for s, q in wanted.items() if s not in shelf}
        if not rest:
            self._at_store(o, "pickup", store, wanted)
            return
        warehouse = next((w for w in self.net.warehouses() if self.net.has(w, rest)), None)
        if warehouse is None:  # nothing can be sent there: delivered home instead
            self._ship(o, wanted, self.home(o.p)["ship_to"], stores=False)
            return
        self.net.sold_out.update((s, store) for s in rest)
        o.fulfilment, o.pickup, o.rule = "pickup", store, "transfer_to_store"
        name = self.net.names[store]
        o.parcels = [Parcel(self.ids(o.p.at)[0], store, shelf)] if shelf else []
        o.parcels.append(Parcel(self.ids(o.p.at)[0], warehouse, rest, to_location=store))
        o.why = [f"{name} lacks {', '.join(f'{q} x {s}' for s, q in rest.items())} on its shelf",
                 f"{warehouse} sends {', '.join(f'{q} x {s}' for s, q in rest.items())} to {name} for collection"]

    def _ship(self, o: Plan, wanted: dict[str, int], to: dict[str, Any], *, stores: bool,
              lacking: str | None = None) -> bool:
        """Ship to home: one parcel from the nearest warehouse that has everything (``stores``: from a store that
        ships, the warehouses having run out), else the fewest parcels. False if nothing can send it."""
        here = (to["latitude"], to["longitude"])

        def rank(code: str) -> tuple[bool, float, str]:  # warehouses before stores, then nearest
            return (code not in WAREHOUSES, distance_km(here, self.net.coords[code]), code)

        places = self.net.warehouses() + ([c for c in SHIP_FROM_STORE if c in self.net.stores] if stores else [])
        complete = sorted((c for c in places if self.net.has(c, wanted)), key=rank)
        if stores:
            shops = [c for c in complete if c not in WAREHOUSES]
            if shops:  # the warehouses had none left: ship from store
                complete = shops
                self.net.sold_out.update((sku, w) for sku in wanted for w in WAREHOUSES)
        o.fulfilment = "ship"
        if complete:
            best = complete[0]
            kind = "a warehouse" if best in WAREHOUSES else "a store (ship from store)"
            o.parcels = [Parcel(self.ids(o.p.at)[0], best, dict(wanted))]
            o.rule, o.why = "one_location", [f"{self.net.names[best]} has everything: one parcel from {kind}"]
            if len(complete) > 1:
                o.why.append("chosen before " + ", ".join(sorted(complete[1:]))
                             + ": warehouses before stores, then the nearest")
        else:
            rest, parcels = dict(wanted), []
            o.why = ["no single location has everything: the fewest parcels"]
            while rest:
                cover = {c: sum(1 for s in rest if s in self.net.carry.get(c, ())) for c in places}
                cover = {c: n for c, n in cover.items() if n}
                if not cover:
                    return False
                best = min(cover, key=lambda c: (-cover[c], *rank(c)))
                take = {s: q for s, q in rest.items() if s in self.net.carry[best]}
                parcels.append(Parcel(self.ids(o.p.at)[0], best, take))
                o.why.append(f"{self.net.names[best]} sends {', '.join(f'{q} x {s}' for s, q in take.items())}")
                rest = {s: q for s, q in rest.items() if s not in take}
            o.parcels, o.rule = parcels, "fewest_shipments"
        if lacking:
            o.why.insert(0, lacking)
        return True

    # ------------------------------------------------ the lifecycle, as time went by

    def schedule(self, o: Plan) -> None:
        """When each state of its path was (or will be) reached."""
        t, r = o.p.at, self.rng
        times = {"placed": t}
        if o.fulfilment == "in_store":
            times.update(paid=t, collected=t + MS)
        elif o.fulfilment == "ship":
            # a warehouse picks in its shifts and hands its parcels to the carrier at four; a store that ships
            # picks between customers and calls a courier
            from_store = all(p.location not in WAREHOUSES for p in o.parcels)
            times.update(paid=t, allocated=t)
            if from_store:
                times["picked"] = _open(r, t + _hours(r, 1, 8))
                times["shipped"] = times["picked"] + _hours(r, 1, 5)
                times["delivered"] = times["shipped"] + _hours(r, 18, 48)
            else:
                times["picked"] = _shift(r, t + _hours(r, 3, 26))
                times["shipped"] = _collection(r, times["picked"])
                times["delivered"] = times["shipped"] + _hours(r, 16, 66)
        else:
            if o.fulfilment == "pickup":
                times["paid"] = t
            times["allocated"] = t
            if o.rule == "transfer_to_store":  # picked at the warehouse, a day or two on the road
                times["picked"] = _shift(r, t + _hours(r, 3, 26))
                times["ready_for_pickup"] = _open(r, _collection(r, times["picked"]) + _hours(r, 20, 44))
            else:
                times["picked"] = _open(r, t + _hours(r, 0.5, 4))
                times["ready_for_pickup"] = times["picked"] + _hours(r, 0.2, 1.5)
            mean = 30 if o.fulfilment == "reserve_in_store" else 48  # hours until they come for it
            wait = timedelta(hours=min(r.expovariate(1 / mean), 6.5 * 24))
            times["collected"] = _open(r, times["ready_for_pickup"] + wait)
        o.times = times


def plan(s: Session, ctx: DemoContext, network: Network, rng: random.Random, clock: DemoClock) -> History:
    """Every order of the demo, planned (nothing written)."""
    purchases = _journey_purchases(s, ctx) + _more_purchases(s, ctx, rng)
    purchases.sort(key=lambda p: (p.at, p.event_id or 0))
    ids = sorted({p.customer_id for p in purchases if p.customer_id})
    customers = {cid: traits or {} for cid, traits in s.execute(
        select(Customer.id, Customer.traits).where(Customer.id.in_(ids))).all()}
    titles = {sku: v.title for sku, v in variants_for_skus(
        s, {ln[0] for p in purchases for ln in p.terms.lines}, "web").items()}
    planner = Planner(ctx, network, rng, clock, customers)
    orders = []
    for p in purchases:
        o = planner.fulfil(p)
        planner.schedule(o)
        orders.append(o)
    history = History(ctx.now, network, orders, titles)
    _outcomes(planner, orders, s)
    for o in orders:
        _settle(planner, history, o)
    units = Counter()  # type: Counter[str]
    for o in orders:
        for sku, q, *_ in o.p.terms.lines:
            units[sku.split("-")[0]] += q
    hot = {style for style, _ in sorted(units.items(), key=lambda kv: (-kv[1], kv[0]))[:6]}
    history.best_sellers = {sku for skus in network.carry.values() for sku in skus if sku.split("-")[0] in hot}
    history.gift_cards = planner.gift_cards
    return history


def _outcomes(pl: Planner, orders: list[Plan], s: Session) -> None:
    """Cancellations, pickups nobody collected, returns: a share of the orders that could have them, at least a
    few of each whatever the demo's size."""
    rng, now = pl.rng, pl.now

    def quota(share: float, n: int, least: int) -> int:
        return min(n, max(least, round(share * n)))

    late = [o for o in orders if o.fulfilment in ("pickup", "reserve_in_store") and o.rule == "one_location"
            and o.times["ready_for_pickup"] + timedelta(days=PICKUP_DAYS) < now - timedelta(hours=1)]
    for o in rng.sample(late, quota(0.06, len(late), 2)):
        o.released = o.times["ready_for_pickup"] + timedelta(days=PICKUP_DAYS)
        del o.times["collected"]
    cancellable = [o for o in orders if o.fulfilment != "in_store" and o.released is None
                   and o.times["picked"] - o.p.at > timedelta(minutes=30) and o.times["picked"] < now]
    for o in rng.sample(cancellable, quota(0.025, len(cancellable), 2)):
        at = o.p.at + timedelta(seconds=rng.uniform(10 * 60, (o.times["picked"] - o.p.at).total_seconds() - 60))
        channel = "call-center" if rng.random() < 0.4 else o.p.channel
        o.cancelled = (at, channel, rng.choice(CANCEL_REASONS))
        o.times = {k: v for k, v in o.times.items() if v <= at}
    # returns: of what reached the customer at least a day ago, about one online order in nine, one till sale in 30
    calls: dict[str, list[datetime]] = defaultdict(list)
    for cid, at, reason in _calls(s):
        if reason == "returns":
            calls[cid].append(at)
    received = [o for o in orders if o.cancelled is None and o.received and o.received < now - timedelta(days=1)]
    chosen = [o for o in received if rng.random() < (0.035 if o.p.channel in pl.net.stores else 0.11)]
    if len(chosen) < min(4, len(received)):
        rest = [o for o in received if o not in chosen]
        chosen += rng.sample(rest, min(len(rest), 4 - len(chosen)))
    for o in sorted(chosen, key=lambda o: (o.p.at, o.id)):
        _plan_return(pl, o, calls.get(o.p.customer_id or "", []))


def _plan_return(pl: Planner, o: Plan, calls: list[datetime]) -> None:
    rng, now, net = pl.rng, pl.now, pl.net
    got = o.received
    assert got is not None
    window = timedelta(days=RETURN_DAYS.get(o.p.channel, 30))
    latest = min(now - timedelta(minutes=30), got + window)
    at = got + timedelta(seconds=rng.uniform(3600, max(3601.0, min(20 * 86400, (latest - got).total_seconds()))))
    home = pl.home(o.p)["store"]
    sold_in_store = o.p.channel in net.stores
    called = [c for c in calls if got < c < latest - timedelta(days=1)]
    if not sold_in_store and called and rng.random() < 0.7:
        # they called the call center about it: a parcel back to the returns centre, arranged on the phone
        channel, place = "call-center", RETURNS_CENTRE
        at = min(latest, called[0] + _hours(rng, 24, 72))
    elif not sold_in_store:
        if rng.random() < 0.55:  # bought online, brought back to a store
            store = o.pickup or home
            channel, place = store, store
        else:  # sent back by post, the return form in the channel it was bought in
            channel, place = o.p.channel, RETURNS_CENTRE
    else:
        roll = rng.random()
        if roll < 0.45:
            channel = place = o.p.channel
        elif roll < 0.7:  # another store than the one it was bought in
            lat, lon = net.coords[o.p.channel]
            channel = place = store_of(net, lat, lon, skip=o.p.channel)
        else:  # bought in a store, sent back to the warehouse with the web shop's return form
            channel, place = "web", RETURNS_CENTRE
    lines = list(o.p.terms.lines)
    if len(lines) > 1 and rng.random() < 0.5:
        lines = [rng.choice(lines)]  # a partial return: one of the items
    items = []
    for sku, q, *_ in lines:
        damaged = rng.random() < 0.12
        qty = q if q == 1 or rng.random() < 0.5 else rng.randint(1, q)
        items.append({"sku": sku, "quantity": qty, "reason": rng.choice(DAMAGED if damaged else REASONS),
                      "condition": "damaged" if damaged else "resellable"})
    o.returns.append({"id": pl.ids(at)[0], "at": at, "channel": channel, "place": place, "items": items})


# ---------------------------------------------------------------- settling: states, money, units, events

def _kind(network: Network, code: str) -> tuple[str, str | None]:
    """(event channel, store code) of a catalog channel."""
    if code in network.stores:
        return "store", code
    return ("call_center" if code == "call-center" else code), None


def _tenders(pl: Planner, o: Plan, at: datetime, total: Decimal, ref: str, till: bool) -> list[Tender]:
    """How the order was paid: cash or card at a till, a card online, now and then a gift card with a card."""
    rng = pl.rng
    roll = rng.random()
    out: list[Tender] = []
    minor = int(total * 100)
    if till and roll < 0.35:
        methods = ["cash"]
    elif roll > 0.93 and minor > 2500:
        methods = ["gift_card", "card"]
    else:
        methods = ["card"]
    left = total
    ids = pl.ids(at, len(methods))
    for i, method in enumerate(methods):
        if method == "gift_card":
            value = next(v for v in (Decimal(100), Decimal(50), Decimal(25)) if v < total)
            code = "GC-" + "-".join("".join(rng.choice(GIFT_ALPHABET) for _ in range(4)) for _ in range(4))
            issued = max(at - timedelta(days=rng.uniform(5, 80)), pl.now - timedelta(days=115))
            pl.gift_cards.append({"code": code, "value": value, "issued": issued})
            amount = value
            t = Tender(ids[i], "gift_card", "gift_card", code, "gift_card", code[-4:], amount, i, ref, at)
        elif method == "cash":
            t = Tender(ids[i], "cash", "cash", None, None, None, left, i, ref, at, provider_ref=f"cash_{ids[i]}")
        else:
            token, brand, last4, _ = rng.choices(CARDS, [c[3] for c in CARDS])[0]
            t = Tender(ids[i], "card", "test", token, brand, last4, left, i, ref, at,
                       provider_ref="pi_test_" + f"{rng.getrandbits(96):024x}")
        left -= t.amount
        out.append(t)
    return out


def _refund(pl: Planner, o: Plan, amount: Decimal, at: datetime, reference: str, reason: str) -> None:
    """Split a refund over the captured tenders as ``payments.refunds`` does: the card first, then cash, then gift
    cards, each at most what it has left."""
    left = amount
    for t in sorted(o.tenders, key=lambda t: (REFUND_FIRST[t.method], -t.position)):
        part = min(left, t.amount - t.refunded)
        if part <= 0:
            continue
        op = pl.ids(at)[0]
        ref = {"card": "re_test_" + f"{pl.rng.getrandbits(96):024x}", "cash": f"cash_{t.id}:refund:{op}"}.get(
            t.method, "")
        t.refunds.append({"op": op, "amount": part, "at": at, "reference": reference, "reason": reason,
                          "refund_ref": ref})
        left -= part
        if left <= 0:
            break
    o.refunded += amount


def _settle(pl: Planner, h: History, o: Plan) -> None:
    """The order's states, money, units and timeline, as the services would have recorded them by ``now``."""
    now, rng, p = pl.now, pl.rng, o.p
    lines = {sku: q for sku, q, *_ in p.terms.lines}
    order_channel = p.channel
    reached = [(state, at) for state, at in o.times.items() if at <= now]
    reached.sort(key=lambda sa: PATHS[o.fulfilment].index(sa[0]))
    events: list[tuple[str, datetime, str, str, dict[str, Any]]] = []

    def where(state: str) -> str:  # the channel a state was reached in
        if state in ("ready_for_pickup", "collected") and o.pickup:
            return o.pickup
        if state in ("picked", "shipped") and all(x.location in pl.net.stores for x in o.parcels):
            return o.parcels[0].location  # ship from store: the store's staff
        return order_channel

    # the reservation of the checkout, kept by the order; units leave when shipped or collected
    rid = pl.ids(p.at)[0]
    o.reservation_id = rid
    held = {(sku, x.location): q for x in o.parcels for sku, q in x.lines.items()}
    line_status = dict.fromkeys(held, "active")
    settled_at = p.at
    for (sku, loc), q in sorted(held.items()):
        h.changes.append(Change(sku, loc, "reservation", reserved=q, ref=rid, channel=order_channel, at=p.at))

    def consume(at: datetime, only: Iterable[tuple[str, str]] | None = None) -> None:
        nonlocal settled_at
        for key in sorted(only if only is not None else held):
            if line_status[key] == "active":
                h.changes.append(Change(key[0], key[1], "sale", on_hand=-held[key], reserved=-held[key], ref=o.id,
                                        channel=order_channel, at=at))
                line_status[key], settled_at = "consumed", at

    def release(at: datetime) -> None:
        nonlocal settled_at
        for key in sorted(held):
            if line_status[key] == "active":
                h.changes.append(Change(key[0], key[1], "release", reserved=-held[key], ref=rid,
                                        channel=order_channel, at=at))
                line_status[key], settled_at = "released", at

    prev: str | None = None
    paid = o.fulfilment != "reserve_in_store"
    if paid and p.terms.total > 0:
        o.tenders = _tenders(pl, o, p.at, p.terms.total, o.id, till=o.fulfilment == "in_store")
        o.payment_status = "paid"
    for state, at in reached:
        if state == "collected" and o.fulfilment == "reserve_in_store":
            # paid at the store's till first, then handed over
            till_at = at - timedelta(minutes=rng.uniform(1, 4))
            o.till = till_at
            o.tenders = _tenders(pl, o, till_at, p.terms.total, f"till:{o.id}", till=True)
            o.payment_status = "paid"
            o.history.append((prev, prev or "placed", o.pickup or order_channel, "paid at the till", till_at))
            events.append(("Order Paid", till_at, o.pickup or order_channel, prev or "placed", {}))
        o.history.append((prev, state, where(state), None, at))
        extra: dict[str, Any] = {}
        if state == "ready_for_pickup":
            o.deadline = at + timedelta(days=PICKUP_DAYS)
            extra = {"pickup_deadline": o.deadline.isoformat()}
            consume(at, [k for k in held if k[1] != o.pickup])  # units sent from a warehouse left it
        elif state == "shipped":
            carrier = rng.choice(CARRIERS)
            tracking = {"DHL": f"00340434{rng.randrange(10**12):012d}", "DPD": f"0150{rng.randrange(10**10):010d}",
                        "Hermes": f"H10{rng.randrange(10**14):014d}"}[carrier]
            extra = {"parcels": [x.location for x in o.parcels], "carrier": carrier, "tracking": tracking}
            for x in o.parcels:
                x.carrier, x.tracking = carrier, tracking
            consume(at)
        elif state == "collected":
            consume(at)
        if state in EVENTS:  # placed and paid with the purchase: just before the channel's Order Completed
            offset = {"placed": -2 * MS, "paid": -MS}.get(state, timedelta(0))
            events.append((EVENTS[state], at + offset, where(state), state, extra))
        prev = state
    o.status = prev or "placed"
    if o.cancelled is not None or o.released is not None:
        if o.released is not None:
            at, channel, reason = o.released, order_channel, "not collected by the deadline"
        else:
            at, channel, reason = o.cancelled  # type: ignore[misc]
        release(at)
        o.history.append((o.status, "cancelled", channel, reason, at))
        o.status = "cancelled"
        events.append(("Order Cancelled", at, channel, "cancelled", {"reason": reason}))
        if o.released is not None:
            events.append(("Pickup Released", at, o.pickup or order_channel, "cancelled", {}))
        if o.tenders:  # the settle job gives the money back a moment later
            back = at + timedelta(minutes=rng.uniform(1, 3))
            _refund(pl, o, p.terms.total, back, f"cancel:{o.id}", reason)
            o.payment_status = "refunded"
            events.append(("Order Refunded", back, channel, "cancelled",
                           {"refund": str(p.terms.total), "reason": reason}))
            settled_at = max(settled_at, back)
    elif o.status == "ready_for_pickup":
        o.pickup_code = _pickup_code(pl)
    line_totals = {sku: total for sku, _, _, _, total in p.terms.lines}
    for ret in o.returns:
        refund = Decimal("0")
        for item in ret["items"]:
            sku, qty = item["sku"], item["quantity"]
            done = o.returned.get(sku, 0)
            unit = (line_totals[sku] / lines[sku]).quantize(CENT, rounding=ROUND_HALF_UP)
            refund += line_totals[sku] - unit * done if done + qty == lines[sku] else unit * qty
            o.returned[sku] = done + qty
            item["location"] = QUARANTINE if item["condition"] == "damaged" else ret["place"]
            h.changes.append(Change(sku, item["location"], "return", on_hand=qty, ref=ret["id"], reason=item["reason"],
                                    channel=ret["channel"], at=ret["at"]))
        ret["refund"] = refund
        status = "returned" if all(o.returned.get(s, 0) >= q for s, q in lines.items()) else "partly_returned"
        note = "; ".join(f"{i['sku']}: {i['reason']}" for i in ret["items"])
        o.history.append((o.status, status, ret["channel"], note, ret["at"]))
        o.status = status
        items = [{k: i[k] for k in ("sku", "quantity", "reason", "condition", "location")} for i in ret["items"]]
        events.append(("Order Returned", ret["at"], ret["channel"], status,
                       {"return_id": ret["id"], "returned_at": ret["place"], "items": items, "refund": str(refund)}))
        if refund > 0 and o.tenders:
            _refund(pl, o, refund, ret["at"], f"return:{ret['id']}", f"return {ret['id']}")
            o.payment_status = "refunded" if o.refunded >= p.terms.total else "partly_refunded"
            events.append(("Order Refunded", ret["at"], ret["channel"], status,
                           {"refund": str(refund), "return_id": ret["id"], "reason": "returned"}))
        settled_at = max(settled_at, ret["at"])
    if p.event_id is None:  # an order the journeys did not send: the platform records its purchase
        events.append(("Order Completed", p.at, order_channel, "paid" if paid else "placed", {}))
    o.events = events
    o.updated_at = max([at for *_, at in o.history] + [settled_at])
    statuses = set(line_status.values())
    h.reservations.append({"id": rid, "status": "active" if "active" in statuses else (
        "consumed" if "consumed" in statuses else "released"), "channel_code": order_channel, "ref": o.id,
        "expires_at": None, "created_at": p.at, "updated_at": settled_at})
    h.reservation_lines += [{"reservation_id": rid, "sku": sku, "location_code": loc, "quantity": q,
                             "status": line_status[(sku, loc)]} for (sku, loc), q in sorted(held.items())]


def _pickup_code(pl: Planner) -> str:
    while True:
        code = "".join(pl.rng.choice(CODE_ALPHABET) for _ in range(6))
        if code not in pl.codes:
            pl.codes.add(code)
            return code


# ---------------------------------------------------------------- writing

def _insert(s: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    if rows:
        insert_encoded(s, encode(table, rows, s.get_bind().dialect.name))


def _money(value: Decimal) -> str:
    return str(value.quantize(CENT))


def write(s: Session, h: History, clock: DemoClock) -> None:
    """Store the planned orders (the ledger is written by the caller): orders, lines, shipments, history,
    reservations, payments and their log, gift cards, returns, timeline events; the journeys' ``Order Completed``
    events name their order; open pickups get the job that releases them at their deadline."""
    from omnijourney import jobs
    from omnijourney.inventory.models import Reservation, ReservationLine, Transfer
    from omnijourney.orders.models import Order, OrderHistory, OrderLine, Return, Shipment
    from omnijourney.orders.orders import RELEASE_JOB
    from omnijourney.payments.models import GiftCard, GiftCardMovement, Payment, PaymentOperation

    now = h.now
    orders, lines, shipments, history, returns, events = [], [], [], [], [], []
    updates = []
    payments, operations, movements = [], [], []
    for o in h.orders:
        p, t = o.p, o.p.terms
        orders.append({
            "id": o.id, "number": o.number, "customer_id": p.customer_id, "anonymous_id": p.anonymous_id,
            "email": o.email, "channel_code": p.channel, "cart_id": None, "status": o.status,
            "payment_status": o.payment_status, "fulfilment": o.fulfilment, "pickup_location": o.pickup,
            "pickup_code": o.pickup_code, "pickup_deadline": o.deadline, "ship_to": o.ship_to,
            "currency": t.currency, "subtotal": _money(t.subtotal), "discount": _money(t.discount),
            "shipping": _money(t.shipping), "tax": _money(t.tax), "total": _money(t.total),
            "refunded": _money(o.refunded), "vouchers": [], "promotions": list(t.promotions),
            "sourcing": {"rule": o.rule, "explanation": o.why, "parcels": [
                {"location": x.location, "to_location": x.to_location,
                 "lines": [{"sku": sku, "quantity": q} for sku, q in x.lines.items()]} for x in o.parcels]},
            "reservation_id": o.reservation_id, "placed_at": p.at, "updated_at": o.updated_at})
        for sku, q, unit, discount, total in t.lines:
            lines.append({"order_id": o.id, "sku": sku, "title": h.titles.get(sku), "quantity": q,
                          "unit_price": _money(unit), "discount": _money(discount), "total": _money(total),
                          "returned": o.returned.get(sku, 0)})
        ship_status = {"placed": "allocated", "paid": "allocated", "allocated": "allocated", "picked": "picked",
                       "ready_for_pickup": "picked", "shipped": "shipped", "delivered": "delivered",
                       "collected": "collected", "cancelled": "cancelled"}
        last = next((st for _, st, *_ in reversed(o.history) if st in ship_status), "placed")
        for x in o.parcels:
            shipments.append({"id": x.id, "order_id": o.id, "location_code": x.location, "to_location": x.to_location,
                              "lines": [{"sku": sku, "quantity": q} for sku, q in x.lines.items()],
                              "status": ship_status[last], "carrier": x.carrier, "tracking": x.tracking,
                              "created_at": p.at,
                              "updated_at": o.updated_at})
        history += [{"order_id": o.id, "from_status": frm, "to_status": to, "channel_code": ch, "note": note,
                     "at": at} for frm, to, ch, note, at in o.history]
        for r in o.returns:
            returns.append({"id": r["id"], "order_id": o.id, "channel_code": r["channel"],
                            "location_code": r["place"], "status": "refunded" if r["refund"] > 0 and o.tenders
                            else "received",
                            "lines": [{k: i[k] for k in ("sku", "quantity", "reason", "condition", "location")}
                                      for i in r["items"]],
                            "refund_amount": _money(r["refund"]), "exchange_order_id": None, "created_at": r["at"]})
        products = [{"sku": sku, "name": h.titles.get(sku), "price": _money(unit), "quantity": q}
                    for sku, q, unit, *_ in sorted(t.lines)]
        base = {"order_id": o.id, "order_number": o.number, "channel_code": p.channel, "fulfilment": o.fulfilment}
        money = {"currency": t.currency, "total": _money(t.total), "revenue": _money(t.subtotal - t.discount),
                 "shipping": _money(t.shipping), "tax": _money(t.tax), "discount": _money(t.discount),
                 "products": products}
        for name, at, channel, status, extra in o.events:
            kind, store = _kind(h.network, channel)
            props = {**base, "status": status, **money}
            if o.pickup:
                props["pickup_location"] = o.pickup
            props.update(extra)
            events.append((at, len(events), {
                "source_id": None, "message_id": "", "type": "track", "event": name,
                "customer_id": p.customer_id, "user_id": None, "anonymous_id": p.anonymous_id, "channel": kind,
                "store_code": store, "timestamp": at, "original_timestamp": None, "sent_at": None,
                "received_at": at, "properties": props, "traits": None, "context": None}))
        if p.event_id is not None and p.event_props is not None:
            props = dict(p.event_props)
            props["channel_order_id"] = props.get("order_id")
            props.update(order_id=o.id, order_number=o.number)
            updates.append({"b_id": p.event_id, "b_props": props})
        for tender in o.tenders:
            if tender.method == "gift_card":  # first: the hold's id is the payment's reference
                movements += _gift_card_moves(tender, clock)
            payments.append(_payment(tender, o))
            operations += _operations(tender, clock)
    cards = {c["code"]: c for c in h.gift_cards}
    gift_cards = []
    for code, c in sorted(cards.items()):
        spent = [m for m in movements if m["code"] == code]
        balance = int(c["value"] * 100) + sum(m["balance_change"] for m in spent)
        gift_cards.append({"code": code, "currency": "EUR", "initial_minor": int(c["value"] * 100),
                           "balance_minor": balance, "active": True, "expires_at": None, "created_at": c["issued"]})
        clock.now = c["issued"]
        movements.append({"id": new_ids(1)[0], "code": code, "kind": "issue", "amount_minor": int(c["value"] * 100),
                          "balance_change": int(c["value"] * 100), "hold_id": None, "payment_id": None,
                          "idempotency_key": None, "created_at": c["issued"]})
    events.sort(key=lambda e: (e[0], e[1]))
    rows = []
    for at, _, row in events:
        clock.now = at
        row["message_id"] = new_ids(1)[0]
        rows.append(row)
    clock.now = now
    _insert(s, Order.__table__, orders)
    _insert(s, OrderLine.__table__, lines)
    _insert(s, Shipment.__table__, shipments)
    _insert(s, OrderHistory.__table__, sorted(history, key=lambda r: (r["at"], r["order_id"])))
    _insert(s, Return.__table__, returns)
    _insert(s, Reservation.__table__, h.reservations)
    _insert(s, ReservationLine.__table__, h.reservation_lines)
    _insert(s, Transfer.__table__, h.transfers)
    _insert(s, GiftCard.__table__, gift_cards)
    _insert(s, GiftCardMovement.__table__, sorted(movements, key=lambda m: (m["created_at"], m["id"])))
    _insert(s, Payment.__table__, payments)
    _insert(s, PaymentOperation.__table__, operations)
    _insert(s, Event.__table__, rows)
    if updates:
        table = Event.__table__
        s.execute(update(table).where(table.c.id == bindparam("b_id")).values(properties=bindparam("b_props")),
                  updates)
    for o in h.orders:  # as transition() does: the job that releases the order if nobody collects it
        if o.status == "ready_for_pickup" and o.deadline is not None:
            jobs.enqueue(s, RELEASE_JOB, {"id": o.id}, at=o.deadline)


def _payment(t: Tender, o: Plan) -> dict[str, Any]:
    refunded = int(t.refunded * 100)
    amount = int(t.amount * 100)
    last = max([t.at] + [r["at"] + timedelta(minutes=1) for r in t.refunds])
    return {"id": t.id, "ref": t.ref, "order_id": o.id, "position": t.position, "method": t.method,
            "provider": t.provider, "instrument": t.instrument, "brand": t.brand, "last4": t.last4, "currency": "EUR",
            "amount_minor": amount, "authorised_minor": amount, "captured_minor": amount, "refunded_minor": refunded,
            "refund_pending_minor": 0,
            "status": "captured" if not refunded else ("refunded" if refunded >= amount else "partly_refunded"),
            "provider_ref": t.provider_ref, "decline_code": None, "decline_reason": None, "next_action_url": None,
            "void_requested_at": None, "created_at": t.at, "updated_at": last}


def _op(t: Tender, clock: DemoClock, at: datetime, kind: str, phase: str, status: str, *,
        op_id: str | None = None, **fields: Any) -> dict[str, Any]:
    clock.now = at
    row = {"id": op_id or new_ids(1)[0], "payment_id": t.id, "kind": kind, "phase": phase, "status": status,
           "amount_minor": None, "idempotency_key": None, "request_id": None, "reference": None, "provider_ref": None,
           "code": None, "message": None, "event_id": None, "details": {}, "created_at": at}
    row.update(fields)
    return row


def _operations(t: Tender, clock: DemoClock) -> list[dict[str, Any]]:
    """The payment's log as the service writes it: authorise and capture (request, result), each refund."""
    minor = int(t.amount * 100)
    auth = f"{t.id}:authorise"
    ops = [_op(t, clock, t.at, "authorise", "request", "requested", amount_minor=minor, idempotency_key=auth),
           _op(t, clock, t.at, "authorise", "result", "captured" if t.method == "cash" else "authorised",
               amount_minor=minor, idempotency_key=auth, provider_ref=t.provider_ref)]
    if t.method != "cash":  # cash is settled when taken: the capture job finds nothing to do
        captured = t.at + timedelta(seconds=2)
        ops += [_op(t, clock, captured, "capture", "request", "requested", amount_minor=minor,
                    idempotency_key=f"{t.id}:capture"),
                _op(t, clock, captured, "capture", "result", "captured", amount_minor=minor,
                    idempotency_key=f"{t.id}:capture")]
    for r in t.refunds:
        part = int(r["amount"] * 100)
        key = f"{t.id}:refund:{r['op']}"
        ops += [_op(t, clock, r["at"], "refund", "request", "requested", op_id=r["op"], amount_minor=part,
                    idempotency_key=key, reference=r["reference"], details={"reason": r["reason"]}),
                _op(t, clock, r["at"] + timedelta(minutes=1), "refund", "result", "succeeded", amount_minor=part,
                    idempotency_key=key, request_id=r["op"], provider_ref=r["refund_ref"] or None)]
    return ops


def _gift_card_moves(t: Tender, clock: DemoClock) -> list[dict[str, Any]]:
    """A gift card tender in the gift card book: its hold (the payment's provider reference), its capture, and the
    refunds that gave money back to the card."""
    assert t.instrument is not None
    minor = int(t.amount * 100)
    clock.now = t.at
    hold_id = new_ids(1)[0]
    t.provider_ref = hold_id
    moves = [{"id": hold_id, "code": t.instrument, "kind": "hold", "amount_minor": minor, "balance_change": -minor,
              "hold_id": hold_id, "payment_id": t.id, "idempotency_key": f"{t.id}:authorise", "created_at": t.at}]
    clock.now = t.at + timedelta(seconds=2)
    moves.append({"id": new_ids(1)[0], "code": t.instrument, "kind": "capture", "amount_minor": minor,
                  "balance_change": 0, "hold_id": hold_id, "payment_id": t.id, "idempotency_key": f"{t.id}:capture",
                  "created_at": t.at + timedelta(seconds=2)})
    for r in t.refunds:
        part = int(r["amount"] * 100)
        at = r["at"] + timedelta(minutes=1)
        clock.now = at
        mid = new_ids(1)[0]
        r["refund_ref"] = mid
        moves.append({"id": mid, "code": t.instrument, "kind": "refund", "amount_minor": part, "balance_change": part,
                      "hold_id": hold_id, "payment_id": t.id, "idempotency_key": f"{t.id}:refund:{r['op']}",
                      "created_at": at})
    return moves


def tell_the_test_provider(db: Database, h: History) -> None:
    """The card charges, captured and partly refunded, in the test provider's own book (it keeps its state apart
    from ours, as a real processor does): a refund of a demo order later is answered like any other. Written after
    our transaction, as a provider is called."""
    from omnijourney.payments import providers
    from omnijourney.payments.simulator import PastCharge, TestProvider

    conf = providers.settings()
    charges = [PastCharge(t.provider_ref, t.instrument or "", int(t.amount * 100), "EUR", int(t.at.timestamp()),
                          {"payment_id": t.id, "ref": t.ref},
                          tuple((r["refund_ref"], int(r["amount"] * 100), int(r["at"].timestamp())) for r in t.refunds))
               for o in h.orders for t in o.tenders if t.method == "card" and t.provider == "test"]
    if not conf.payments.test_provider or not charges:
        return
    path = providers.simulator_path(conf, db)
    if path == ":memory:":
        return
    provider = TestProvider(path, webhook_secret=conf.payments.test_webhook_secret)
    try:
        provider.import_charges(charges)
    finally:
        provider.close()  # the demo moves the file once built
