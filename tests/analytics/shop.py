"""Small journeys whose right answers are known by construction, sent through the tracking service (so identity
resolution makes the profiles and merges, as it would in production)."""

from __future__ import annotations

from typing import Any

from omnijourney.db import Database
from tests.factories import msg, send, source

Touch = tuple[float, str, str, dict[str, Any]]  # minutes after T0, channel, event, properties
HOUR, DAY = 60, 24 * 60


class Shop:
    """A source per channel; ``person(...)`` sends one person's touches (as one user id, so one profile)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.sources = {c: source(db, c, store="S1" if c == "store" else None)
                        for c in ("web", "app", "store", "call_center", "email")}

    def person(self, user: str, touches: list[Touch]) -> None:
        send(self.db, *[msg(self.sources[ch], user_id=user, anonymous_id=f"anon-{user}", event=ev, minutes=m,
                            properties=props) for m, ch, ev, props in touches])

    def anonymous(self, anonymous_id: str, touches: list[Touch]) -> None:
        send(self.db, *[msg(self.sources[ch], anonymous_id=anonymous_id, event=ev, minutes=m, properties=props)
                        for m, ch, ev, props in touches])

    def link(self, user: str, channel: str, anonymous_id: str, minutes: float) -> None:
        """An identify call that ties ``anonymous_id`` to ``user`` (merging their profiles)."""
        send(self.db, msg(self.sources[channel], "identify", user_id=user, anonymous_id=anonymous_id,
                          minutes=minutes))


def order(order_id: str, total: float) -> dict[str, Any]:
    return {"order_id": order_id, "total": f"{total:.2f}", "revenue": f"{total:.2f}", "currency": "EUR"}


def funnel_shop(db: Database) -> Shop:
    """Five people view a product on the web; four add it (one of them in the app); three complete an order within
    a day of the view (two on the web, one in the store); the fourth completes after two days (outside a 1-day
    window). A sixth person, anonymous on the web and known in the store, is merged into one profile: she views,
    adds and buys in the store within an hour, so she converts once, under the survivor."""
    shop = Shop(db)
    v, a, o = "Product Viewed", "Product Added", "Order Completed"
    shop.person("u1", [(0, "web", v, {"sku": "TEE"}), (5, "web", a, {"sku": "TEE"}), (10, "web", o, order("o1", 20))])
    shop.person("u2", [(0, "web", v, {"sku": "TEE"}), (30, "app", a, {"sku": "TEE"}),
                       (60, "web", o, order("o2", 40))])
    shop.person("u3", [(0, "web", v, {"sku": "CAP"}), (HOUR, "web", a, {"sku": "CAP"}),
                       (3 * HOUR, "store", o, order("o3", 60))])
    shop.person("u4", [(0, "web", v, {"sku": "TEE"}), (10, "web", a, {"sku": "TEE"}),
                       (2 * DAY, "web", o, order("o4", 80))])
    shop.person("u5", [(0, "web", v, {"sku": "TEE"})])
    # two profiles (web visitor, store shopper) that an identify merges
    shop.anonymous("w6", [(100, "web", v, {"sku": "BAG"})])
    shop.anonymous("p6", [(120, "store", a, {"sku": "BAG"}), (130, "store", o, order("o6", 100))])
    shop.link("u6", "web", "w6", 140)
    shop.link("u6", "store", "p6", 141)
    return shop


def report_shop(db: Database, *, people: int = 24, seed: int = 7) -> Shop:
    """The funnel shop, plus ``people`` customers over about three months from 1 March 2026 (the same for a given
    ``seed``): visits on the web, in the app or from an email, carts, orders on the web, in the app or in the store
    (some people buy again weeks later), a few returns and NPS answers. Enough for every chart of the report:
    several monthly cohorts, moves between channels, repeat purchases to fit the CLV models on."""
    import random

    shop = funnel_shop(db)
    rnd = random.Random(seed)
    skus = ("TEE", "CAP", "BAG", "JEANS")
    for i in range(people):
        user, t = f"r{i}", rnd.uniform(0, 25) * DAY
        touches: list[Touch] = []
        for visit in range(rnd.randint(1, 4)):
            ch, sku = rnd.choice(("web", "web", "app", "email")), rnd.choice(skus)
            touches.append((t, ch, "Product Viewed", {"sku": sku}))
            if rnd.random() < 0.7:
                touches.append((t + 5, ch, "Product Added", {"sku": sku}))
                if rnd.random() < 0.75:
                    where = rnd.choice((ch, ch, "store"))
                    oid = f"{user}-{visit}"
                    touches.append((t + rnd.uniform(10, 3 * HOUR), where, "Order Completed",
                                    order(oid, rnd.choice((20, 35, 50, 80, 120)))))
                    if rnd.random() < 0.15:
                        touches.append((t + 3 * DAY, "store", "Order Returned", {"order_id": oid, "return_id": oid}))
            t += rnd.uniform(6, 30) * DAY
        if rnd.random() < 0.4:
            touches.append((t, "email", "Survey Answered", {"survey": "nps", "score": rnd.randint(0, 10)}))
        shop.person(user, touches)
    return shop
