"""Cross-channel journeys of synthetic people, as the Segment calls each channel would send.

Deterministic for a seed. People browse anonymously on the web or in the app, some log in or give an
email, some shop in a store and scan a loyalty card, call the call center or write on WhatsApp; so
identity resolution has real work: anonymous visitors that become known, and the same person
arriving through several channels that must end up as one profile.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from omnijourney.tracking.messages import Message

FIRST = ["Ann", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kemi", "Liam",
         "Mia", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wen", "Yara", "Zoe"]
LAST = ["Smith", "Garcia", "Müller", "Rossi", "Dubois", "Kowalski", "Silva", "Okafor", "Tanaka", "Novak",
        "Jensen", "Haddad", "Brown", "Lopez", "Nguyen", "Ivanova", "Costa", "Schmidt", "Khan", "Moreau"]
SEARCHES = ["linen shirt", "white sneakers", "rain jacket", "wool scarf", "denim", "summer dress", "chinos"]


@dataclass(frozen=True, slots=True)
class Channels:
    """Source ids (and names) the generated messages claim to come from."""

    web: tuple[str, str]
    app: tuple[str, str]
    call_center: tuple[str, str]
    whatsapp: tuple[str, str]
    stores: tuple[tuple[str, str, str], ...]  # (source id, name, store code)


# Telephone numbers reserved for fiction in Germany, where the demo retailer is: the Bundesnetzagentur keeps
# 1,000 numbers in each of five local networks unassigned for good ("Rufnummern für Medienproduktionen", "Drama
# Numbers"; Mitteilung Nr. 148/2021, Amtsblatt 7/2021, p. 489): Berlin (0)30 23125 000-999, Frankfurt am Main
# (0)69 90009 000-999, Hamburg (0)40 66969 000-999, Köln (0)221 4710 000-999, München (0)89 99998 000-999.
FICTIONAL_PHONE_BLOCKS = ("+493023125", "+496990009", "+494066969", "+492214710", "+498999998")
FICTIONAL_PHONES = 1000 * len(FICTIONAL_PHONE_BLOCKS)

# When people come back and when they leave for good (buy till you die, see _person): a person's visits a day
# vary across people as a gamma (shape, mean); their chance of leaving after a purchase as a beta (a, b); a visit
# that bought nothing is the last with LEAVE_WITHOUT_PURCHASE. A visit makes about ``events_per_person`` /
# VISITS_PER_PERSON messages, so that a person makes about ``events_per_person`` in all.
VISIT_RATE_SHAPE, VISIT_RATE_MEAN = 1.0, 1 / 6
LEAVE_AFTER_PURCHASE = (0.4, 1.6)
LEAVE_WITHOUT_PURCHASE = 0.75
VISITS_PER_PERSON = 2.5
MAX_VISITS = 60
LIKED_PRODUCTS, LIKED_SHARE = 2, 0.9  # the products a person likes, and how often they pick one of them

PhoneNumbers = Callable[[int], "str | None"]  # the k-th person with a phone -> their number (None: no phone)


def fictional_phone(k: int) -> str | None:
    """The ``k``-th number reserved for fiction (E.164), or None once all 5,000 are given out."""
    if not 0 <= k < FICTIONAL_PHONES:
        return None
    return f"{FICTIONAL_PHONE_BLOCKS[k % len(FICTIONAL_PHONE_BLOCKS)]}{k // len(FICTIONAL_PHONE_BLOCKS):03d}"


def synthetic_phone(k: int) -> str:
    """Numbers for load tests of any size (E.164, unique per person); only the demo is shown to people, and it
    uses :func:`fictional_phone`."""
    return f"+1{200 + (k // 10000) % 700:03d}555{k % 10000:04d}"


def person_traits(i: int, rng: random.Random, phone: Callable[[], str | None] | None = None) -> dict[str, str]:
    """Name, email and (for about half of the people) a phone number from ``phone()``."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    traits = {"first_name": first, "last_name": last,
              "email": f"{first}.{last}.{i}@example.com".lower().replace("ü", "u")}
    if rng.random() < 0.5:
        number = phone() if phone else synthetic_phone(i)
        if number:
            traits["phone"] = number
    return traits


def journeys(*, people: int, seed: int, channels: Channels, start: datetime, days: int = 90,
             skus: list[str] | None = None, events_per_person: float = 5.0,
             phones: PhoneNumbers | None = None) -> Iterator[Message]:
    """Messages of ``people`` persons, person by person (callers sort by time if they need to).

    ``phones`` numbers the people who give a phone number, in order (the demo passes :func:`fictional_phone`);
    by default :func:`synthetic_phone` of the person's index. ``Order Completed`` carries the basket
    (``products``: sku and quantity) without prices: the demo prices it as the channel would (``build``).

    A person visits now and then, at a pace of their own, until they leave for good: after a repeat purchase (a
    chance of their own), or, before they ever bought, after any visit; so repeat purchases follow the
    buy-till-you-die pattern that BG/NBD models (see the constants above). A visit makes about
    ``events_per_person`` / ``VISITS_PER_PERSON`` messages.
    """
    rng = random.Random(seed)
    skus = skus or [f"SKU-{n:04d}" for n in range(1, 301)]
    given = 0

    def next_phone() -> str | None:
        nonlocal given
        given += 1
        return phones(given - 1) if phones else None

    for i in range(people):
        yield from _person(i, rng, channels, start, days, skus, events_per_person, next_phone if phones else None)


def _person(i: int, rng: random.Random, ch: Channels, start: datetime, days: int, skus: list[str],
            per_person: float, phone: Callable[[], str | None] | None) -> Iterator[Message]:
    traits = person_traits(i, rng, phone)
    t = start + timedelta(minutes=rng.randrange(days * 24 * 60))
    end = start + timedelta(days=days)
    n = 0
    # buy till you die (Fader, Hardie and Lee 2005): a person comes back at a pace of their own (visits are a
    # Poisson process whose rate varies across people as a gamma) and after each repeat purchase may leave for
    # good (with a probability of their own, a beta across people); before buying, any visit may be the last
    visits_per_day = rng.gammavariate(VISIT_RATE_SHAPE, VISIT_RATE_MEAN / VISIT_RATE_SHAPE)
    leaves_after_purchase = rng.betavariate(*LEAVE_AFTER_PURCHASE)
    # a taste of their own: most of what a person looks at and buys comes from a few products they like, so each
    # customer spends at a level of their own (what Gamma-Gamma models), the catalog's cheap tees or its jackets
    liked = rng.sample(skus, min(len(skus), LIKED_PRODUCTS))
    anon = f"anon-{seed_hex(rng)}"
    device = f"dev-{seed_hex(rng)}" if rng.random() < 0.4 else None
    user_id = f"user-{i}" if rng.random() < 0.65 else None
    card = f"LC{i:08d}" if rng.random() < 0.3 else None
    store = rng.choice(ch.stores)

    def make(src: tuple[str, str], kind: str, channel: str, *, anonymous_id: str | None, event: str | None = None,
             props: dict | None = None, trait: dict | None = None, ctx: dict | None = None,
             uid: str | None = None, store_code: str | None = None) -> Message:
        nonlocal n, t
        n += 1
        t = t + timedelta(minutes=rng.expovariate(1 / 600))
        if channel in OPEN_HOURS:  # a shop's till and the call centre's agents work by day
            t = open_hours(t, *OPEN_HOURS[channel])
        return Message(message_id=f"m-{i}-{n}", type=kind, channel=channel, timestamp=t, received_at=t,
                       user_id=uid, anonymous_id=anonymous_id, event=event, properties=props or {},
                       traits=trait, context=ctx or {}, source_id=src[0], source_name=src[1], store_code=store_code)

    mobile = device is not None
    src, channel = (ch.app, "app") if mobile else (ch.web, "web")
    ctx = {"device": {"id": device}} if mobile else {}
    visit = purchases = 0
    bought = False
    while t <= end and visit < MAX_VISITS:
        if visit:
            purchases += bought
            # as BG/NBD has it, a customer may leave only right after a repeat purchase (the first makes them a
            # customer); one who never bought may give up after any visit
            if not purchases:
                leaves = LEAVE_WITHOUT_PURCHASE
            else:
                leaves = leaves_after_purchase if bought and purchases > 1 else 0.0
            if rng.random() < leaves:
                break  # gone for good
            # until the next visit (past the end for someone who comes back rarely: a gap of years would overflow)
            t += timedelta(days=min(rng.expovariate(visits_per_day), days + 1))
        visit += 1
        bought = False
        budget = n + max(1, int(rng.expovariate(VISITS_PER_PERSON / per_person)))
        while n < budget and not bought:
            roll = rng.random()
            if rng.random() < 0.15:  # the same person on their other device
                mobile = not mobile
                src, channel = (ch.app, "app") if mobile else (ch.web, "web")
                ctx = {"device": {"id": device or f"dev-{i}"}} if mobile else {}
            sku = rng.choice(liked) if rng.random() < LIKED_SHARE else rng.choice(skus)
            if roll < 0.45:
                kind = "screen" if mobile else "page"
                yield make(src, kind, channel, anonymous_id=anon, event="Product", props={"sku": sku}, ctx=ctx,
                           uid=user_id if n > 2 else None)
                yield make(src, "track", channel, anonymous_id=anon, event="Product Viewed",
                           props={"sku": sku, "product_id": sku.rsplit("-", 1)[0]}, ctx=ctx)
            elif roll < 0.55:
                yield make(src, "track", channel, anonymous_id=anon, event="Products Searched",
                           props={"query": rng.choice(SEARCHES)}, ctx=ctx)
            elif roll < 0.70:
                # login or sign-up: the anonymous history becomes the known customer's; some register their
                # loyalty card or phone number in the account, which later ties store and phone visits to it
                given = {"email": traits["email"], "first_name": traits["first_name"]}
                if "phone" in traits and rng.random() < 0.6:
                    given["phone"] = traits["phone"]
                login_ctx = dict(ctx)
                if card and rng.random() < 0.6:
                    login_ctx["externalIds"] = [{"id": card, "type": "loyalty_card"}]
                yield make(src, "identify", channel, anonymous_id=anon, uid=user_id, trait=given, ctx=login_ctx)
                yield make(src, "track", channel, anonymous_id=anon, uid=user_id, event="Product Added",
                           props={"sku": sku, "quantity": 1}, ctx=ctx)
                if rng.random() < 0.5:
                    yield make(src, "track", channel, anonymous_id=anon, uid=user_id, event="Order Completed",
                               props={"order_id": f"o-{i}-{n}", "currency": "EUR",
                                      "products": [{"sku": sku, "quantity": 1}]}, ctx=ctx)
                    bought = True
            elif roll < 0.82:
                # a store visit: the loyalty card (or the email at the till) identifies them
                ids = [{"id": card, "type": "loyalty_card"}] if card else []
                pos_anon = f"pos-{store[2]}-{i}-{n}"
                sid = (store[0], store[1])
                yield make(sid, "identify", "store", anonymous_id=pos_anon, store_code=store[2],
                           trait=None if card else {"email": traits["email"]}, ctx={"externalIds": ids})
                basket = [sku] if rng.random() < 0.6 else sorted({sku, rng.choice(skus)})
                yield make(sid, "track", "store", anonymous_id=pos_anon, event="Order Completed",
                           store_code=store[2], props={"order_id": f"pos-{i}-{n}", "currency": "EUR",
                                                       "products": [{"sku": s, "quantity": 1} for s in basket]},
                           ctx={"externalIds": ids})
                bought = True
            elif roll < 0.92 and "phone" in traits:
                # the agent finds the caller's account (caller id, then name and email to confirm): the call
                # centre's system sends the account's user id and the email, so the call joins the caller's
                # profile instead of starting an anonymous one; the phone number is linked to it on the way
                # one id for the whole call (make() counts n up between the two messages)
                call_id = f"call-{i}-{n}"
                caller = {"phone": traits["phone"], "email": traits["email"], "last_name": traits["last_name"]}
                yield make(ch.call_center, "identify", "call_center", anonymous_id=call_id, uid=user_id,
                           trait=caller)
                yield make(ch.call_center, "track", "call_center", anonymous_id=call_id, uid=user_id,
                           event="Call Completed",
                           props={"reason": rng.choice(["order status", "returns", "sizing"])})
            elif "phone" in traits:
                wa = {"externalIds": [{"id": traits["phone"], "type": "whatsapp"}],
                      "consent": {"categoryPreferences": {"marketing_whatsapp": rng.random() < 0.6}}}
                yield make(ch.whatsapp, "track", "whatsapp", anonymous_id=f"wa-{traits['phone']}",
                           event="Message Received", props={"text": "Where is my order?"}, ctx=wa)
            else:
                yield make(src, "track", channel, anonymous_id=anon, event="Cart Viewed", ctx=ctx)


# when a store's till and the call centre take people, in UTC hours (9:00 to 20:00 and 8:00 to 20:00 in Germany's
# winter time)
OPEN_HOURS = {"store": (8, 19), "call_center": (7, 19)}


def open_hours(t: datetime, opens: int, closes: int) -> datetime:
    """``t`` if it falls within the opening hours, else a moment of the next opening day at the same minute: the
    night's hours spread over the day (no draw of the random stream, so the rest of a person stays as it was)."""
    if opens <= t.hour < closes:
        return t
    day = t if t.hour < opens else t + timedelta(days=1)
    return day.replace(hour=opens + t.hour % (closes - opens))


def seed_hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(64):016x}"
