"""Customers: the search (name, email, phone or any identifier) and the customer 360 page.

The 360 page shows what the customers domain knows (identities, traits, consent, merge history with the identifiers
that caused each merge), the carts and orders of every channel (for roles that read them), and the cross-channel
timeline drawn with one swimlane per channel, with the events as a table beside it.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy import String, func, select, type_coerce
from sqlalchemy.orm import Session

from omnijourney.api.deps import SessionDep, SettingsDep
from omnijourney.auth.service import Principal
from omnijourney.console.web import PREFIX, Errors, customer_name, query, render, viewer
from omnijourney.core.channels import CHANNELS
from omnijourney.core.errors import Invalid, NotFound, OmniError
from omnijourney.customers import service
from omnijourney.customers.identifiers import normalise_email
from omnijourney.customers.models import Customer, Identity
from omnijourney.tracking.models import Event, Source

router = APIRouter(prefix=PREFIX, include_in_schema=False)
CanRead = Annotated[Principal, Depends(viewer("customers:read"))]

PAGE = 25
EVENTS_PAGE = 50
CHART_EVENTS = 20_000  # the newest this many are drawn; the table pages through them all
SEARCH_MODES = (("auto", "Anything (guess)"), ("name", "Name"), ("email", "Email"), ("phone", "Phone"),
                ("identifier", "Identifier TYPE:VALUE"), ("id", "Customer id"))
# identifiers that an exact value typed alone may be (looked up one index probe each)
_EXACT_TYPES = ("user_id", "anonymous_id", "device_id", "loyalty_card")
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")
_TYPED = re.compile(r"^([a-z][a-z0-9_]{1,40}):(.+)$")
_PHONE_LIKE = re.compile(r"^\s*(\+|00)?[\d\s().\-/]+$")  # a number as people write one


def json_block(value: Any) -> Markup:
    """JSON for a ``<script type="application/json">`` block: ``<``, ``>`` and ``&`` escaped, so no text in it can
    close the block or start markup."""
    data = orjson.dumps(value).decode()
    return Markup(data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _exact(session: Session, settings: Any, id_type: str, value: str) -> list[Customer]:
    return service.find(session, id_type=id_type, value=value, settings=settings.identity)


def _search(session: Session, settings: Any, q: str, by: str, cursor: str | None) -> tuple[list[Customer], str | None]:
    """The customers matching what was typed; exact look-ups answer whole (no next page)."""
    identity = settings.identity
    if by == "auto":
        if _HEX_ID.match(q.lower()):
            by = "id"
        elif _TYPED.match(q) and "@" not in q.partition(":")[0]:
            by = "identifier"
        elif "@" in q:
            by = "email"
        elif _PHONE_LIKE.match(q) and sum(ch.isdigit() for ch in q) >= 4:
            by = "phone"
        else:
            found = {c.id: c for t in _EXACT_TYPES for c in _exact(session, settings, t, q)}
            if len(q) < service.MIN_NAME_PREFIX:
                if found:
                    return list(found.values()), None
                raise Invalid(f"give at least {service.MIN_NAME_PREFIX} characters of a name, or a whole identifier",
                              field="q")
            rows, nxt = service.search(session, query=service.CustomerSearch(name=q), settings=identity,
                                       limit=PAGE, cursor=cursor)
            if found and not cursor:
                rows = list(found.values()) + [r for r in rows if r.id not in found]
            return rows, nxt
    if by == "id":
        try:
            return [service.survivor(session, q.lower())], None
        except NotFound:
            return [], None
    if by == "identifier":
        id_type, sep, value = q.partition(":")
        if not sep or not id_type.strip() or not value.strip():
            raise Invalid("an identifier looks like TYPE:VALUE, e.g. loyalty_card:LC123", field="q")
        return _exact(session, settings, id_type.strip(), value.strip()), None
    if by == "email":
        if normalise_email(q) is not None and not cursor:
            exact = _exact(session, settings, "email", q)
            if exact:
                return exact, None
        try:
            return service.search(session, query=service.CustomerSearch(email_prefix=q), settings=identity,
                                  limit=PAGE, cursor=cursor)
        except Invalid as exc:
            raise Invalid(exc.message.removeprefix("email_prefix: "), field="q") from None
    if by == "phone":
        try:
            return service.search(session, query=service.CustomerSearch(phone_prefix=q), settings=identity,
                                  limit=PAGE, cursor=cursor)
        except Invalid as exc:
            raise Invalid(exc.message.removeprefix("phone_prefix: "), field="q") from None
    try:
        return service.search(session, query=service.CustomerSearch(name=q), settings=identity, limit=PAGE,
                              cursor=cursor)
    except Invalid as exc:
        raise Invalid(exc.message.removeprefix("name: "), field="q") from None


def _contacts(session: Session, ids: list[str]) -> dict[str, dict[str, str]]:
    """The first email and phone of each customer (one query for the page)."""
    out: dict[str, dict[str, str]] = {i: {} for i in ids}
    if not ids:
        return out
    for cid, id_type, value in session.execute(
            select(Identity.customer_id, Identity.type, Identity.value)
            .where(Identity.customer_id.in_(ids), Identity.type.in_(("email", "phone", "whatsapp")))
            .order_by(Identity.first_seen)):
        key = "phone" if id_type == "whatsapp" else id_type
        out[cid].setdefault(key, value)
    return out


@router.get("/customers")
def customers_page(request: Request, session: SessionDep, settings: SettingsDep, _: CanRead) -> Response:
    """Find customers by name, email, phone or any identifier; without a search, the newest."""
    errors = Errors()
    rows: list[Customer] = []
    nxt: str | None = None
    q = by = None
    status = 200
    try:
        q = query(request, "q")
        by = query(request, "by") or "auto"
        if by not in dict(SEARCH_MODES):
            raise Invalid(f"search by one of {', '.join(dict(SEARCH_MODES))}", field="by")
        cursor = query(request, "cursor", max_len=500)
        if q:
            rows, nxt = _search(session, settings, q, by, cursor)
        else:
            rows, nxt = service.search(session, query=service.CustomerSearch(), settings=settings.identity,
                                       limit=PAGE, cursor=cursor)
    except OmniError as exc:
        errors.add(exc, ("q", "by"))
        status = exc.status
    next_url = f"{PREFIX}/customers?{urlencode({'q': q or '', 'by': by or 'auto', 'cursor': nxt})}" if nxt else None
    return render(request, "customers.html", status=status, title="Customers", errors=errors, q=q or "",
                  by=by or "auto", modes=SEARCH_MODES, rows=rows, contacts=_contacts(session, [r.id for r in rows]),
                  next_url=next_url, searched=bool(q))


def _utc_text(session: Session) -> Any:
    """The events' times as the database writes them, in UTC without a zone (``2026-03-01 12:00:00.000000``, what
    Plotly reads): 10,000 times turned into datetimes and back into text would cost more than the page's query."""
    if session.get_bind().dialect.name == "sqlite":
        return type_coerce(Event.timestamp, String)  # stored as that text already, in UTC
    return func.to_char(func.timezone("UTC", Event.timestamp), "YYYY-MM-DD HH24:MI:SS.US")


def timeline_lanes(session: Session, customer_id: str) -> list[dict[str, Any]]:
    """The chart's data: one lane per channel (a store's events in the lane of its store), each with its events'
    times and names, lanes in the order the person first used them (the newest ``CHART_EVENTS`` events)."""
    rows = session.execute(
        select(_utc_text(session), Event.channel, Event.store_code, Event.event, Event.type)
        .where(Event.customer_id == customer_id)
        .order_by(Event.timestamp.desc(), Event.id.desc()).limit(CHART_EVENTS)).all()
    lanes: dict[str, dict[str, Any]] = {}
    for ts, channel, store, event, kind in reversed(rows):
        name = f"{channel.replace('_', ' ')} {store}" if channel == "store" and store else channel.replace("_", " ")
        lane = lanes.get(name)
        if lane is None:
            lane = lanes[name] = {"label": name, "t": [], "e": []}
        lane["t"].append(ts)
        lane["e"].append(event or kind)
    return list(lanes.values())


def _sources(session: Session, ids: set[str]) -> dict[str, str]:
    ids.discard(None)  # type: ignore[arg-type]
    if not ids:
        return {}
    return dict(session.execute(select(Source.id, Source.name).where(Source.id.in_(ids))).all())


@router.get("/customers/{customer_id}")
def customer_page(customer_id: str, request: Request, session: SessionDep, who: CanRead) -> Response:
    """The customer 360: identities, traits, consent, carts, orders, the cross-channel timeline, merges."""
    if len(customer_id) > 64:
        raise NotFound(f"no customer {customer_id[:64]!r}...", field="customer_id")
    profile = service.profile(session, customer_id=customer_id)
    c = profile.customer
    if c.id != customer_id:  # merged into another profile: the survivor is the person
        return RedirectResponse(f"{PREFIX}/customers/{c.id}?merged_from={customer_id}", status_code=303)
    errors = Errors()
    channel = request.query_params.get("channel") or None
    cursor = request.query_params.get("cursor") or None
    events: list[Event] = []
    next_events = None
    try:
        if channel is not None and channel not in CHANNELS:
            raise Invalid(f"no kind of channel {channel[:40]!r}", field="channel")
        _, events, next_events = service.timeline(session, customer_id=c.id, limit=EVENTS_PAGE, cursor=cursor,
                                                  channel=channel)
    except OmniError as exc:
        errors.add(exc, ("channel",))
    lanes = timeline_lanes(session, c.id)
    orders = carts = summary = None
    if who.allows("orders:read"):
        from omnijourney.orders.orders import customer_summary, list_orders

        summary = customer_summary(session, c.id)
        orders = list_orders(session, customer_id=c.id, limit=20).items
    cart_lines: dict[str, list[Any]] = {}
    if who.allows("carts:read"):
        from omnijourney.carts.models import CartLine
        from omnijourney.carts.service import list_carts

        carts, _ = list_carts(session, customer_id=c.id, status=None, limit=20)
        for line in session.scalars(select(CartLine).where(CartLine.cart_id.in_([k.id for k in carts]))
                                    .order_by(CartLine.added_at)):
            cart_lines.setdefault(line.cart_id, []).append(line)
    sources = _sources(session, {i.source_id for i in profile.identities} | {m.source_id for m in profile.merged_from})
    trait_rows = sorted(c.traits.items())
    params = {"channel": channel} if channel else {}
    next_url = (f"{PREFIX}/customers/{c.id}?{urlencode({**params, 'cursor': next_events})}#events"
                if next_events else None)
    channel_counts = Counter(profile.channels)
    return render(request, "customer.html", title=customer_name(c.traits) or f"Customer {c.id[:8]}", c=c,
                  profile=profile, errors=errors, events=events, next_url=next_url, channel=channel or "",
                  channels=sorted(channel_counts.items(), key=lambda kv: -kv[1]), lanes=json_block({"lanes": lanes}),
                  lane_names=[lane["label"] for lane in lanes], drawn=sum(len(lane["t"]) for lane in lanes),
                  chart_cap=CHART_EVENTS, orders=orders, summary=summary, carts=carts, cart_lines=cart_lines,
                  sources=sources, trait_rows=trait_rows, merged_from=request.query_params.get("merged_from"))
