"""Building the demo retailer, step by step, each step a function of (session-maker, context).

Later capabilities add their own step (catalog, carts, orders, ...) to ``STEPS`` in the order they
need; each gets the shared :class:`DemoContext` so it can use what earlier steps made.

Deterministic for a seed, ids included: every step runs under :func:`reproducible`, so the same seed gives the same
customer, product, cart and source ids on every build and machine (a tutorial can link to them). Only secrets
stay random: the admin API key and the write keys.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from omnijourney.auth.service import create_key
from omnijourney.config import IdentitySettings
from omnijourney.core.ids import seeded_ids
from omnijourney.core.time import clock, utcnow
from omnijourney.db import Database
from omnijourney.demo.carts import build_carts, carts_size
from omnijourney.demo.catalog import build_catalog, catalog_size, demo_clock
from omnijourney.demo.commerce import build_commerce, commerce_size
from omnijourney.demo.orders import QuoteTerms, quote_terms
from omnijourney.demo.people import Channels, fictional_phone, journeys
from omnijourney.pricing.models import PriceList, Promotion
from omnijourney.pricing.quoting import Quoter
from omnijourney.tracking.messages import Message
from omnijourney.tracking.service import ingest
from omnijourney.tracking.sources import create_source

STORES = [("S01", "Berlin Mitte"), ("S02", "Hamburg Jungfernstieg"), ("S03", "München Marienplatz"),
          ("S04", "Köln Schildergasse"), ("S05", "Frankfurt Zeil")]


@dataclass
class DemoContext:
    """What the steps share: the seed, the moment the data ends, and what earlier steps made."""

    db: Database
    seed: int
    people: int
    now: datetime
    rng: random.Random
    write_keys: dict[str, str] = field(default_factory=dict)
    channels: Channels | None = None
    admin_key: str = ""
    skus: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


Advance = Callable[[int], None]
Run = Callable[[DemoContext, Advance], None]
Step = tuple[str, Callable[[DemoContext], int], Run]


def reproducible(name: str, run: Run) -> Run:
    """``run`` with ids drawn from the seed and the step's name, and the demo's clock instead of the wall clock.

    One id stream per step, keyed by its name: adding a step, or one step making more rows, does not shift the
    ids of the others (renaming a step does change its own). The clock is ``ctx.now`` unless the step sets its
    own (``demo_clock``), so no id or timestamp of the demo reads the wall clock.
    """
    def step(ctx: DemoContext, advance: Advance) -> None:
        # ids are stamped as if the demo ended on the fixed date: a demo built to be served (built_now) has the
        # same ids as any other build of its seed, only its times are later by whole days
        shift = ctx.now - default_now()
        with clock(lambda: ctx.now), seeded_ids(f"omni-demo/{ctx.seed}/{name}", now=lambda: utcnow() - shift):
            run(ctx, advance)

    return step


def _sources_size(ctx: DemoContext) -> int:
    return 1


def _sources(ctx: DemoContext, advance: Advance) -> None:
    # set up with the catalog, well before the journeys begin (their events name these sources)
    with demo_clock(ctx.now - timedelta(days=120)), ctx.db.transaction() as s:
        def mk(name: str, channel: str, store: str | None = None) -> tuple[str, str]:
            # the write key is a secret, so it stays random on every build; the source's id is the seed's
            src = create_source(s, name=name, channel=channel, store_code=store)
            ctx.write_keys[name] = src.write_key
            return src.id, src.name

        stores = tuple((*mk(f"{name} POS", "store", code), code) for code, name in STORES)
        ctx.channels = Channels(web=mk("Web shop", "web"), app=mk("Mobile app", "app"),
                                call_center=mk("Call center", "call_center"),
                                whatsapp=mk("WhatsApp", "whatsapp"), stores=stores)
        for name, channel in (("Email", "email"), ("Web chat", "chat"), ("Messenger", "messenger"),
                              ("SMS", "sms"), ("Marketplace", "marketplace")):
            mk(name, channel)
        _, ctx.admin_key = create_key(s, name="demo admin", scopes=["admin"])  # a secret: random on every build
    advance(1)


def _events_size(ctx: DemoContext) -> int:
    return ctx.people


def _events(ctx: DemoContext, advance: Advance) -> None:
    assert ctx.channels is not None
    start = ctx.now - timedelta(days=90)
    messages = sorted(journeys(people=ctx.people, seed=ctx.seed, channels=ctx.channels, start=start,
                               skus=ctx.skus or None, events_per_person=6.0, phones=fictional_phone),
                      key=lambda m: m.timestamp)
    messages = [m for m in messages if m.timestamp <= ctx.now]
    if ctx.skus:  # the catalog step ran: orders cost what the channel asked that day
        price_orders(ctx, messages)
    settings = IdentitySettings()
    step = 2000
    done = 0
    for i in range(0, len(messages), step):
        with clock(lambda: ctx.now), ctx.db.transaction() as s:  # profiles stamped at the demo's "now"
            ingest(s, messages=messages[i:i + step], settings=settings)
        new_done = min(ctx.people, int(ctx.people * (i + step) / max(1, len(messages))))
        advance(new_done - done)
        done = new_done


def order_channel(m: Message) -> str:
    """The catalog channel an order was placed in: the store's code at a till, else web, app, call-center (the
    catalog's code of the call center) or marketplace."""
    if m.channel == "store" and m.store_code:
        return m.store_code
    return "call-center" if m.channel == "call_center" else m.channel


def price_orders(ctx: DemoContext, messages: list[Message]) -> None:
    """Give every ``Order Completed`` the total its channel quoted for its basket at that moment (a
    ``pricing.quoting.Quoter``: the engine and inputs of ``quote()``, every channel's pricing, read once per channel;
    stores charge no shipping), with each product's price, tax,
    discount and shipping, as Segment's ecommerce spec names them. Baskets are quoted without the customer:
    VIP prices begin later in the demo's story, when carts tag some customers. The whole quote of each order (its
    lines' discounts and totals, the promotions applied) is kept in ``ctx.extra["order_quotes"]`` by message id, for
    the step that turns these events into orders."""
    orders = [m for m in messages if m.event == "Order Completed"]
    cache: dict[tuple[object, ...], dict[str, object]] = {}
    terms: dict[tuple[object, ...], QuoteTerms] = {}
    kept: dict[str, QuoteTerms] = ctx.extra.setdefault("order_quotes", {})
    quoters: dict[str, Quoter] = {}  # quote() for many baskets: what a channel's prices need is read once
    with ctx.db.transaction(write=False) as s:
        # prices and promotions change only at these moments: a basket quoted once per stretch between them
        bounds = sorted({t for row in s.execute(select(PriceList.valid_from, PriceList.valid_to)).all()
                         for t in row if t is not None} |
                        {t for row in s.execute(select(Promotion.valid_from, Promotion.valid_to)).all()
                         for t in row if t is not None})
        for m in orders:
            channel = order_channel(m)
            lines = tuple((p["sku"], int(p["quantity"])) for p in m.properties["products"])
            stretch = sum(1 for t in bounds if _aware(t) <= m.timestamp)
            key = (channel, lines, stretch)
            if key not in cache:
                if channel not in quoters:
                    quoters[channel] = Quoter(s, channel_code=channel)
                    quoters[channel].preload(p["sku"] for o in orders if order_channel(o) == channel
                                             for p in o.properties["products"])
                q = quoters[channel].quote(lines, at=m.timestamp)
                cache[key] = {
                    "total": float(q.total), "revenue": float(q.items_total), "tax": float(q.tax_total),
                    "discount": float(q.discount_total), "shipping": float(q.shipping), "currency": q.currency,
                    "products": [{"sku": line.sku, "quantity": line.quantity, "price": float(line.unit_price)}
                                 for line in q.lines]}
                terms[key] = quote_terms(q)
            m.properties.update(cache[key])
            kept[m.message_id] = terms[key]


def _background(ctx: DemoContext, advance: Advance) -> None:
    """Run the work the story left for later (carts following merged profiles and logins), so the demo is
    served settled."""
    from omnijourney.jobs.worker import Worker

    Worker(ctx.db, name="demo").drain(timeout_s=600)
    advance(1)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)  # SQLite gives naive UTC


# name, size (units of progress), run. Later capabilities insert their steps here, through reproducible().
STEPS: list[Step] = [(name, size, reproducible(name, run)) for name, size, run in (
    ("sources and keys", _sources_size, _sources),
    ("catalog and prices", catalog_size, build_catalog),
    ("customer journeys", _events_size, _events),
    ("carts across channels", carts_size, build_carts),
    ("stock, orders and returns", commerce_size, build_commerce),
    ("background work", lambda _ctx: 1, _background),
)]


def default_now() -> datetime:
    """A fixed "now" for tests: the same history for the same seed on any day."""
    return datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def built_now() -> datetime:
    """The "now" of a demo built to be served (``omni demo``): the fixed date's time of day on the latest day it has
    passed, so that its history ends today and what waits for a deadline (uncollected pickups, open checkouts)
    waits in the days after, instead of every deadline firing at once the moment it is served. Whole days later
    than the fixed date: shop hours fall the same, and the ids are the same (:func:`reproducible`)."""
    fixed = default_now()
    return fixed + (datetime.now(UTC) - fixed) // timedelta(days=1) * timedelta(days=1)
