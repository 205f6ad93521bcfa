"""After a checkout storm (or a crash in the middle of one): is every order paid, every payment an order's, every
unit where it should be?

:func:`audit` checks orders, checkouts, payments and their reservations set-based, on top of the inventory's
checker (:func:`omnijourney.inventory.audit.audit`: no impossible level, the ledger rebuilds the counters, reserved
is what active reservations hold). What it adds:

- every order has its payment: attached tenders that hold money (authorised or captured) and add up to its total
  (orders paid at the till later, and those waiting for the shopper's 3-D Secure, excepted while they wait);
- every order holds its units: its reservation is its own (``ref``) and held without expiry, or consumed, with
  the units of its lines; at most one order per cart, and each order is its checkout's;
- no payment holds money without an order (authorised or captured, ``order_id`` unset), once the recovery and
  reconcile jobs had their time (``settled``); then also: every checkout has its answer, no payment is left
  ``new`` (an authorisation whose answer was lost), every attached authorisation is captured, no checkout's
  reservation is still active, and no active reservation is past its expiry;
- each order the clients were told of (``acknowledged``: order id -> the 201's body) exists with that total, those
  lines, and its checkout's stored answer;
- the provider's side (``intents``: its PaymentIntents as its API lists them, and ``refunds``: its Refund objects,
  e.g. :meth:`omnijourney.payments.simulator.TestProvider.intents` and ``.refunds()``, or
  :meth:`omnijourney.payments.stripe.StripeProvider.intents` and ``.refunds(payment_intent)``): at most one intent
  per payment, hence one charge per checkout's ``Idempotency-Key``; every intent that holds money belongs to a
  payment of an order and holds what that payment says; every payment we think holds money is held there. A captured
  intent holds its ``amount_received`` less its refunds that took money back (Stripe documents no refunded total on
  a PaymentIntent; a refund that ``failed`` or was ``canceled`` returned nothing, so a payment that counted it as
  refunded disagrees with the provider).

Run it once the traffic is over (the inventory's :func:`~omnijourney.inventory.audit.snapshot` gives a consistent
view while it goes on; use ``settled=False`` then).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from omnijourney.inventory import audit as inventory_audit
from omnijourney.orders.models import Checkout, Order
from omnijourney.payments.models import Payment
from omnijourney.payments.stripe import refunded
from omnijourney.pricing.money import to_minor

_SHOWN = 20  # problems listed per check; the count says how many more
_HOLDING = ("authorised", "captured", "partly_refunded")  # our statuses of a payment that holds money


@dataclass(slots=True)
class OrderAudit:
    """What :func:`audit` found: ``ok`` when ``problems`` is empty (the inventory's problems included)."""

    orders: int = 0
    checkouts: int = 0
    payments: int = 0
    intents: int = 0
    units_ordered: int = 0
    inventory: inventory_audit.Audit = field(default_factory=inventory_audit.Audit)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        head = (f"{self.orders:,} orders ({self.units_ordered:,} units), {self.checkouts:,} checkouts, "
                f"{self.payments:,} payments, {self.intents:,} provider intents; inventory: "
                f"{self.inventory.levels:,} levels, {self.inventory.units_on_hand:,} on hand, "
                f"{self.inventory.units_reserved:,} reserved")
        return head + (": all consistent" if self.ok else ":\n  " + "\n  ".join(self.problems))


def _report(out: OrderAudit, what: str, rows: list[Any], say) -> None:  # type: ignore[no-untyped-def]
    for r in rows[:_SHOWN]:
        out.problems.append(f"{what}: {say(*r)}")
    if len(rows) > _SHOWN:
        out.problems.append(f"{what}: ... and {len(rows) - _SHOWN:,} more")


# the tenders attached to each order that should be paid now (not paid at the till later, not waiting for the
# shopper, not cancelled): how many, how many hold money, what they add up to
_PAID = text("""
SELECT o.id, o.total, o.currency, COUNT(p.id),
       COALESCE(SUM(CASE WHEN p.status IN ('authorised', 'captured', 'partly_refunded', 'refunded')
                         THEN p.amount_minor ELSE 0 END), 0),
       COALESCE(SUM(CASE WHEN p.status IN ('authorised', 'captured', 'partly_refunded', 'refunded')
                         THEN 0 ELSE 1 END), 0)
FROM orders o LEFT JOIN payments p ON p.order_id = o.id
WHERE o.fulfilment <> 'reserve_in_store' AND o.payment_status <> 'pending' AND o.status <> 'cancelled'
  AND o.total > 0
GROUP BY o.id, o.total, o.currency ORDER BY o.id""")

# each live order's reservation: its own, held without expiry (or with one while a payment is pending), or consumed
_HELD = text("""
SELECT o.id, o.status, o.reservation_id, r.status, r.ref, r.expires_at FROM orders o
LEFT JOIN reservations r ON r.id = o.reservation_id
WHERE o.status <> 'cancelled' AND (
      r.id IS NULL OR r.ref IS NULL OR r.ref <> o.id
   OR NOT (r.status = 'consumed' OR (r.status = 'active' AND (r.expires_at IS NULL OR o.payment_status = 'pending'))))
ORDER BY o.id""")

# a live order's lines against the units its reservation holds or sold, per SKU
_UNITS = text("""
SELECT x.order_id, x.sku, SUM(x.ordered), SUM(x.held) FROM (
    SELECT ol.order_id, ol.sku, ol.quantity AS ordered, 0 AS held
    FROM order_lines ol JOIN orders o ON o.id = ol.order_id WHERE o.status <> 'cancelled'
    UNION ALL
    SELECT o.id, rl.sku, 0, rl.quantity FROM orders o
    JOIN reservation_lines rl ON rl.reservation_id = o.reservation_id
    WHERE o.status <> 'cancelled' AND rl.status IN ('active', 'consumed')
) x GROUP BY x.order_id, x.sku HAVING SUM(x.ordered) <> SUM(x.held) ORDER BY x.order_id, x.sku""")

_TWO_ORDERS = text("SELECT cart_id, COUNT(*) FROM orders WHERE cart_id IS NOT NULL GROUP BY cart_id "
                   "HAVING COUNT(*) > 1 ORDER BY cart_id")

_TWO_COMPLETED = text("SELECT cart_id, COUNT(*) FROM checkouts WHERE status = 'completed' GROUP BY cart_id "
                      "HAVING COUNT(*) > 1 ORDER BY cart_id")

# a completed checkout names its order, of its cart; an order came from a completed checkout
_CHECKOUT_ORDER = text("""
SELECT c.id, c.status, c.order_id, o.id, o.cart_id, c.cart_id FROM checkouts c
LEFT JOIN orders o ON o.id = c.order_id
WHERE (c.status = 'completed' AND (o.id IS NULL OR o.cart_id IS NULL OR o.cart_id <> c.cart_id))
   OR (c.status <> 'completed' AND c.order_id IS NOT NULL)
ORDER BY c.id""")

_ORPHAN_ORDERS = text("""
SELECT o.id, o.cart_id FROM orders o WHERE o.cart_id IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM checkouts c WHERE c.order_id = o.id AND c.status = 'completed') ORDER BY o.id""")

# money held without an order: authorised or captured and never attached (a pending tender waits for the shopper
# on an order placed already: its checkout names the order)
_UNATTACHED = text("""
SELECT p.id, p.ref, p.method, p.status FROM payments p
WHERE p.order_id IS NULL AND (p.status IN ('authorised', 'captured', 'partly_refunded')
   OR (p.status = 'pending' AND NOT EXISTS (SELECT 1 FROM checkouts c WHERE c.id = p.ref AND c.order_id IS NOT NULL)))
ORDER BY p.id""")

_UNSETTLED_PAYMENTS = text("""
SELECT p.id, p.ref, p.status, p.void_requested_at IS NOT NULL FROM payments p
WHERE p.status = 'new' OR (p.void_requested_at IS NOT NULL AND p.status IN ('pending', 'authorised'))
   OR (p.order_id IS NOT NULL AND p.status = 'authorised' AND EXISTS (
       SELECT 1 FROM orders o WHERE o.id = p.order_id AND o.status <> 'cancelled'))
ORDER BY p.id""")

_UNANSWERED = text("SELECT id, cart_id, status FROM checkouts WHERE answer IS NULL OR status IN ('reserved', 'paying') "
                   "ORDER BY id")

# a checkout's reservation that is still active once the checkout is over (completed: it became the order's)
_CHECKOUT_HELD = text("""
SELECT r.id, r.ref, c.status FROM reservations r JOIN checkouts c ON c.id = r.ref
WHERE r.status = 'active' ORDER BY r.id""")


def audit(session: Session, *, acknowledged: Mapping[str, Mapping[str, Any]] | None = None,
          intents: Iterable[Mapping[str, Any]] | None = None, refunds: Iterable[Mapping[str, Any]] | None = None,
          provider: str = "test", settled: bool = True) -> OrderAudit:
    """Check orders, checkouts, payments and stock (see the module's docstring). ``acknowledged``: order id -> the
    body a client was answered with (201); ``intents``: the PaymentIntents of ``provider`` (every one it holds) and
    ``refunds``: its Refund objects (at least those of these intents; needed with ``intents``); ``settled``: the
    recovery, reconcile, capture and expiry jobs have all had their time to run."""
    if intents is not None and refunds is None:
        raise ValueError("the provider's refunds are needed with its intents: what an intent holds is net of them")
    out = OrderAudit()
    out.inventory = inventory_audit.audit(session, overdue_after_s=0 if settled else None)
    out.problems += [f"inventory: {p}" for p in out.inventory.problems]
    out.orders = session.scalar(select(func.count()).select_from(Order)) or 0
    out.checkouts = session.scalar(select(func.count()).select_from(Checkout)) or 0
    out.payments = session.scalar(select(func.count()).select_from(Payment)) or 0
    out.units_ordered = session.scalar(text(
        "SELECT COALESCE(SUM(ol.quantity), 0) FROM order_lines ol JOIN orders o ON o.id = ol.order_id "
        "WHERE o.status <> 'cancelled'")) or 0

    unpaid = [(oid, total, cur, n, held, bad) for oid, total, cur, n, held, bad in session.execute(_PAID)
              if n == 0 or bad or held != to_minor(Decimal(str(total)), cur)]
    _report(out, "order without its payment", unpaid,
            lambda oid, total, cur, n, held, bad: f"{oid} ({total} {cur}): {n} tender(s) attached, {bad} not "
                                                  f"holding money, {held} minor units held")
    _report(out, "order without its units", session.execute(_HELD).all(),
            lambda oid, st, rid, rst, ref, exp: f"{oid} ({st}): reservation {rid or 'none'} is "
                                                f"{rst or 'missing'}, for {ref}, expiring {exp}")
    _report(out, "order lines and held units differ", session.execute(_UNITS).all(),
            lambda oid, sku, ordered, held: f"{oid} {sku}: {ordered} ordered, {held} held or sold")
    _report(out, "several orders for one cart", session.execute(_TWO_ORDERS).all(),
            lambda cart, n: f"cart {cart}: {n} orders")
    _report(out, "several completed checkouts for one cart", session.execute(_TWO_COMPLETED).all(),
            lambda cart, n: f"cart {cart}: {n}")
    _report(out, "checkout and its order disagree", session.execute(_CHECKOUT_ORDER).all(),
            lambda cid, st, coid, oid, ocart, ccart: f"checkout {cid} ({st}, cart {ccart}) names order {coid}: "
                                                     f"{'missing' if oid is None else f'of cart {ocart}'}")
    _report(out, "order without its checkout", session.execute(_ORPHAN_ORDERS).all(),
            lambda oid, cart: f"{oid} (cart {cart})")
    if settled:
        _report(out, "payment holding money without an order", session.execute(_UNATTACHED).all(),
                lambda pid, ref, method, st: f"{pid} ({method}, {st}) of checkout {ref}")
        _report(out, "payment not settled after the jobs ran", session.execute(_UNSETTLED_PAYMENTS).all(),
                lambda pid, ref, st, void: f"{pid} of checkout {ref} is {st}" + (" (void decided)" if void else ""))
        _report(out, "checkout without its answer after the recovery job", session.execute(_UNANSWERED).all(),
                lambda cid, cart, st: f"{cid} (cart {cart}) is {st}")
        _report(out, "checkout's units still held after it ended", session.execute(_CHECKOUT_HELD).all(),
                lambda rid, ref, st: f"reservation {rid} of checkout {ref} ({st})")
    if acknowledged:
        _acknowledged(session, out, acknowledged)
    if intents is not None:
        _provider(session, out, list(intents), refunded(refunds or ()), provider)
    return out


def _acknowledged(session: Session, out: OrderAudit, acknowledged: Mapping[str, Mapping[str, Any]]) -> None:
    ids = sorted(acknowledged)
    orders = {o.id: o for o in session.scalars(select(Order).where(Order.id.in_(ids)))}
    lines: dict[str, dict[str, int]] = {}
    for oid, sku, q in session.execute(text("SELECT order_id, sku, quantity FROM order_lines WHERE order_id IN :ids")
                                       .bindparams(_expanding("ids")), {"ids": ids}):
        lines.setdefault(oid, {})[sku] = lines.get(oid, {}).get(sku, 0) + q
    answers = {oid: (st, body) for oid, st, body in session.execute(
        select(Checkout.order_id, Checkout.answer_status, Checkout.answer).where(Checkout.order_id.in_(ids)))}
    wrong = []
    for oid in ids:
        told = acknowledged[oid]
        order = orders.get(oid)
        told_lines: dict[str, int] = {}
        for ln in told.get("lines", []):
            told_lines[ln["sku"]] = told_lines.get(ln["sku"], 0) + int(ln["quantity"])
        if order is None:
            wrong.append((oid, "not stored"))
        elif order.status == "cancelled":
            wrong.append((oid, "cancelled"))
        elif Decimal(str(told.get("total"))) != order.total:
            wrong.append((oid, f"told a total of {told.get('total')}, stored {order.total}"))
        elif told_lines != lines.get(oid, {}):
            wrong.append((oid, f"told lines {told_lines}, stored {lines.get(oid, {})}"))
        elif oid not in answers or answers[oid][0] not in (201, 202) or (answers[oid][1] or {}).get("id") != oid:
            wrong.append((oid, f"its checkout's stored answer is {answers.get(oid, (None,))[0]}, not this order"))
    _report(out, "acknowledged order not stored as told", wrong, lambda oid, why: f"{oid}: {why}")


def _holds(intent: Mapping[str, Any], refunded: Mapping[str, int]) -> int:
    """Minor units an intent holds: capturable while authorised; once captured, received less what its refunds
    took back (``refunded``: per intent, from its Refund objects)."""
    if intent.get("status") == "requires_capture":
        return int(intent.get("amount_capturable") or 0)
    if intent.get("status") == "succeeded":
        return int(intent.get("amount_received") or 0) - refunded.get(intent["id"], 0)
    return 0


def _provider(session: Session, out: OrderAudit, intents: list[Mapping[str, Any]], refunded: Mapping[str, int],
              provider: str) -> None:
    out.intents = len(intents)
    ours = {p.id: p for p in session.scalars(select(Payment).where(Payment.provider == provider))}
    keys = {cid: (cart, key) for cid, cart, key in session.execute(
        select(Checkout.id, Checkout.cart_id, Checkout.idempotency_key))}
    per_payment: dict[str, list[str]] = {}
    for it in intents:
        pid = (it.get("metadata") or {}).get("payment_id")
        per_payment.setdefault(pid or "", []).append(it["id"])
    _report(out, "several charges for one payment at the provider",
            sorted((pid, refs) for pid, refs in per_payment.items() if pid and len(refs) > 1),
            lambda pid, refs: f"payment {pid}: intents {', '.join(refs)}")
    wrong = []
    charges: dict[tuple[str, str], set[str]] = {}  # (cart, Idempotency-Key) -> intents holding money
    for it in intents:
        held = _holds(it, refunded)
        pid = (it.get("metadata") or {}).get("payment_id")
        p = ours.get(pid or "")
        if held and p is not None and p.ref in keys:
            charges.setdefault(keys[p.ref], set()).add(it["id"])
        if not held:
            if p is not None and p.provider_ref == it["id"] and p.status in _HOLDING:
                wrong.append((it["id"], f"payment {pid} is {p.status} here, the provider holds nothing "
                                        f"({it.get('status')})"))
            continue
        if p is None:
            wrong.append((it["id"], f"holds {held} minor units for a payment we do not know ({pid})"))
        elif p.provider_ref != it["id"]:
            wrong.append((it["id"], f"holds {held} minor units for payment {pid}, which knows intent {p.provider_ref}"))
        elif p.order_id is None:
            wrong.append((it["id"], f"holds {held} minor units for payment {pid} ({p.status}) of no order"))
        elif it.get("status") == "succeeded" and held != p.captured_minor - p.refunded_minor:
            wrong.append((it["id"], f"holds {held} minor units ({it.get('amount_received')} received, "
                                    f"{refunded.get(it['id'], 0)} refunded), payment {pid} says "
                                    f"{p.captured_minor - p.refunded_minor} ({p.captured_minor} captured, "
                                    f"{p.refunded_minor} refunded)"))
        elif it.get("status") == "requires_capture" and p.status != "authorised":
            wrong.append((it["id"], f"authorised at the provider, payment {pid} is {p.status}"))
    seen = {it["id"] for it in intents}
    for p in ours.values():
        if p.status in _HOLDING and (p.provider_ref not in seen):
            wrong.append((p.provider_ref or "-", f"payment {p.id} is {p.status}, the provider has no such intent"))
    _report(out, "provider and payments disagree", wrong, lambda ref, why: f"{ref}: {why}")
    tenders: dict[tuple[str, str], int] = {}
    for p in ours.values():
        if p.ref in keys:
            tenders[keys[p.ref]] = tenders.get(keys[p.ref], 0) + 1
    _report(out, "several charges for one Idempotency-Key",
            sorted((k, len(v), tenders.get(k, 0)) for k, v in charges.items() if len(v) > tenders.get(k, 0)),
            lambda k, n, t: f"cart {k[0]} key {k[1]!r}: {n} intents hold money for {t} tender(s)")


def _expanding(name: str):  # type: ignore[no-untyped-def]
    from sqlalchemy import bindparam

    return bindparam(name, expanding=True)
