"""Carts of the demo retailer that crossed channels, made through the carts services like any device would.

Stories, each for one person in the last two weeks before ``ctx.now``: started in the app and continued on the
web; started in the app or on the web and pulled into a store's POS with a handoff code; filled anonymously on
the web and merged into the customer's cart at login in the app; changed by the call center on the phone;
with the WELCOME10 voucher. Every change lands on the person's timeline with its channel (Product Added,
Product Removed, Cart Viewed, Cart Merged, Coupon Applied). A few customers are tagged VIP first, so their
carts show the VIP price list. Deterministic for a seed: owners are picked from identities sorted by value,
choices come from ``random.Random(ctx.seed + 4)``, the services read the demo clock, and cart ids come from the
step's seeded ids (``build.reproducible``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from omnijourney.carts import handoff, service, vouchers
from omnijourney.config import IdentitySettings
from omnijourney.customers.models import Customer, Identity
from omnijourney.demo.catalog import CatalogFacts, DemoClock, demo_clock
from omnijourney.tracking.messages import Message
from omnijourney.tracking.service import ingest

if TYPE_CHECKING:
    from omnijourney.demo.build import Advance, DemoContext

STORIES = ("app_to_web", "to_store", "anonymous_login", "call_center", "voucher")
WEIGHTS = (35, 25, 20, 10, 10)
BATCH = 25  # carts per transaction


def carts_size(ctx: DemoContext) -> int:
    return max(10, ctx.people // 15)


@contextmanager
def _seeded_handoff_codes(rng: random.Random) -> Iterator[None]:
    # handoff codes come from ``secrets`` (they must be unguessable in production); the demo wants them per seed
    original = handoff.new_code
    handoff.new_code = lambda: "".join(rng.choice(handoff.ALPHABET) for _ in range(handoff.CODE_LENGTH))
    try:
        yield
    finally:
        handoff.new_code = original


def _people(session: Session) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(user id, customer) of known customers and (anonymous id, customer) of web/app visitors who logged in,
    sorted by identifier value: the plan then follows the journeys, whatever ids the profiles got."""
    rows = session.execute(
        select(Identity.type, Identity.value, Identity.customer_id)
        .join(Customer, Customer.id == Identity.customer_id)
        .where(Identity.type.in_(("user_id", "anonymous_id")), Customer.merged_into.is_(None))
        .order_by(Identity.type, Identity.value)).all()
    known = [(value, cid) for kind, value, cid in rows if kind == "user_id"]
    with_login = {cid for _, cid in known}
    visitors = [(value, cid) for kind, value, cid in rows
                if kind == "anonymous_id" and value.startswith("anon-") and cid in with_login]
    return known, visitors


def _tag_vips(ctx: DemoContext, known: list[tuple[str, str]], rng: random.Random) -> set[str]:
    """Some known customers are VIPs: the web shop says so in an identify call (``traits.segments``)."""
    assert ctx.channels is not None
    vips = sorted(rng.sample(known, len(known) // 16))
    at = ctx.now - timedelta(days=20)
    messages = [Message(message_id=f"vip-{uid}", type="identify", channel="web", timestamp=at, received_at=at,
                        user_id=uid, traits={"segments": ["vip"], "loyalty_tier": "gold"},
                        source_id=ctx.channels.web[0], source_name=ctx.channels.web[1]) for uid, _ in vips]
    if messages:
        with ctx.db.transaction() as s:
            ingest(s, messages=messages, settings=IdentitySettings())
    return {cid for _, cid in vips}


def build_carts(ctx: DemoContext, advance: Advance) -> None:
    """Carts that crossed channels, for people that exist (known customers and anonymous visitors)."""
    facts: CatalogFacts = ctx.extra["catalog"]
    rng = random.Random(ctx.seed + 4)
    with ctx.db.transaction(write=False) as s:
        known, visitors = _people(s)
    _tag_vips(ctx, known, rng)
    wanted = carts_size(ctx)
    plan: list[tuple[str, str | None, str]] = []  # story, anonymous id, customer
    used: set[str] = set()
    pool_known, pool_visitors = known[:], visitors[:]
    rng.shuffle(pool_known)
    rng.shuffle(pool_visitors)
    while len(plan) < wanted:
        story = rng.choices(STORIES, WEIGHTS)[0]
        if story == "anonymous_login" and pool_visitors:
            anonymous_id, cid = pool_visitors.pop()
        elif pool_known:
            anonymous_id, (_, cid) = None, pool_known.pop()
            story = "app_to_web" if story == "anonymous_login" else story
        else:
            break
        if cid not in used:  # one active cart per person: a second story would only extend the first
            used.add(cid)
            plan.append((story, anonymous_id, cid))
    online = facts.skus_by_reach["everywhere"] + facts.skus_by_reach["online"]
    in_store = facts.skus_by_reach["everywhere"] + facts.skus_by_reach["stores"]
    shop = _Shop(rng, online, in_store, facts)
    with demo_clock(ctx.now) as clock, _seeded_handoff_codes(random.Random(ctx.seed + 5)):
        for i in range(0, len(plan), BATCH):
            with ctx.db.transaction() as s:
                for story, anonymous_id, cid in plan[i:i + BATCH]:
                    # a story lasts up to three days and must be over by ctx.now
                    clock.now = ctx.now - timedelta(minutes=rng.randrange(4 * 24 * 60, 16 * 24 * 60))
                    shop.run(s, clock, story, cid, anonymous_id)
            advance(min(BATCH, len(plan) - i))
    advance(max(0, wanted - len(plan)))  # fewer people than carts wanted: the bar still ends


class _Shop:
    """Plays one story per cart through the services; ``clock`` moves on between the steps of a story."""

    def __init__(self, rng: random.Random, online: list[str], in_store: list[str], facts: CatalogFacts) -> None:
        self.rng, self.online, self.in_store, self.facts = rng, online, in_store, facts
        self.stores = facts.stores
        self.everywhere = facts.skus_by_reach["everywhere"]
        sold_everywhere = set(self.everywhere)
        self.socks = [sku for sku in facts.skus_by_category.get("socks", []) if sku in sold_everywhere]

    def _later(self, clock: DemoClock, lo: int, hi: int) -> None:
        clock.now += timedelta(minutes=self.rng.randrange(lo, hi))

    def _add(self, s: Session, cart_id: str, channel: str, skus: list[str], n: int) -> None:
        for sku in self.rng.sample(skus, n):
            service.add_line(s, cart_id=cart_id, sku=sku, quantity=self.rng.choice((1, 1, 1, 2)),
                             channel_code=channel)

    def _view(self, s: Session, cart_id: str, channel: str) -> None:
        view = service.cart_view(s, cart_id=cart_id, channel_code=channel)
        service.record_view(s, view=view, channel_code=channel)

    def _remove_one(self, s: Session, cart_id: str, channel: str) -> None:
        view = service.cart_view(s, cart_id=cart_id, channel_code=channel)
        if len(view.lines) > 1:
            service.remove_line(s, cart_id=cart_id, sku=self.rng.choice(view.lines).sku, channel_code=channel)

    def run(self, s: Session, clock: DemoClock, story: str, customer_id: str, anonymous_id: str | None) -> None:
        plays: dict[str, Callable[[Session, DemoClock, str, str | None], None]] = {
            "app_to_web": self._app_to_web, "to_store": self._to_store, "anonymous_login": self._anonymous_login,
            "call_center": self._call_center, "voucher": self._voucher}
        plays[story](s, clock, customer_id, anonymous_id)

    def _app_to_web(self, s: Session, clock: DemoClock, customer_id: str, _: str | None) -> None:
        cart, _created = service.open_cart(s, channel_code="app", customer_id=customer_id)
        self._add(s, cart.id, "app", self.online, self.rng.randint(1, 3))
        self._later(clock, 60, 48 * 60)  # that evening or the next day, on the laptop
        self._view(s, cart.id, "web")
        self._add(s, cart.id, "web", self.online, self.rng.randint(0, 2))
        if self.rng.random() < 0.4:
            self._remove_one(s, cart.id, "web")

    def _to_store(self, s: Session, clock: DemoClock, customer_id: str, _: str | None) -> None:
        start = self.rng.choice(("app", "app", "web"))
        cart, _created = service.open_cart(s, channel_code=start, customer_id=customer_id)
        self._add(s, cart.id, start, self.everywhere, self.rng.randint(1, 3))
        self._later(clock, 60, 72 * 60)
        # at the counter: the phone shows the handoff QR code, the associate's POS claims it
        code = handoff.create_handoff(s, cart_id=cart.id, channel_code=start)
        self._later(clock, 1, 5)
        store = self.rng.choice(self.stores)
        handoff.claim(s, code=code.code, channel_code=store)
        if self.socks and self.rng.random() < 0.5:  # the socks offer by the till: buy 3, get 1 free
            service.add_line(s, cart_id=cart.id, sku=self.rng.choice(self.socks), quantity=4, channel_code=store)
        else:
            self._add(s, cart.id, store, self.in_store, 1)

    def _anonymous_login(self, s: Session, clock: DemoClock, customer_id: str, anonymous_id: str | None) -> None:
        assert anonymous_id is not None
        if self.rng.random() < 0.5:  # some have a cart from an earlier app session: the two merge at login
            earlier, _created = service.open_cart(s, channel_code="app", customer_id=customer_id)
            self._add(s, earlier.id, "app", self.online, 1)
            self._later(clock, 60, 24 * 60)
        cart, _created = service.open_cart(s, channel_code="web", anonymous_id=anonymous_id)
        self._add(s, cart.id, "web", self.online, self.rng.randint(1, 2))
        self._later(clock, 10, 24 * 60)
        # logging in on the app: the anonymous cart becomes (or merges into) the customer's cart
        merged = service.assign(s, cart_id=cart.id, customer_id=customer_id, channel_code="app")
        self._add(s, merged.cart.id, "app", self.online, 1)
        self._later(clock, 30, 24 * 60)
        self._view(s, merged.cart.id, "web")

    def _call_center(self, s: Session, clock: DemoClock, customer_id: str, _: str | None) -> None:
        cart, _created = service.open_cart(s, channel_code="web", customer_id=customer_id)
        self._add(s, cart.id, "web", self.online, self.rng.randint(2, 3))
        self._later(clock, 30, 24 * 60)
        # a sizing question on the phone: the agent sees the same cart and changes it
        self._view(s, cart.id, "call-center")
        self._remove_one(s, cart.id, "call-center")
        self._add(s, cart.id, "call-center", self.online, 1)

    def _voucher(self, s: Session, clock: DemoClock, customer_id: str, _: str | None) -> None:
        cart, _created = service.open_cart(s, channel_code="web", customer_id=customer_id)
        self._add(s, cart.id, "web", self.online, self.rng.randint(1, 3))
        vouchers.add_voucher(s, cart_id=cart.id, code="WELCOME10", channel_code="web")
        self._later(clock, 30, 24 * 60)
        self._view(s, cart.id, "app")
