"""The order's states and the moves between them; anything else is a 409 naming both states.

Delivered home (``ship``)::

    placed -> paid -> allocated -> picked -> shipped -> delivered

Collected in a store (``pickup``; ``reserve_in_store`` pays at the till, so it skips ``paid``; ``in_store`` is a
till's counter sale, collected at once)::

    placed -> paid -> allocated -> picked -> ready_for_pickup -> collected
    placed -> allocated -> picked -> ready_for_pickup -> collected        (reserve_in_store)
    placed -> paid -> collected                                           (in_store)

Any state before the goods leave may become ``cancelled``; ``delivered``, ``shipped`` and ``collected`` orders
become ``partly_returned`` or ``returned``. Every move is written to the order's history and as an event on the
customer's timeline, in the same transaction, under the registry's names.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from omnijourney.core.errors import Conflict
from omnijourney.core.time import utcnow
from omnijourney.orders.models import Order, OrderHistory

FULFILMENTS = ("ship", "pickup", "reserve_in_store", "in_store")
CANCELLABLE = ("placed", "paid", "allocated", "picked", "ready_for_pickup")
RETURNABLE = ("shipped", "delivered", "collected", "partly_returned")

_PATHS: dict[str, tuple[str, ...]] = {
    "ship": ("placed", "paid", "allocated", "picked", "shipped", "delivered"),
    "pickup": ("placed", "paid", "allocated", "picked", "ready_for_pickup", "collected"),
    "reserve_in_store": ("placed", "allocated", "picked", "ready_for_pickup", "collected"),
    "in_store": ("placed", "paid", "collected"),
}

# the timeline event of arriving in each state
EVENTS = {"placed": "Order Placed", "paid": "Order Paid", "allocated": "Order Allocated", "picked": "Order Picked",
          "shipped": "Order Shipped", "ready_for_pickup": "Order Ready for Pickup", "delivered": "Order Delivered",
          "collected": "Order Collected", "cancelled": "Order Cancelled", "partly_returned": "Order Returned",
          "returned": "Order Returned"}


def allowed(fulfilment: str, current: str) -> tuple[str, ...]:
    """The states an order of this fulfilment may move to from ``current``."""
    path = _PATHS[fulfilment]
    out: list[str] = []
    if current in path and path.index(current) + 1 < len(path):
        out.append(path[path.index(current) + 1])
    if current in CANCELLABLE:
        out.append("cancelled")
    if current in RETURNABLE:
        out += ["partly_returned", "returned"]
    return tuple(out)


def check(order: Order, to: str) -> None:
    """``Conflict`` (409 ``illegal_transition``) unless ``order`` may move to ``to`` now."""
    if to not in allowed(order.fulfilment, order.status):
        nxt = allowed(order.fulfilment, order.status)
        raise Conflict(f"order {order.number} is {order.status}: it cannot become {to} "
                       f"({'next: ' + ', '.join(nxt) if nxt else 'it is final'})", field="status",
                       code="illegal_transition", details={"status": order.status, "allowed": list(nxt)})


def move(session: Session, order: Order, to: str, *, channel_code: str | None, note: str | None = None,
         record: Any = None) -> None:
    """Move a locked ``order`` to ``to`` (checked), with its history row; ``record(event)`` writes the timeline
    event (the caller knows the channel and the properties)."""
    check(order, to)
    now = utcnow()
    session.execute(insert(OrderHistory), [{"order_id": order.id, "from_status": order.status, "to_status": to,
                                            "channel_code": channel_code, "note": note, "at": now}])
    order.status, order.updated_at = to, now
    if record is not None:
        record(EVENTS[to])


def start(session: Session, order: Order, *, channel_code: str) -> None:
    """The history's first row: the order was placed."""
    session.execute(insert(OrderHistory), [{"order_id": order.id, "from_status": None, "to_status": "placed",
                                            "channel_code": channel_code, "note": None, "at": order.placed_at}])
