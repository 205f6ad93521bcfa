"""One registry of the platform's own event names: the timeline refuses any other."""

from __future__ import annotations

import pytest

from omnijourney.db import Database
from omnijourney.tracking import names, timeline


def test_the_timeline_refuses_an_unregistered_name(db: Database) -> None:
    with db.transaction() as s:
        with pytest.raises(ValueError, match=r"not in tracking\.names\.REGISTRY"):
            timeline.record(s, customer_id=None, event="Order placed", channel="web")  # a typo splits a metric
        timeline.record(s, customer_id=None, event="Order Placed", channel="web")


def test_spec_names_are_spelled_as_segment_spells_them() -> None:
    # the e-commerce spec's own names, so that tools built for Segment data read ours unchanged
    for name in ("Product Added", "Product Removed", "Cart Viewed", "Checkout Started", "Order Completed",
                 "Order Refunded", "Order Cancelled", "Coupon Applied", "Coupon Removed"):
        assert name in names.SEGMENT_ECOMMERCE
    assert not names.SEGMENT_ECOMMERCE & names.PLATFORM
