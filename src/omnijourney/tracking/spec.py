"""The Segment e-commerce spec (v2): standard event names, their legacy v1 spellings, their journey stage.

Channels spell the same event in many ways ("Order Completed", "order completed", "order_completed",
v1's "Completed Order"). :func:`canonical_event_name` folds them to the spec's spelling so funnels and
journeys see one event, and keeps custom names exactly as sent.
"""

from __future__ import annotations

from typing import Literal

Stage = Literal["before", "during", "after"]

# Canonical v2 name -> stage of the journey (before, during or after the purchase).
ECOMMERCE_EVENTS: dict[str, Stage] = {
    # browsing and consideration
    "Products Searched": "before",
    "Product List Viewed": "before",
    "Product List Filtered": "before",
    "Promotion Viewed": "before",
    "Promotion Clicked": "before",
    "Product Clicked": "before",
    "Product Viewed": "before",
    "Product Shared": "before",
    "Product Added to Wishlist": "before",
    "Product Removed from Wishlist": "before",
    # cart, checkout and the purchase itself
    "Product Added": "during",
    "Product Removed": "during",
    "Wishlist Product Added to Cart": "during",
    "Cart Viewed": "during",
    "Cart Shared": "during",
    "Checkout Started": "during",
    "Checkout Step Viewed": "during",
    "Checkout Step Completed": "during",
    "Payment Info Entered": "during",
    "Coupon Entered": "during",
    "Coupon Applied": "during",
    "Coupon Denied": "during",
    "Coupon Removed": "during",
    "Order Completed": "during",
    # after the purchase
    "Order Updated": "after",
    "Order Refunded": "after",
    "Order Cancelled": "after",
    "Product Reviewed": "after",
}

# Spellings of the e-commerce spec v1 (verb first) that older integrations still send.
LEGACY_NAMES: dict[str, str] = {
    "Searched Products": "Products Searched",
    "Viewed Product Category": "Product List Viewed",
    "Viewed Product List": "Product List Viewed",
    "Filtered Product List": "Product List Filtered",
    "Filtered Products": "Product List Filtered",
    "Viewed Promotion": "Promotion Viewed",
    "Clicked Promotion": "Promotion Clicked",
    "Clicked Product": "Product Clicked",
    "Viewed Product": "Product Viewed",
    "Added Product": "Product Added",
    "Removed Product": "Product Removed",
    "Viewed Cart": "Cart Viewed",
    "Started Checkout": "Checkout Started",
    "Viewed Checkout Step": "Checkout Step Viewed",
    "Completed Checkout Step": "Checkout Step Completed",
    "Entered Payment Info": "Payment Info Entered",
    "Updated Order": "Order Updated",
    "Completed Order": "Order Completed",
    "Refunded Order": "Order Refunded",
    "Cancelled Order": "Order Cancelled",
    "Entered Coupon": "Coupon Entered",
    "Applied Coupon": "Coupon Applied",
    "Denied Coupon": "Coupon Denied",
    "Removed Coupon": "Coupon Removed",
    "Added Product to Wishlist": "Product Added to Wishlist",
    "Removed Product from Wishlist": "Product Removed from Wishlist",
    "Added Wishlist Product to Cart": "Wishlist Product Added to Cart",
    "Shared Product": "Product Shared",
    "Shared Cart": "Cart Shared",
    "Reviewed Product": "Product Reviewed",
}


def _fold(name: str) -> str:
    """Case, spaces, underscores and hyphens do not matter: "order_completed" == "Order  Completed"."""
    return name.lower().replace(" ", "").replace("_", "").replace("-", "").replace("\t", "")


_BY_FOLDED: dict[str, str] = {
    **{_fold(legacy): canonical for legacy, canonical in LEGACY_NAMES.items()},
    **{_fold(name): name for name in ECOMMERCE_EVENTS},
}


def canonical_event_name(name: str) -> str:
    """The spec's spelling of a standard e-commerce event; any other name is returned unchanged."""
    if name in ECOMMERCE_EVENTS:  # the common case: already canonical
        return name
    return _BY_FOLDED.get(_fold(name), name)


def journey_stage(name: str) -> Stage | None:
    """``"before"``, ``"during"`` or ``"after"`` the purchase for a standard event, None for custom ones."""
    return ECOMMERCE_EVENTS.get(canonical_event_name(name))
