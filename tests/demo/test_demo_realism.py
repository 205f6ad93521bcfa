"""The demo retailer tells a consistent story: orders cost what the channel quoted, calls land on the caller's
profile, every phone number is one reserved for fiction, and customers come back and leave as buy-till-you-die
models expect."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from sqlalchemy import select

from omnijourney.analytics import clv
from omnijourney.customers.models import Customer, Identity
from omnijourney.db import Database
from omnijourney.demo.build import STEPS, DemoContext, default_now, order_channel
from omnijourney.demo.people import FICTIONAL_PHONES, Channels, fictional_phone, journeys
from omnijourney.migrate import upgrade
from omnijourney.pricing.quoting import quote
from omnijourney.tracking.messages import Message
from omnijourney.tracking.models import Event

# Bundesnetzagentur, Mitteilung Nr. 148/2021: (0)30 23125, (0)69 90009, (0)40 66969, (0)221 4710, (0)89 99998 + 000-999
RESERVED = re.compile(r"\+49(3023125|6990009|4066969|2214710|8999998)\d{3}")
PHONE_LIKE = re.compile(r"\+\d{7,15}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('realism') / 'demo.db'}")
    upgrade(db.engine)
    ctx = DemoContext(db=db, seed=5, people=200, now=default_now(), rng=random.Random(5))
    for _, _, run in STEPS:
        run(ctx, lambda n: None)
    yield db
    db.dispose()


def test_order_totals_are_what_the_channel_quotes_for_the_basket(demo: Database) -> None:
    with demo.transaction(write=False) as s:
        orders = list(s.scalars(select(Event).where(Event.event == "Order Completed")))
        assert {o.channel for o in orders} >= {"store", "web"}
        assert any(len(o.properties["products"]) > 1 for o in orders)  # baskets, not only single items
        for o in orders:
            message = Message(message_id=o.message_id, type="track", channel=o.channel, timestamp=o.timestamp,
                              received_at=o.timestamp, store_code=o.store_code)
            lines = [(p["sku"], p["quantity"]) for p in o.properties["products"]]
            q = quote(s, channel_code=order_channel(message), lines=lines, at=o.timestamp,
                      with_shipping=o.channel != "store")
            assert Decimal(str(o.properties["total"])) == q.total, o.message_id
            assert [Decimal(str(p["price"])) for p in o.properties["products"]] == [li.unit_price for li in q.lines]
            if o.channel == "store":
                assert o.properties["shipping"] == 0  # carried out of the shop


def test_call_center_events_land_on_the_callers_profile(demo: Database) -> None:
    with demo.transaction(write=False) as s:
        owner = dict(s.execute(select(Identity.value, Identity.customer_id).where(Identity.type == "email")).all())
        calls = list(s.scalars(select(Event).where(Event.channel == "call_center", Event.message_id.like("m-%"))))
        assert len(calls) > 10
        for call in calls:
            person = call.message_id.split("-")[1]
            email = next(e for e in owner if e.endswith(f".{person}@example.com"))
            assert call.customer_id == owner[email], call.message_id
        # the caller's profile is the one their other channels use: some of it comes from web, app or store
        callers = {c.customer_id for c in calls}
        elsewhere = set(s.scalars(select(Event.customer_id).where(Event.customer_id.in_(callers),
                                                                   Event.channel != "call_center")))
        assert len(elsewhere) > len(callers) / 2


def test_every_phone_number_is_reserved_for_fiction(demo: Database) -> None:
    with demo.transaction(write=False) as s:
        phones = list(s.scalars(select(Identity.value).where(Identity.type.in_(("phone", "whatsapp")))))
        assert len(phones) > 50
        texts = [json.dumps([t, c, p]) for t, c, p in s.execute(select(Event.traits, Event.context,
                                                                        Event.properties))]
        texts += [json.dumps(t) for t in s.scalars(select(Customer.traits))]
    found = set(phones) | {m for text in texts for m in PHONE_LIKE.findall(text)}
    assert found and all(RESERVED.fullmatch(p) for p in found), sorted(p for p in found if not RESERVED.match(p))


def test_the_reserved_numbers_run_out_rather_than_leave_the_range() -> None:
    numbers = [fictional_phone(k) for k in range(FICTIONAL_PHONES)]
    assert len(set(numbers)) == FICTIONAL_PHONES
    assert all(n and RESERVED.fullmatch(n) for n in numbers)
    assert fictional_phone(FICTIONAL_PHONES) is None


@pytest.mark.parametrize("seed", [42, 7])
def test_repeat_purchases_follow_buy_till_you_die(seed: int) -> None:
    """People buy again at paces of their own and some stop for good, so the models of customer lifetime value fit
    the demo: BG/NBD fitted on the journeys' orders lands inside its range (purchases bunched in one burst per person
    drove a and b to ~1e7, a homogeneous dropout), and a repeat buyer's purchases spread over weeks."""
    start = datetime(2026, 5, 1, tzinfo=UTC)
    end = start + timedelta(days=90)
    channels = Channels(web=("web", "Web shop"), app=("app", "Mobile app"), call_center=("cc", "Call center"),
                        whatsapp=("wa", "WhatsApp"), stores=(("s1", "Berlin Mitte POS", "S01"),))
    orders = [m for m in journeys(people=3000, seed=seed, channels=channels, start=start, events_per_person=6.0)
              if m.event == "Order Completed" and m.timestamp <= end]
    person = np.array([int(m.message_id.split("-")[1]) for m in orders])  # m-<person>-<n>
    days = np.array([m.timestamp.date() for m in orders], dtype="datetime64[D]")
    s = clv.summarise(person, days, np.ones(len(orders)), days.max())
    with np.errstate(all="ignore"):
        bg = clv.fit_bgnbd(s.frequency, s.recency, s.T).params()
    assert all(1e-3 < bg[k] < 1e3 for k in ("r", "alpha", "a", "b")), bg
    repeat = s.frequency > 0
    assert 0.3 < repeat.mean() < 0.8  # some buy once and are gone, many come back
    assert np.median(s.recency[repeat]) > 2  # weeks from a repeat buyer's first purchase to their last
