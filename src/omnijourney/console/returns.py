"""Returns at any desk: a store associate at the counter or a contact-center agent on the phone finds an order of any
channel (its number or id, the pickup code, the customer's email or phone), chooses what comes back, how many, why and
in what state (back on the shelf here, or damaged into quarantine), and an exchange for another size or colour if
the shopper wants one; then sees the refund over the original tenders and where the units went.

Everything is decided by the orders domain (``orders.lookup``, ``orders.returns``): the page only reads the form and
shows the domain's answer. A refusal (outside the window, never bought, already returned, a final sale) is the
domain's message next to the line it is about, and nothing changed (the return's transaction is rolled back). A store
associate acts from their own stores only, as in the API.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from omnijourney.api.deps import DatabaseDep, SessionDep, SettingsDep
from omnijourney.auth.service import Principal
from omnijourney.auth.stores import check_location
from omnijourney.catalog.channels import list_channels
from omnijourney.console.web import (
    PREFIX,
    Errors,
    form_fields,
    query,
    render,
    store_locations,
    text,
    viewer,
    whole,
)
from omnijourney.core.errors import Invalid, NotFound, OmniError
from omnijourney.inventory.locations import list_locations
from omnijourney.orders import lookup, returns
from omnijourney.orders import orders as orders_service

router = APIRouter(prefix=PREFIX, include_in_schema=False)
Desk = Annotated[Principal, Depends(viewer("orders:write"))]
Fields = Annotated[dict[str, str], Depends(form_fields)]

CONDITIONS = (("resellable", "Resellable: back on the shelf here"), ("damaged", "Damaged: into quarantine"))
MAX_LINES = 200  # lines of one order shown in the form (an order never has more in practice)
_LINE_FIELD = re.compile(r"^(lines|exchange)\[(\d+)\]\.(\w+)$")


def _channels(session: Session, who: Principal) -> list[tuple[str, str]]:
    """The channels the person may take a return in (a store associate: their stores)."""
    return [(c.code, f"{c.name} ({c.code})") for c in list_channels(session) if who.works_in(c.code)]


def _default_channel(session: Session, who: Principal, order: Any) -> str | None:
    """A store associate's store; else the call center, if the shop has one; else where the order was sold."""
    codes = [c for c, _ in _channels(session, who)]
    call_center = [c.code for c in list_channels(session, type="call_center") if c.code in codes]
    for candidate in (*(sorted(who.stores) if who.stores else ()), *call_center, order.channel_code):
        if candidate in codes:
            return candidate
    return codes[0] if codes else None


def _locations(session: Session, who: Principal) -> list[tuple[str, str]]:
    """Where goods may be received: stores (a store associate: theirs) and warehouses (not for a store associate)."""
    out = []
    for loc in list_locations(session):
        if loc.type == "store" and who.works_in(loc.channel_code):
            out.append((loc.code, f"{loc.name} ({loc.code}), store"))
        elif loc.type == "warehouse" and who.stores is None:
            out.append((loc.code, f"{loc.name} ({loc.code}), warehouse: sent back by post"))
    return out


# ---------------------------------------------------------------- finding the order

@router.get("/returns")
def find_page(request: Request, session: SessionDep, settings: SettingsDep, who: Desk) -> Response:
    """Find the order to take back: by number or id, pickup code, or the customer's email or phone."""
    errors = Errors()
    found: lookup.Found | None = None
    status = 200
    q = ""
    try:
        q = query(request, "q") or ""
        if q:
            found = lookup.find_orders(session, query=q, settings=settings.identity)
            if found.exact:
                return RedirectResponse(f"{PREFIX}/returns/{found.orders[0].id}", status_code=303)
    except OmniError as exc:
        errors.add(exc, ("q",))
        status = exc.status
    return render(request, "returns.html", status=status, title="Take a return", errors=errors, q=q, found=found)


# ---------------------------------------------------------------- the form and its receipt

def _return_page(request: Request, session: Session, who: Principal, order_id: str, *, channel: str | None = None,
                 errors: Errors | None = None, status: int = 200, sent: dict[str, str] | None = None) -> Response:
    if len(order_id) > 64:
        raise NotFound("no such order", field="order_id")
    order = orders_service.get(session, order_id)
    channels = _channels(session, who)
    if channel is None or channel not in {c for c, _ in channels}:
        channel = _default_channel(session, who, order)
    view = returns.returnable(session, order_id=order.id, channel_code=channel) if channel else None
    done = request.query_params.get("done")
    receipt = None
    if done and len(done) <= 64:
        try:
            receipt = returns.receipt(session, done)
        except NotFound:
            receipt = None
        if receipt is not None and receipt.ret.order_id != order.id:
            receipt = None
    customer = None
    if order.customer_id and who.allows("customers:read"):
        from omnijourney.customers.models import Customer

        customer = session.get(Customer, order.customer_id)
    sent = sent or {}
    return render(request, "return.html", status=status, title=f"Return for order {order.number}", order=order,
                  view=view, receipt=receipt, channel=channel or "", channels=channels,
                  locations=_locations(session, who),
                  location=sent.get("location", _default_location(session, who, channel)),
                  conditions=CONDITIONS, errors=errors or Errors(), sent=sent, customer=customer)


def _default_location(session: Session, who: Principal, channel: str | None) -> str:
    """Blank (the store's own shelf) at a store's counter; elsewhere (the call center, the web) the first
    warehouse, where goods sent back by post arrive."""
    if channel is None or who.stores is not None or store_locations(session, channel):
        return ""
    return next((loc.code for loc in list_locations(session, type="warehouse")), "")


@router.get("/returns/{order_id}")
def return_page(order_id: str, request: Request, session: SessionDep, who: Desk) -> Response:
    """What of the order can come back here, line by line (the window, what came back already, exchanges), and
    the receipt of the return just taken (``done``)."""
    return _return_page(request, session, who, order_id, channel=query(request, "channel", max_len=64))


def _lines(fields: dict[str, str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[int]]:
    """The lines the form sends back (a quantity above 0), their exchanges, and each sent line's row in the form."""
    lines, exchange, rows = [], [], []
    for i in range(MAX_LINES):
        sku = fields.get(f"sku-{i}")
        if sku is None:
            break
        raw = (fields.get(f"qty-{i}") or "").strip()
        quantity = whole(raw, f"qty-{i}", low=0, high=9_999) if raw else 0
        if quantity == 0:
            continue
        lines.append({"sku": sku[:64], "quantity": quantity,
                      "reason": text(fields.get(f"reason-{i}"), f"reason-{i}", max_len=200) or "",
                      "condition": fields.get(f"condition-{i}", "resellable")})
        rows.append(i)
        swap = text(fields.get(f"exchange-{i}"), f"exchange-{i}", max_len=64)
        if swap:
            exchange.append({"sku": swap, "quantity": quantity, "row": i})
    if not lines:
        raise Invalid("type how many of which line come back", field="_")
    return lines, exchange, rows


def _field_of(name: str | None, rows: list[int], swaps: list[int]) -> str:
    """The form's field for a field the domain named (``lines[1].reason`` -> ``reason-3``)."""
    found = _LINE_FIELD.match(name or "")
    if found is None:
        return name or "_"
    kind, k, what = found.group(1), int(found.group(2)), found.group(3)
    if kind == "exchange":
        return f"exchange-{swaps[k]}" if k < len(swaps) else "_"
    if k >= len(rows):
        return "_"
    return f"{'qty' if what in ('sku', 'quantity') else what}-{rows[k]}"


@router.post("/returns/{order_id}")
def take_return(order_id: str, request: Request, fields: Fields, db: DatabaseDep, who: Desk) -> Response:
    """Take the chosen lines back in the chosen channel and place; refund to the original tenders (less what an
    exchange is worth). A refusal is shown next to its line, and nothing changed."""
    errors = Errors()
    rows: list[int] = []
    swaps: list[int] = []
    channel = None
    try:
        channel = text(fields.get("channel"), "channel", max_len=64)
        if channel is None:
            raise Invalid("choose where you take the return", field="channel")
        who.check_store(channel, field="channel")
        location = text(fields.get("location"), "location", max_len=64)
        lines, exchange, rows = _lines(fields)
        swaps = [e.pop("row") for e in exchange]
        with db.transaction() as session:
            if location is not None:
                check_location(session, who, location, field="location")
            order = orders_service.get(session, order_id[:64])
            ret = returns.create_return(session, order_id=order.id, channel_code=channel, location=location,
                                        lines=lines, exchange=exchange)
            done = (order.id, ret.id)
    except OmniError as exc:
        if exc.code == "store_not_allowed" or (isinstance(exc, NotFound) and exc.field == "order_id"):
            raise
        name = _field_of(exc.field, rows, swaps)
        errors["_"] = f"Nothing was taken back: {exc.message}"
        if name != "_":
            errors[name] = exc.message
        with db.transaction(write=False) as session:
            return _return_page(request, session, who, order_id, channel=channel, errors=errors,
                                status=exc.status, sent=fields)
    params = urlencode({"channel": channel, "done": done[1]})
    return RedirectResponse(f"{PREFIX}/returns/{done[0]}?{params}", status_code=303)
