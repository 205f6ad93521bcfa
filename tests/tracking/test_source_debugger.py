"""A source's debugger: the messages the tracking API refused for it (``rejections``, kept per source, capped)
and the events it sent lately (``events``, within a window of the latest ids). On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from omnijourney.customers.resolution import IDENTITY_LOCK
from omnijourney.db import Database
from omnijourney.tracking import debugger, segment_api
from omnijourney.tracking.models import Event, RejectedMessage, Source
from omnijourney.tracking.sources import create_source
from tests.conftest import make_key


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def new_source(db: Database, name: str, channel: str = "web", store: str | None = None) -> Source:
    with db.transaction() as session:
        return create_source(session, name=name, channel=channel, store_code=store)


@pytest.fixture
def web(db: Database) -> Source:
    return new_source(db, "Web shop")


@pytest.fixture
def reader(db: Database) -> dict[str, str]:
    """An engineer's key: sources:read and nothing else."""
    return {"Authorization": f"Bearer {make_key(db, 'sources:read', name='engineer')}"}


def track(n: int | str, **fields: Any) -> dict[str, Any]:
    return {"type": "track", "userId": "u1", "event": "Product Viewed", "messageId": f"m-{n}", **fields}


def rejections(client: TestClient, headers: dict[str, str], source: Source, **params: Any) -> dict[str, Any]:
    r = client.get(f"/api/v1/sources/{source.id}/rejections", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def events_page(client: TestClient, headers: dict[str, str], source: Source, **params: Any) -> dict[str, Any]:
    r = client.get(f"/api/v1/sources/{source.id}/events", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def stored_rejections(db: Database) -> int:
    with db.transaction(write=False) as session:
        return session.scalar(select(func.count()).select_from(RejectedMessage)) or 0


# --- rejections ---------------------------------------------------------------------------------------

def test_a_batch_shows_its_refused_messages_in_rejections_and_its_good_ones_in_events(
        client: TestClient, db: Database, web: Source, reader: dict[str, str]) -> None:
    no_event = {"type": "track", "userId": "u1", "messageId": "bad-1", "properties": {"sku": "TEE-M"}}
    no_identity = {"type": "page", "name": "Home", "messageId": "bad-2"}
    batch = [track(1), no_event, "not a message", track(2, event="Cart Viewed"), no_identity]
    before = datetime.now(UTC)
    r = client.post("/v1/batch", json={"batch": batch}, headers=basic(web.write_key))
    after = datetime.now(UTC)
    # the answer is what it was before the debugger existed
    assert (r.status_code, r.json()) == (200, {"success": True, "accepted": 2, "duplicates": 0, "rejected": [
        {"index": 1, "messageId": "bad-1", "code": "missing_field", "message": "a track call needs an event name",
         "field": "event"},
        {"index": 2, "messageId": None, "code": "invalid_json", "message": "a message must be a JSON object"},
        {"index": 4, "messageId": "bad-2", "code": "missing_identity",
         "message": "a message needs a userId or an anonymousId", "field": "userId"},
    ]})

    page = rejections(client, reader, web)
    assert (page["source_id"], page["kept"]) == (web.id, 1000)
    items = page["items"]
    assert [(i["messageId"], i["code"], i["field"], i["sample"]) for i in items] == [  # newest first
        ("bad-2", "missing_identity", "userId", no_identity),
        (None, "invalid_json", None, '"not a message"'),  # not an object: its JSON text
        ("bad-1", "missing_field", "event", no_event),
    ]
    assert items[2]["message"] == "a track call needs an event name"
    for item in items:
        at = datetime.fromisoformat(item["at"])
        assert before - timedelta(seconds=1) <= at <= after + timedelta(seconds=1)

    page = events_page(client, reader, web)
    assert page["window"] == debugger.EVENTS_WINDOW and page["next_cursor"] is None
    assert [(e["message_id"], e["event"], e["channel"], e["user_id"]) for e in page["items"]] == [
        ("m-2", "Cart Viewed", "web", "u1"), ("m-1", "Product Viewed", "web", "u1")]
    assert page["items"][0]["customer_id"] is not None


def test_a_refused_single_call_is_recorded(client: TestClient, db: Database, web: Source,
                                           reader: dict[str, str]) -> None:
    body = {"userId": "u1", "messageId": "single-1", "properties": {"total": 12}}
    r = client.post("/v1/track", json=body, headers=basic(web.write_key))
    assert (r.status_code, r.json()) == (400, {"code": "missing_field", "message": "a track call needs an event name",
                                               "field": "event"})
    r = client.post("/v1/i", json={"traits": {"email": "x@y.z"}}, headers=basic(web.write_key))
    assert r.status_code == 400
    items = rejections(client, reader, web)["items"]
    assert [(i["messageId"], i["code"], i["field"], i["sample"]) for i in items] == [
        (None, "missing_identity", "userId", {"traits": {"email": "x@y.z"}}),
        ("single-1", "missing_field", "event", body),
    ]


def test_a_batch_refused_whole_is_recorded_once_its_source_is_known(client: TestClient, web: Source,
                                                                     reader: dict[str, str]) -> None:
    r = client.post("/v1/batch", json={"batch": {"type": "track"}}, headers=basic(web.write_key))
    assert (r.status_code, r.json()["code"]) == (400, "invalid_batch")
    [item] = rejections(client, reader, web)["items"]
    assert (item["messageId"], item["code"], item["field"], item["sample"]) == (
        None, "invalid_batch", "batch", {"batch": {"type": "track"}})


def test_a_big_message_is_kept_as_its_text_cut_to_2_kb(client: TestClient, web: Source,
                                                       reader: dict[str, str]) -> None:
    big = {"type": "track", "userId": "u1", "messageId": "big", "properties": {"notes": "x" * 5000}}
    r = client.post("/v1/batch", json={"batch": [big]}, headers=basic(web.write_key))
    assert r.json()["rejected"][0]["code"] == "missing_field"
    [item] = rejections(client, reader, web)["items"]
    sample = item["sample"]
    assert isinstance(sample, str) and len(sample.encode()) <= debugger.SAMPLE_MAX_BYTES
    assert sample.startswith('{"type":"track","userId":"u1","messageId":"big"') and sample.endswith("(cut)")


def test_only_the_sources_own_rejections_are_shown_and_unknown_keys_record_nothing(
        client: TestClient, db: Database, web: Source, reader: dict[str, str]) -> None:
    pos = new_source(db, "Store 12 POS", channel="store", store="S12")
    client.post("/v1/batch", json={"batch": [track("w", event=None)]}, headers=basic(web.write_key))
    client.post("/v1/batch", json={"batch": [track("p", userId=None)]}, headers=basic(pos.write_key))
    r = client.post("/v1/batch", json={"batch": [track("x", event=None)]}, headers=basic("wk_nobody"))
    assert r.status_code == 401
    r = client.post("/v1/track", json={"userId": "u1"}, headers=basic("wk_nobody"))
    assert r.status_code == 401
    assert [i["messageId"] for i in rejections(client, reader, web)["items"]] == ["m-w"]
    assert [i["messageId"] for i in rejections(client, reader, pos)["items"]] == ["m-p"]
    assert stored_rejections(db) == 2  # nothing for the unknown key: it belongs to no source


def test_only_the_latest_rejections_are_kept_per_source(client: TestClient, db: Database, web: Source,
                                                        reader: dict[str, str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(debugger, "REJECTIONS_KEPT", 5)
    app_source = new_source(db, "iOS app", channel="app")
    client.post("/v1/batch", json={"batch": [track(f"app-{i}", event=None) for i in range(3)]},
                headers=basic(app_source.write_key))
    for start in (0, 4):  # 4 then 4 more: the first 3 go
        r = client.post("/v1/batch", json={"batch": [track(i, event=None) for i in range(start, start + 4)]},
                        headers=basic(web.write_key))
        assert len(r.json()["rejected"]) == 4
    client.post("/v1/track", json={"userId": "u1", "messageId": "m-8"}, headers=basic(web.write_key))
    page = rejections(client, reader, web, limit=1000)
    assert page["kept"] == 5
    assert [i["messageId"] for i in page["items"]] == ["m-8", "m-7", "m-6", "m-5", "m-4"]
    assert [i["messageId"] for i in rejections(client, reader, app_source)["items"]] == [  # not pruned by web's
        "m-app-2", "m-app-1", "m-app-0"]
    assert stored_rejections(db) == 8
    assert [i["messageId"] for i in rejections(client, reader, web, limit=2)["items"]] == ["m-8", "m-7"]


def test_a_failure_to_record_rejections_changes_nothing_for_the_client(
        client: TestClient, db: Database, web: Source, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    batch = [track(1), track(2, event=None), track(3)]
    expected = {"success": True, "accepted": 2, "duplicates": 0, "rejected": [
        {"index": 1, "messageId": "m-2", "code": "missing_field", "message": "a track call needs an event name",
         "field": "event"}]}

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(debugger, "record_rejections", broken)
    with caplog.at_level(logging.ERROR, logger=segment_api.log.name):
        r = client.post("/v1/batch", json={"batch": batch}, headers=basic(web.write_key))
        assert (r.status_code, r.json()) == (200, expected)
        r = client.post("/v1/track", json={"userId": "u1"}, headers=basic(web.write_key))
        assert (r.status_code, r.json()["code"]) == (400, "missing_field")
    assert caplog.text.count("could not record 1 rejection(s) of source") == 2 and "disk full" in caplog.text
    with db.transaction(write=False) as session:
        assert list(session.scalars(select(Event.message_id).order_by(Event.id))) == ["m-1", "m-3"]
    assert stored_rejections(db) == 0


def test_the_happy_path_records_nothing(client: TestClient, db: Database, web: Source,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def called(*args: Any) -> None:
        raise AssertionError("rejections recorded for a request without any")

    monkeypatch.setattr(segment_api, "_record_rejections", called)
    r = client.post("/v1/batch", json={"batch": [track(1), track(2)]}, headers=basic(web.write_key))
    assert r.json() == {"success": True, "accepted": 2, "duplicates": 0, "rejected": []}
    r = client.post("/v1/track", json=track(3), headers=basic(web.write_key))
    assert r.status_code == 200
    assert stored_rejections(db) == 0


def test_a_batch_with_only_refused_messages_does_not_wait_for_the_identity_lock(
        client: TestClient, db: Database, web: Source, reader: dict[str, str]) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite has no identity lock of its own: every writer takes the database lock")
    holding, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with db.transaction() as session:  # as a long import slice would
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": IDENTITY_LOCK})
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert holding.wait(10)
        r = client.post("/v1/batch", json={"batch": [track(1, event=None)]}, headers=basic(web.write_key))
        assert (r.status_code, r.json()["accepted"]) == (200, 0)
        assert [i["messageId"] for i in rejections(client, reader, web)["items"]] == ["m-1"]
    finally:
        release.set()
        holder.join(30)


# --- access -------------------------------------------------------------------------------------------

def test_an_unknown_source_is_404(client: TestClient, reader: dict[str, str]) -> None:
    for path in ("", "/rejections", "/events"):
        r = client.get(f"/api/v1/sources/nope{path}", headers=reader)
        assert (r.status_code, r.json()) == (404, {"code": "not_found", "message": "no source has the id 'nope'",
                                                   "field": "source_id"}), path


def test_the_debugger_needs_sources_read(client: TestClient, db: Database, web: Source) -> None:
    analyst = {"Authorization": f"Bearer {make_key(db, 'customers:read', name='analyst')}"}
    for path in ("", "/rejections", "/events"):
        assert client.get(f"/api/v1/sources/{web.id}{path}", headers=analyst).status_code == 403, path
        assert client.get(f"/api/v1/sources/{web.id}{path}").status_code == 401, path
    writer = {"Authorization": f"Bearer {make_key(db, 'sources:write', name='integrator')}"}  # write implies read
    assert client.get(f"/api/v1/sources/{web.id}/rejections", headers=writer).status_code == 200


def test_one_source_as_in_the_list(client: TestClient, web: Source, reader: dict[str, str]) -> None:
    listed = client.get("/api/v1/sources", headers=reader).json()
    r = client.get(f"/api/v1/sources/{web.id}", headers=reader)
    assert r.status_code == 200 and [r.json()] == listed


# --- events -------------------------------------------------------------------------------------------

def test_events_are_paged_newest_first_with_a_cursor(client: TestClient, db: Database, web: Source,
                                                     reader: dict[str, str]) -> None:
    pos = new_source(db, "Store 12 POS", channel="store", store="S12")
    for i in range(7):  # interleaved with another source's events, which are not shown
        client.post("/v1/track", json=track(i), headers=basic(web.write_key))
        client.post("/v1/track", json=track(f"pos-{i}"), headers=basic(pos.write_key))
    seen, cursor, pages = [], None, 0
    while True:
        page = events_page(client, reader, web, limit=3, **({"cursor": cursor} if cursor else {}))
        seen += [e["message_id"] for e in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert (pages, seen) == (3, [f"m-{i}" for i in reversed(range(7))])
    [first] = events_page(client, reader, pos, limit=1)["items"]
    assert (first["message_id"], first["channel"], first["store"]) == ("m-pos-6", "store", "S12")
    assert set(first) == {"message_id", "type", "event", "channel", "store", "user_id", "anonymous_id",
                          "customer_id", "timestamp", "received_at", "properties", "traits", "context"}
    r = client.get(f"/api/v1/sources/{web.id}/events", params={"cursor": "bm9wZQ"}, headers=reader)
    assert (r.status_code, r.json()["field"]) == (422, "cursor")


def test_events_look_only_at_the_latest_window(client: TestClient, db: Database, web: Source,
                                               reader: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(debugger, "EVENTS_WINDOW", 5)
    app_source = new_source(db, "iOS app", channel="app")
    assert events_page(client, reader, web) == {"source_id": web.id, "window": 5, "items": [], "next_cursor": None}
    client.post("/v1/batch", json={"batch": [track(f"w{i}") for i in range(3)]}, headers=basic(web.write_key))
    client.post("/v1/batch", json={"batch": [track(f"a{i}") for i in range(10)]},
                headers=basic(app_source.write_key))
    # the web shop's 3 events are older than the latest 5 ids: an empty page, no cursor
    assert events_page(client, reader, web) == {"source_id": web.id, "window": 5, "items": [], "next_cursor": None}
    page = events_page(client, reader, app_source, limit=2)
    assert [e["message_id"] for e in page["items"]] == ["m-a9", "m-a8"]
    # newer events do not move a window already being paged through
    client.post("/v1/batch", json={"batch": [track(f"a{i}") for i in range(10, 20)]},
                headers=basic(app_source.write_key))
    seen = []
    while page["next_cursor"]:
        page = events_page(client, reader, app_source, limit=2, cursor=page["next_cursor"])
        seen += [e["message_id"] for e in page["items"]]
    assert seen == ["m-a7", "m-a6", "m-a5"]
    assert [e["message_id"] for e in events_page(client, reader, app_source, limit=10)["items"]] == [
        f"m-a{i}" for i in range(19, 14, -1)]


def test_the_events_window_is_in_the_openapi_description(client: TestClient) -> None:
    op = client.get("/openapi.json").json()["paths"]["/api/v1/sources/{source_id}/events"]["get"]
    assert "latest 100,000 events" in op["description"]


def test_messages_no_database_could_store_are_still_kept(client: TestClient, web: Source,
                                                         reader: dict[str, str]) -> None:
    nul = track("nul", properties={"note": "a\u0000b"})
    deep: Any = "leaf"
    for _ in range(300):
        deep = [deep]
    nested = track("deep", properties={"deep": deep})
    r = client.post("/v1/batch", json={"batch": [nul, nested]}, headers=basic(web.write_key))
    assert [x["code"] for x in r.json()["rejected"]] == ["invalid_character", "too_deeply_nested"]
    deep_item, nul_item = rejections(client, reader, web)["items"]
    assert (nul_item["messageId"], nul_item["sample"]) == ("m-nul", nul)  # json (not jsonb) keeps \u0000
    sample = deep_item["sample"]  # JSON cannot encode it: a bounded rendering
    assert deep_item["messageId"] == "m-deep" and isinstance(sample, str)
    assert "'messageId': 'm-deep'" in sample and len(sample.encode()) <= debugger.SAMPLE_MAX_BYTES
