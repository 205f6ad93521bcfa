"""The real analytics-python SDK (segment-analytics-python) against a live server: what it sends is stored,
a wrong write key surfaces as its APIError with our code and message, a refused message in our log. The batched
upload and the errors run for RudderStack's fork of it too (tests/test_rudderstack_sdk.py has its own calls)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
import rudderstack.analytics as rudderstack
import rudderstack.analytics.request as rudderstack_request
from segment.analytics import Client
from segment.analytics.request import APIError
from sqlalchemy import select

from omnijourney.db import Database
from omnijourney.tracking.models import Event, Source
from omnijourney.tracking.sources import create_source


@pytest.fixture
def app_source(db: Database) -> Source:
    with db.transaction() as session:
        return create_source(session, name="iOS app", channel="app")


def stored(db: Database) -> dict[str, Event]:
    with db.transaction(write=False) as session:
        return {e.message_id: e for e in session.scalars(select(Event).order_by(Event.id))}


def sdk(host: str, write_key: str, **options: Any) -> Client:
    # max_retries=0: a refused call must fail the test at once rather than back off
    return Client(write_key=write_key, host=host, sync_mode=True, max_retries=0, **options)


def test_every_call_of_the_sdk_is_stored(live_server: str, db: Database, app_source: Source) -> None:
    client = sdk(live_server, app_source.write_key)
    zipped = sdk(live_server, app_source.write_key, gzip=True)
    when = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    sent = [
        client.identify("u-1", {"email": "zoe@shop.io", "plan": "gold"}, anonymous_id="dev-1", timestamp=when),
        client.track("u-1", "Completed Order", {"order_id": "o-1", "total": 30.5}, timestamp=when),
        zipped.page("u-1", "Catalog", "Shirts", {"path": "/shirts"}),
        client.screen(anonymous_id="dev-1", name="Cart", properties={"items": 2}),
        client.group("u-1", "acme", {"name": "Acme"}),
        client.alias("dev-1", "u-1"),
    ]
    assert all(ok for ok, _ in sent)
    ids = [msg["messageId"] for _, msg in sent]
    rows = stored(db)
    assert list(rows) == ids
    got = [(e.type, e.event, e.user_id, e.anonymous_id, e.channel, e.source_id) for e in rows.values()]
    assert got == [
        ("identify", None, "u-1", "dev-1", "app", app_source.id),
        ("track", "Order Completed", "u-1", None, "app", app_source.id),
        ("page", "Shirts", "u-1", None, "app", app_source.id),
        ("screen", "Cart", None, "dev-1", "app", app_source.id),
        ("group", None, "u-1", None, "app", app_source.id),
        ("alias", None, "u-1", None, "app", app_source.id),
    ]
    identify, track, page, screen, group, _ = rows.values()
    assert identify.traits == {"email": "zoe@shop.io", "plan": "gold"}
    assert track.properties == {"order_id": "o-1", "total": 30.5}
    assert page.properties == {"path": "/shirts", "category": "Catalog"}
    assert screen.properties == {"items": 2}
    assert group.traits == {"name": "Acme"}
    assert track.context["library"]["name"] == "analytics-python"
    assert track.original_timestamp == when
    assert track.sent_at is not None and track.sent_at > when  # the SDK stamps sentAt when it posts


# RudderStack's Python SDK is a fork of this one: the same client, queue and errors, so both run these.
SDKS = {"segment": (Client, APIError), "rudderstack": (rudderstack.Client, rudderstack_request.APIError)}


@pytest.mark.parametrize("flavour", list(SDKS))
def test_batched_sdk_upload(live_server: str, db: Database, app_source: Source, flavour: str) -> None:
    client_class, _ = SDKS[flavour]
    client = client_class(write_key=app_source.write_key, host=live_server, upload_interval=0.05, upload_size=50,
                          max_retries=0)
    sent = [client.track(anonymous_id="dev-2", event="Product Viewed", properties={"i": i})[1] for i in range(120)]
    client.shutdown()  # flush the queue, then stop the consumer thread
    rows = stored(db)
    assert list(rows) == [m["messageId"] for m in sent]
    assert [e.properties["i"] for e in rows.values()] == list(range(120))


@pytest.mark.parametrize("flavour", list(SDKS))
def test_sdk_sees_our_error_code_and_message(live_server: str, db: Database, app_source: Source, flavour: str,
                                         caplog: pytest.LogCaptureFixture) -> None:
    client_class, api_error = SDKS[flavour]

    def sdk_of(write_key: str) -> Any:
        # max_retries=0: a refused call must fail the test at once rather than back off
        return client_class(write_key=write_key, host=live_server, sync_mode=True, max_retries=0)

    with pytest.raises(api_error) as err:
        sdk_of("wk_unknown").track("u-1", "Product Viewed")
    assert (err.value.status, err.value.code, err.value.message) == (401, "invalid_write_key",
                                                                     "invalid write key: no enabled source has it")
    # the SDK checks types, not content: an empty event name reaches us in a batch, which is answered 200 with
    # the rejection as Segment does (a 400 would block RudderStack's mobile queues); the server log names it
    with caplog.at_level(logging.WARNING, logger="omnijourney.tracking.segment_api"):
        ok, _ = sdk_of(app_source.write_key).track("u-1", " ")
    assert ok
    assert stored(db) == {}
    assert "1 of 1 messages rejected" in caplog.text and "missing_field a track call needs an event name" in caplog.text
