"""The one registry of the platform's own event names.

What the platform itself writes on a customer's timeline (``tracking.timeline.record``) is named here, once, so
journeys and analytics can rely on the names. Where the Segment e-commerce spec (v2) has a name for the thing,
it is that name, spelled as Segment spells it, so tools built for Segment data read ours unchanged. Events that
channels send through the tracking API may use any name; these are only what we emit.
"""

from __future__ import annotations

# Segment e-commerce spec v2: browsing, cart, checkout, orders, coupons, wishlist, sharing, reviews
SEGMENT_ECOMMERCE = frozenset({
    "Products Searched", "Product List Viewed", "Product List Filtered", "Promotion Viewed", "Promotion Clicked",
    "Product Clicked", "Product Viewed", "Product Added", "Product Removed", "Cart Viewed", "Checkout Started",
    "Checkout Step Viewed", "Checkout Step Completed", "Payment Info Entered", "Order Updated", "Order Completed",
    "Order Refunded", "Order Cancelled", "Coupon Entered", "Coupon Applied", "Coupon Denied", "Coupon Removed",
    "Product Added to Wishlist", "Product Removed from Wishlist", "Wishlist Product Added to Cart", "Product Shared",
    "Cart Shared", "Product Reviewed",
})

# Ours, where the spec has no name: omnichannel carts, fulfilment, loyalty, the contact center, journeys, privacy
PLATFORM = frozenset({
    "Cart Merged",  # two carts of one person became one (login, profile merge)
    "Cart Handed Off",  # a handoff code was made to continue the cart elsewhere
    "Order Placed",  # an order exists (before payment or fulfilment)
    "Order Paid", "Order Allocated", "Order Picked", "Order Shipped", "Order Ready for Pickup", "Order Delivered",
    "Order Collected", "Order Returned", "Return Requested", "Pickup Released",
    "Refund Failed",  # a refund did not reach the customer (refused, or failed later: a closed card)
    "Points Earned", "Points Redeemed", "Points Expired", "Points Adjusted", "Tier Changed",
    "Conversation Started", "Conversation Assigned", "Conversation Closed", "Message Sent", "Message Received",
    "Survey Answered",
    "Journey Entered", "Journey Exited", "Journey Goal Reached",
    "Consent Changed", "Data Exported", "Data Erased",
})

REGISTRY: frozenset[str] = SEGMENT_ECOMMERCE | PLATFORM


def check(name: str) -> str:
    """``name`` if it is registered; ``ValueError`` otherwise (a typo would split a metric in two)."""
    if name not in REGISTRY:
        raise ValueError(f"event name {name!r} is not in tracking.names.REGISTRY")
    return name
