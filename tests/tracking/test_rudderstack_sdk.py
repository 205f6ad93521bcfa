"""The real RudderStack Python SDK (rudder-sdk-python) against a live server: what it sends is stored and
resolved into profiles. Its batched upload and its errors run in tests/test_segment_sdk.py, beside the SDK it
is a fork of."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from rudderstack.analytics import Client

from omnijourney.db import Database
from omnijourney.tracking.models import Source
from omnijourney.tracking.sources import create_source
from tests.conftest import make_key
from tests.tracking.test_segment_sdk import stored


@pytest.fixture
def backend(db: Database) -> Source:
    with db.transaction() as session:
        return create_source(session, name="Call center backend", channel="call_center")


def sdk(host: str, write_key: str, **options: Any) -> Client:
    # max_retries=0: a refused call must fail the test at once rather than back off
    return Client(write_key=write_key, host=host, sync_mode=True, max_retries=0, **options)


def test_every_call_of_the_sdk_is_stored(live_server: str, db: Database, backend: Source) -> None:
    client = sdk(live_server, backend.write_key)  # gzip, the SDK's default
    plain = sdk(live_server, backend.write_key, gzip=False)
    when = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    sent = [
        client.identify("u-1", {"email": "Zoe@Shop.io", "plan": "gold"}, anonymous_id="dev-1", timestamp=when),
        client.track("u-1", "completed_order", {"order_id": "o-1", "total": 30.5}, timestamp=when),
        plain.page("u-1", "Catalog", "Shirts", {"path": "/shirts"}),
        client.screen(anonymous_id="dev-1", name="Cart", properties={"items": 2}),
        client.group("u-1", "acme", {"name": "Acme"}),
        client.alias("dev-1", "u-1"),
    ]
    assert all(ok for ok, _ in sent)
    ids = [msg["messageId"] for _, msg in sent]
    rows = stored(db)
    assert list(rows) == ids
    # The SDK's top-level "channel": "server" names its platform, not the brand's channel: the source decides.
    got = [(e.type, e.event, e.user_id, e.anonymous_id, e.previous_id, e.group_id, e.channel, e.source_id)
           for e in rows.values()]
    assert got == [
        ("identify", None, "u-1", "dev-1", None, None, "call_center", backend.id),
        ("track", "Order Completed", "u-1", None, None, None, "call_center", backend.id),
        ("page", "Shirts", "u-1", None, None, None, "call_center", backend.id),
        ("screen", "Cart", None, "dev-1", None, None, "call_center", backend.id),
        ("group", None, "u-1", None, None, "acme", "call_center", backend.id),
        ("alias", None, "u-1", None, "dev-1", None, "call_center", backend.id),
    ]
    identify, track, page, screen, group, _ = rows.values()
    assert identify.context["traits"] == {"email": "Zoe@Shop.io", "plan": "gold"}  # where RudderStack puts them
    assert identify.traits == {"email": "Zoe@Shop.io", "plan": "gold"}  # so the timeline's identify shows them
    assert track.properties == {"order_id": "o-1", "total": 30.5}
    assert page.properties == {"path": "/shirts", "category": "Catalog"}
    assert screen.properties == {"items": 2}
    assert group.traits == {"name": "Acme"}
    assert track.context["library"]["name"] == "analytics-python"  # RudderStack's SDK keeps Segment's name
    assert identify.original_timestamp == track.original_timestamp == when
    assert track.sent_at is not None and track.sent_at > when  # the SDK stamps sentAt when it posts

    # One person: the device, the user id and the email resolve to one profile carrying the traits.
    headers = {"Authorization": f"Bearer {make_key(db, 'customers:read')}"}
    [profile] = httpx.get(f"{live_server}/api/v1/customers", params={"email": "zoe@shop.io"}, headers=headers).json()
    assert profile["traits"] == {"email": "Zoe@Shop.io", "plan": "gold"}
    by_device = httpx.get(f"{live_server}/api/v1/customers", params={"anonymous_id": "dev-1"}, headers=headers)
    assert [p["id"] for p in by_device.json()] == [profile["id"]]
    timeline = httpx.get(f"{live_server}/api/v1/customers/{profile['id']}/timeline", headers=headers).json()
    assert sorted(i["message_id"] for i in timeline["items"]) == sorted(ids)
