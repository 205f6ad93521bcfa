"""Voucher codes on a cart, checked by the pricing engine before the cart changes.

A code that can never apply now (unknown, disabled, expired, exhausted, the customer's limit reached, its
promotion inactive, its amounts in another currency than the cart's) is refused with the engine's reason code,
naming the field ``code``, and the cart stays as it was. A code whose
promotion merely does not match the basket yet (a threshold not reached) is kept: it applies once it does,
and until then the cart's ``problems`` say why.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from omnijourney.carts import service
from omnijourney.carts.quote import quote_cart
from omnijourney.core.errors import Conflict, Invalid, NotFound, OmniError

MAX_VOUCHERS = 5
# reason codes of a voucher that cannot be used at all -> the error entering it gets (as pricing's strict quote)
_REFUSED: dict[str, tuple[type[OmniError], str]] = {
    "voucher_inactive": (Invalid, "voucher_inactive"), "promotion_inactive": (Invalid, "voucher_inactive"),
    "voucher_expired": (Invalid, "voucher_expired"), "outside_window": (Invalid, "voucher_expired"),
    "voucher_currency": (Invalid, "voucher_currency"), "voucher_exhausted": (Conflict, "voucher_exhausted"),
    "voucher_customer_limit": (Conflict, "voucher_customer_limit"),
}


def normalise(code: str) -> str:
    return code.strip().upper()


def add_voucher(session: Session, *, cart_id: str, code: str, channel_code: str,
                expected_version: int | None = None) -> service.CartView:
    """Enter a voucher code; records "Coupon Applied" (Segment e-commerce spec) in the channel."""
    code = normalise(code)
    if not code:
        raise Invalid("a voucher code is needed", field="code")
    cart, channel = service.lock_for_change(session, cart_id=cart_id, channel_code=channel_code,
                                            expected_version=expected_version)
    if code in cart.voucher_codes:
        raise Conflict(f"voucher {code} is on the cart already", field="code", code="voucher_duplicate")
    if len(cart.voucher_codes) >= MAX_VOUCHERS:
        raise Invalid(f"a cart takes at most {MAX_VOUCHERS} vouchers", field="code", code="too_many_vouchers")
    # the trial quote, before anything is written: the cart only changes if the code is good
    view = service.view_of(session, cart=cart, channel_code=channel.code)
    try:
        trial = quote_cart(session, currency=cart.currency, channel_code=channel.code, customer_id=cart.customer_id,
                           lines=[(ln.sku, ln.quantity) for ln in view.lines], items=view.items,
                           voucher_codes=[*cart.voucher_codes, code], strict_vouchers=True)
    except OmniError as exc:
        if (exc.field or "").startswith("vouchers["):
            raise type(exc)(exc.message, field="code", code=exc.code)
        raise
    if not trial.priced:
        raise Invalid("vouchers cannot be checked: the cart has no priced line", field="code",
                      code="voucher_unchecked")
    result = next((v for v in trial.vouchers if v["code"] == code), None)
    if result is None:
        raise NotFound(f"unknown voucher {code}", field="code", code="unknown_voucher")
    refusal = _REFUSED.get(result["reason_code"]) if result["status"] != "applied" else None
    if refusal is not None:
        error, reason_code = refusal
        raise error(result["reason"], field="code", code=reason_code)
    cart.voucher_codes = [*cart.voucher_codes, code]
    service.touch(session, cart=cart, channel=channel)
    view = service.view_of(session, cart=cart, channel_code=channel.code)
    service.record_event(session, cart=cart, channel=channel, event="Coupon Applied",
                         properties={"coupon_id": code, "currency": cart.currency,
                                     "discount": str(view.quote.discount) if view.quote.discount is not None
                                     else None})
    return view


def remove_voucher(session: Session, *, cart_id: str, code: str, channel_code: str,
                   expected_version: int | None = None) -> service.CartView:
    """Take a voucher code off the cart; records "Coupon Removed"."""
    code = normalise(code)
    cart, channel = service.lock_for_change(session, cart_id=cart_id, channel_code=channel_code,
                                            expected_version=expected_version)
    if code not in cart.voucher_codes:
        raise NotFound(f"voucher {code} is not on the cart", field="code")
    cart.voucher_codes = [c for c in cart.voucher_codes if c != code]
    service.touch(session, cart=cart, channel=channel)
    service.record_event(session, cart=cart, channel=channel, event="Coupon Removed",
                         properties={"coupon_id": code, "currency": cart.currency})
    return service.view_of(session, cart=cart, channel_code=channel.code)
