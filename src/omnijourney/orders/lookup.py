"""Finding an order the way a person at a counter or on the phone knows it: its number (a receipt, an email) or id,
the pickup code the shopper shows, or the customer's email or phone (their orders from every channel, through
profile merges, newest first).

One box takes any of these: an order number or id and a pickup code name one order; an email or a phone number names
a customer, whose latest orders are listed (an email also finds a guest's orders, which have no profile).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from omnijourney.config import IdentitySettings
from omnijourney.core.errors import Invalid, NotFound
from omnijourney.customers import service as customers
from omnijourney.customers.identifiers import normalise_email, normalise_phone
from omnijourney.orders import orders as order_service
from omnijourney.orders.models import Order

MAX_FOUND = 20
_PICKUP_CODE = re.compile(rf"^[{order_service.CODE_ALPHABET}]{{6}}$")
_PHONE_LIKE = re.compile(r"^(\+|00)?[\d\s().\-/]+$")  # a number as people write one


@dataclass(frozen=True, slots=True)
class Found:
    """What a search found: ``by`` says what the text was taken for (``order``, ``pickup_code``, ``email`` or
    ``phone``); ``exact`` when it names one order by itself (open it), else a customer's latest orders."""

    orders: list[Order]
    by: str
    exact: bool = False


def find_orders(session: Session, *, query: str, settings: IdentitySettings, limit: int = MAX_FOUND) -> Found:
    """The orders ``query`` names (see the module). ``Invalid`` on ``q`` when it is empty or no email or phone,
    ``NotFound`` when it names no order; an email or phone nobody has finds no order (an empty list)."""
    q = query.strip()
    if not q:
        raise Invalid("type an order number, a pickup code, or the customer's email or phone", field="q")
    if len(q) <= 64:
        for candidate in dict.fromkeys((q, q.upper())):
            order = session.get(Order, candidate) or session.scalar(select(Order).where(Order.number == candidate))
            if order is not None:
                return Found([order], "order", exact=True)
        if _PICKUP_CODE.match(q.upper()):
            order = session.scalar(select(Order).where(Order.pickup_code == q.upper()))
            if order is not None:
                return Found([order], "pickup_code", exact=True)
    if "@" in q:
        email = normalise_email(q)
        if email is None:
            raise Invalid(f"{q!r} is not an email address", field="q")
        return Found(_customers_orders(session, "email", email, settings, limit, guest_email=email), "email")
    if _PHONE_LIKE.match(q) and sum(ch.isdigit() for ch in q) >= 6:
        phone = normalise_phone(q, settings.default_region)
        if phone is None:
            raise Invalid(f"{q!r} is not a phone number", field="q")
        return Found(_customers_orders(session, "phone", phone, settings, limit), "phone")
    raise NotFound(f"no order has the number, id or pickup code {q!r}; to find a customer's orders, type their "
                   "email or phone", field="q")


def _customers_orders(session: Session, id_type: str, value: str, settings: IdentitySettings, limit: int,
                      guest_email: str | None = None) -> list[Order]:
    """The latest orders of the customers owning the identifier, and (for an email) of guests who gave it."""
    found: dict[str, Order] = {}
    for c in customers.find(session, id_type=id_type, value=value, settings=settings):
        for o in order_service.list_orders(session, customer_id=c.id, limit=limit).items:
            found[o.id] = o
    if guest_email is not None:
        # checkout keeps the email it was given; a guest's order is found by it alone
        for o in session.scalars(select(Order).where(Order.email == guest_email, Order.customer_id.is_(None))
                                 .order_by(Order.placed_at.desc()).limit(limit)):
            found[o.id] = o
    return sorted(found.values(), key=lambda o: (o.placed_at, o.id), reverse=True)[:limit]
