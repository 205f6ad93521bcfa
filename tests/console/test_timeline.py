"""The 360 page's timeline data on both engines: one lane per channel (a store's own lane), in the order the person
first used them, each time as UTC text that Plotly reads (the database formats them: no datetime per event)."""

from __future__ import annotations

import re

from omnijourney.console.customers import timeline_lanes
from omnijourney.customers.models import Identity
from tests.factories import msg, send, source

UTC_TEXT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?$")


def test_lanes_per_channel_with_utc_times(db) -> None:
    web, pos = source(db, "web"), source(db, "store", store="S07")
    send(db, msg(web, "identify", user_id="u-1", traits={"email": "a@example.com"}),
         msg(web, "track", user_id="u-1", event="Product Viewed", minutes=1),
         msg(pos, "track", user_id="u-1", event="Store Visited", minutes=90.5),
         msg(web, "page", user_id="u-1", event="Home", minutes=120))
    with db.transaction(write=False) as s:
        customer = s.get(Identity, ("user_id", "u-1")).customer_id
        lanes = timeline_lanes(s, customer)
    assert [(lane["label"], lane["e"]) for lane in lanes] == [
        ("web", ["identify", "Product Viewed", "Home"]), ("store S07", ["Store Visited"])]
    times = [t for lane in lanes for t in lane["t"]]
    assert all(UTC_TEXT.match(t) for t in times), times
    assert lanes[1]["t"][0].startswith("2026-03-01 13:30:30")  # T0 + 90.5 minutes, in UTC
