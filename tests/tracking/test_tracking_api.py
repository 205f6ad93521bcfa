"""The Segment HTTP Tracking API (/v1/*): paths, bodies, write keys, validation, limits, timestamps,
idempotency, CORS, the analytics.js settings and backpressure. Parsing and the spec table unit-tested too."""

from __future__ import annotations

import base64
import gzip
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omnijourney.api.app import create_app
from omnijourney.config import Settings
from omnijourney.core.errors import TooBusy
from omnijourney.db import Database
from omnijourney.tracking import segment_api
from omnijourney.tracking.models import Event, Source
from omnijourney.tracking.segment import (
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    SegmentError,
    SourceRef,
    decode_body,
    deep_merge,
    parse_batch,
    parse_message,
    write_key_from,
)
from omnijourney.tracking.sources import create_source
from omnijourney.tracking.spec import ECOMMERCE_EVENTS, LEGACY_NAMES, canonical_event_name, journey_stage

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SRC = SourceRef(id="src1", name="Web shop", channel="web")


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def new_source(db: Database, channel: str = "web", name: str = "Web shop", store: str | None = None) -> Source:
    with db.transaction() as session:
        return create_source(session, name=name, channel=channel, store_code=store)


@pytest.fixture
def web(db: Database) -> Source:
    return new_source(db)


def events(db: Database) -> list[Event]:
    with db.transaction(write=False) as session:
        return list(session.scalars(select(Event).order_by(Event.id)))


# --- paths ------------------------------------------------------------------------------------------

CALLS: dict[str, dict[str, Any]] = {
    "track": {"userId": "u1", "event": "Product Viewed", "properties": {"sku": "TEE-M"}},
    "identify": {"userId": "u1", "anonymousId": "a1", "traits": {"email": "zoe@shop.io"}},
    "page": {"anonymousId": "a1", "name": "Home", "properties": {"path": "/"}},
    "screen": {"anonymousId": "a1", "name": "Cart", "properties": {"items": 2}},
    "group": {"userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}},
    "alias": {"userId": "u1", "previousId": "a1"},
}
EXPECTED: dict[str, dict[str, Any]] = {
    "track": {"user_id": "u1", "anonymous_id": None, "event": "Product Viewed", "properties": {"sku": "TEE-M"},
              "traits": None},
    "identify": {"user_id": "u1", "anonymous_id": "a1", "event": None, "properties": {},
                 "traits": {"email": "zoe@shop.io"}},
    "page": {"user_id": None, "anonymous_id": "a1", "event": "Home", "properties": {"path": "/"}, "traits": None},
    "screen": {"user_id": None, "anonymous_id": "a1", "event": "Cart", "properties": {"items": 2}, "traits": None},
    "group": {"user_id": "u1", "anonymous_id": None, "event": None, "properties": {}, "traits": {"name": "Acme"}},
    "alias": {"user_id": "u1", "anonymous_id": None, "event": None, "properties": {}, "traits": None},
}


@pytest.mark.parametrize("kind", list(CALLS))
def test_each_path_and_its_one_letter_path_store_the_call(client: TestClient, db: Database, web: Source,
                                                          kind: str) -> None:
    for i, path in enumerate((f"/v1/{kind}", f"/v1/{kind[0]}")):
        r = client.post(path, json={**CALLS[kind], "messageId": f"m-{i}"}, headers=basic(web.write_key))
        assert (r.status_code, r.json()) == (200, {"success": True}), path
    rows = events(db)
    assert [(e.message_id, e.type, e.channel, e.source_id) for e in rows] == [
        ("m-0", kind, "web", web.id), ("m-1", kind, "web", web.id)]
    for e in rows:
        got = {k: getattr(e, k) for k in EXPECTED[kind]}
        assert got == EXPECTED[kind]
        assert e.context is None  # ingest stores an empty context as NULL
        assert e.store_code is None


def test_batch_paths_take_every_type(client: TestClient, db: Database, web: Source) -> None:
    batch = [{**body, "type": kind, "messageId": f"b-{kind}"} for kind, body in CALLS.items()]
    r = client.post("/v1/batch", json={"batch": batch[:3]}, headers=basic(web.write_key))
    assert r.json() == {"success": True, "accepted": 3, "duplicates": 0, "rejected": []}
    r = client.post("/v1/b", json={"batch": batch[3:]}, headers=basic(web.write_key))
    assert r.json() == {"success": True, "accepted": 3, "duplicates": 0, "rejected": []}
    r = client.post("/v1/import", json={"batch": []}, headers=basic(web.write_key))
    assert r.json() == {"success": True, "accepted": 0, "duplicates": 0, "rejected": []}
    assert [(e.message_id, e.type, e.event) for e in events(db)] == [
        ("b-track", "track", "Product Viewed"), ("b-identify", "identify", None), ("b-page", "page", "Home"),
        ("b-screen", "screen", "Cart"), ("b-group", "group", None), ("b-alias", "alias", None)]


# --- bodies and write keys ----------------------------------------------------------------------------

def test_gzip_batch(client: TestClient, db: Database, web: Source) -> None:
    body = gzip.compress(orjson.dumps({"batch": [{"type": "track", "userId": "u1", "event": "Cart Viewed",
                                                  "messageId": "g1"}]}))
    r = client.post("/v1/batch", content=body,
                    headers={**basic(web.write_key), "Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.json() == {"success": True, "accepted": 1, "duplicates": 0, "rejected": []}
    assert [(e.message_id, e.event) for e in events(db)] == [("g1", "Cart Viewed")]


def test_text_plain_body_with_write_key_in_the_body(client: TestClient, db: Database, web: Source) -> None:
    # what analytics.js sends: no Authorization header, so no CORS preflight
    body = orjson.dumps({"type": "page", "anonymousId": "ajs-1", "name": "Home", "writeKey": web.write_key,
                         "messageId": "ajs-m1"})
    r = client.post("/v1/p", content=body, headers={"Content-Type": "text/plain"})
    assert (r.status_code, r.json()) == (200, {"success": True})
    assert [(e.message_id, e.type, e.anonymous_id) for e in events(db)] == [("ajs-m1", "page", "ajs-1")]


def test_basic_auth_wins_and_a_broken_header_falls_back_to_the_body(client: TestClient, db: Database,
                                                                    web: Source) -> None:
    call = {"userId": "u1", "event": "E", "messageId": "m1"}
    r = client.post("/v1/t", json={**call, "writeKey": "wk_other"}, headers=basic(web.write_key))
    assert r.status_code == 200
    r = client.post("/v1/t", json={**call, "messageId": "m2", "writeKey": web.write_key},
                    headers={"Authorization": "Basic !!!"})
    assert r.status_code == 200
    assert [e.message_id for e in events(db)] == ["m1", "m2"]


def test_unknown_or_missing_write_key_is_401_and_stores_nothing(client: TestClient, db: Database,
                                                                web: Source) -> None:
    call = {"userId": "u1", "event": "E"}
    r = client.post("/v1/track", json=call, headers=basic("wk_nope"))
    assert (r.status_code, r.json()) == (401, {"code": "invalid_write_key",
                                               "message": "invalid write key: no enabled source has it"})
    r = client.post("/v1/batch", json={"batch": [{**call, "type": "track"}], "writeKey": "x" * 500})
    assert (r.status_code, r.json()["code"]) == (401, "invalid_write_key")
    r = client.post("/v1/track", json=call)
    assert (r.status_code, r.json()["code"]) == (401, "missing_write_key")
    assert "Basic auth" in r.json()["message"]
    with db.transaction() as session:  # a disabled source is refused (once the cache has expired)
        session.get(Source, web.id).enabled = False
    client.app.state.segment_sources.clear()
    assert client.post("/v1/track", json=call, headers=basic(web.write_key)).status_code == 401
    assert events(db) == []


def test_write_keys_are_looked_up_once_per_ttl(client: TestClient, db: Database, web: Source,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = segment_api.source_by_write_key
    monkeypatch.setattr(segment_api, "source_by_write_key", lambda s, k: calls.append(k) or real(s, k))
    for i in range(3):
        client.post("/v1/t", json={"userId": "u1", "event": "E", "messageId": f"m{i}"}, headers=basic(web.write_key))
    assert calls == [web.write_key]
    assert len(events(db)) == 3


def test_body_errors(client: TestClient, db: Database, web: Source) -> None:
    h = basic(web.write_key)
    cases: list[tuple[str, bytes, dict[str, str], str]] = [
        ("/v1/track", b"{not json", {}, "invalid_json"),
        ("/v1/track", b"[1, 2]", {}, "invalid_json"),
        ("/v1/batch", b"not gzip", {"Content-Encoding": "gzip"}, "invalid_gzip"),
        ("/v1/batch", gzip.compress(b'{"batch": []}')[:-6], {"Content-Encoding": "gzip"}, "invalid_gzip"),
        ("/v1/batch", b'{"batch": []}', {"Content-Encoding": "br"}, "unsupported_encoding"),
        ("/v1/batch", b'{"batch": {}}', {}, "invalid_batch"),
        ("/v1/batch", b'{"batch": [], "sentAt": "yesterday"}', {}, "invalid_timestamp"),
        ("/v1/batch", b'{"batch": [], "context": []}', {}, "invalid_field"),
    ]
    for path, body, headers, code in cases:
        r = client.post(path, content=body, headers={**h, **headers})
        assert r.status_code == 400, (body, r.text)
        assert r.json()["code"] == code, (body, r.text)
        assert r.json()["message"]
    assert events(db) == []


# --- validation ---------------------------------------------------------------------------------------

DEEP: Any = "bottom"
for _ in range(300):
    DEEP = {"a": DEEP}

INVALID: list[tuple[str, dict[str, Any], str, str | None]] = [
    ("track", {"event": "E"}, "missing_identity", "userId"),
    ("track", {"userId": " ", "anonymousId": "", "event": "E"}, "missing_identity", "userId"),
    ("track", {"userId": {"id": 1}, "event": "E"}, "invalid_field", "userId"),
    ("track", {"userId": True, "event": "E"}, "invalid_field", "userId"),
    ("track", {"userId": "u" * 201, "event": "E"}, "invalid_field", "userId"),
    ("track", {"userId": "u1"}, "missing_field", "event"),
    ("track", {"userId": "u1", "event": " "}, "missing_field", "event"),
    ("track", {"userId": "u1", "event": 5}, "invalid_field", "event"),
    ("track", {"userId": "u1", "event": "E" * 201}, "invalid_field", "event"),
    ("track", {"userId": "u1", "event": "E", "type": "page"}, "invalid_type", "type"),
    ("track", {"userId": "u1", "event": "E", "properties": [1]}, "invalid_field", "properties"),
    ("track", {"userId": "u1", "event": "E", "context": "web"}, "invalid_field", "context"),
    ("track", {"userId": "u1", "event": "E", "integrations": 1}, "invalid_field", "integrations"),
    ("track", {"userId": "u1", "event": "E", "timestamp": "1 March"}, "invalid_timestamp", "timestamp"),
    ("track", {"userId": "u1", "event": "E", "timestamp": 1700000000}, "invalid_timestamp", "timestamp"),
    ("track", {"userId": "u1", "event": "E", "originalTimestamp": "x"}, "invalid_timestamp", "originalTimestamp"),
    ("track", {"userId": "u1", "event": "E", "sentAt": "x"}, "invalid_timestamp", "sentAt"),
    ("track", {"userId": "u1", "event": "E", "context": {"store": {"code": "S" * 65}}}, "invalid_field",
     "context.store.code"),
    ("track", {"userId": "u1", "event": "E", "properties": {"note": "a\u0000b"}}, "invalid_character",
     "properties.note"),
    ("track", {"userId": "u1", "event": "E", "properties": {"list": [DEEP]}}, "too_deeply_nested", "properties"),
    ("identify", {"userId": "u1", "traits": "vip"}, "invalid_field", "traits"),
    ("page", {"userId": "u1", "name": ["Home"]}, "invalid_field", "name"),
    ("group", {"userId": "u1"}, "missing_field", "groupId"),
    ("group", {"userId": "u1", "groupId": "g1", "traits": 3}, "invalid_field", "traits"),
    ("alias", {"userId": "u1"}, "missing_field", "previousId"),
]


def test_invalid_single_calls_are_400_with_code_and_field(client: TestClient, db: Database, web: Source) -> None:
    for kind, body, code, field in INVALID:
        r = client.post(f"/v1/{kind}", json=body, headers=basic(web.write_key))
        assert r.status_code == 400, (body, r.text)
        got = r.json()
        assert (got["code"], got.get("field")) == (code, field), (body, got)
        if field:
            assert field in got["message"], got
    assert events(db) == []


def test_batch_keeps_good_messages_and_reports_bad_ones(client: TestClient, db: Database, web: Source) -> None:
    batch = [
        {"type": "track", "userId": "u1", "event": "Product Viewed", "messageId": "ok-1"},
        {"type": "track", "userId": "u1", "messageId": "bad-1"},
        {"type": "shout", "userId": "u1", "messageId": 7},
        "not a message",
        {"type": "identify", "anonymousId": "a1", "messageId": "ok-2"},
    ]
    r = client.post("/v1/batch", json={"batch": batch}, headers=basic(web.write_key))
    assert r.status_code == 200
    assert r.json() == {"success": True, "accepted": 2, "duplicates": 0, "rejected": [
        {"index": 1, "messageId": "bad-1", "code": "missing_field", "message": "a track call needs an event name",
         "field": "event"},
        {"index": 2, "messageId": "7", "code": "invalid_type",
         "message": "unknown type 'shout': one of track, identify, page, screen, group, alias", "field": "type"},
        {"index": 3, "messageId": None, "code": "invalid_json", "message": "a message must be a JSON object"},
    ]}
    assert [e.message_id for e in events(db)] == ["ok-1", "ok-2"]


def test_batch_messages_the_database_could_not_store_are_rejected_alone(client: TestClient, db: Database,
                                                                        web: Source) -> None:
    ok = {"type": "track", "userId": "u1", "event": "E"}
    batch = [{**ok, "messageId": "nul", "properties": {"x": "a\u0000"}},
             {**ok, "messageId": "deep", "context": DEEP},
             {**ok, "messageId": "ok", "properties": {"x": "a\\u0000 is fine"}}]
    r = client.post("/v1/batch", json={"batch": batch}, headers=basic(web.write_key))
    assert [(x["index"], x["messageId"], x["code"]) for x in r.json()["rejected"]] == [
        (0, "nul", "invalid_character"), (1, "deep", "too_deeply_nested")]
    assert [(e.message_id, e.properties) for e in events(db)] == [("ok", {"x": "a\\u0000 is fine"})]
    r = client.post("/v1/batch", json={"batch": [ok], "context": {"x": "\u0000"}}, headers=basic(web.write_key))
    assert (r.status_code, r.json()["code"]) == (400, "invalid_character")
    assert len(events(db)) == 1


def test_batch_of_only_bad_messages_is_200_with_every_rejection(client: TestClient, db: Database,
                                                                 web: Source) -> None:
    # as Segment answers; a 400 would make RudderStack's v1 mobile SDKs retry the batch forever
    r = client.post("/v1/batch", json={"batch": [{"type": "track", "userId": "u1", "messageId": "m1"}]},
                    headers=basic(web.write_key))
    assert (r.status_code, r.json()) == (200, {"success": True, "accepted": 0, "duplicates": 0, "rejected": [
        {"index": 0, "messageId": "m1", "code": "missing_field", "message": "a track call needs an event name",
         "field": "event"}]})
    r = client.post("/v1/batch", json={"batch": [{"userId": "u1"}, {"type": "alias", "userId": "u1"}]},
                    headers=basic(web.write_key))
    assert r.status_code == 200
    assert [(x["index"], x["code"]) for x in r.json()["rejected"]] == [(0, "invalid_type"), (1, "missing_field")]
    assert r.json()["rejected"][0]["message"].startswith("type is missing")
    assert events(db) == []


# --- limits -------------------------------------------------------------------------------------------

def test_oversized_message_batch_and_too_many_messages_are_400(client: TestClient, db: Database,
                                                               web: Source) -> None:
    h = basic(web.write_key)
    big = {"userId": "u1", "event": "E", "properties": {"blob": "x" * MAX_MESSAGE_BYTES}}
    r = client.post("/v1/track", json=big, headers=h)
    assert (r.status_code, r.json()["code"]) == (400, "message_too_large")
    assert "32 KB" in r.json()["message"]
    # the same, gzip-compressed to a few hundred bytes: the limit counts decompressed bytes
    r = client.post("/v1/track", content=gzip.compress(orjson.dumps(big)), headers={**h, "Content-Encoding": "gzip"})
    assert (r.status_code, r.json()["code"]) == (400, "message_too_large")

    one = {"type": "track", "userId": "u1", "event": "E", "properties": {"blob": "x" * 20_000}}
    r = client.post("/v1/batch", json={"batch": [one] * 26}, headers=h)  # ~520 KB
    assert (r.status_code, r.json()["code"]) == (400, "batch_too_large")
    assert "500 KB" in r.json()["message"]
    bomb = gzip.compress(b'{"batch": [' + b" " * (MAX_BATCH_BYTES * 4) + b"]}")
    r = client.post("/v1/batch", content=bomb, headers={**h, "Content-Encoding": "gzip"})
    assert (r.status_code, r.json()["code"]) == (400, "batch_too_large")

    tiny = {"type": "track", "userId": "u", "event": "E"}
    r = client.post("/v1/batch", json={"batch": [tiny] * 2501}, headers=h)
    assert (r.status_code, r.json()["code"]) == (400, "too_many_messages")
    assert "2500" in r.json()["message"]

    # within a batch an oversized message is rejected on its own
    r = client.post("/v1/batch", json={"batch": [{**big, "type": "track", "messageId": "big"},
                                                 {**tiny, "messageId": "ok"}]}, headers=h)
    assert r.status_code == 200
    assert r.json()["accepted"] == 1
    assert [(x["index"], x["messageId"], x["code"]) for x in r.json()["rejected"]] == [
        (0, "big", "message_too_large")]
    assert [e.message_id for e in events(db)] == ["ok"]


def test_batch_at_the_limits_is_accepted(client: TestClient, db: Database, web: Source) -> None:
    tiny = [{"type": "track", "anonymousId": "a", "event": "E", "messageId": f"m{i}"} for i in range(2500)]
    r = client.post("/v1/batch", json={"batch": tiny}, headers=basic(web.write_key))
    assert r.json() == {"success": True, "accepted": 2500, "duplicates": 0, "rejected": []}
    assert len(events(db)) == 2500


# --- timestamps, idempotency, merge, channel ----------------------------------------------------------

def test_clock_skew_is_corrected_with_sent_at(client: TestClient, db: Database, web: Source) -> None:
    h = basic(web.write_key)
    # the device clock is one hour behind: it says it sent at 12:00:10 what it did at 12:00:00
    client.post("/v1/track", json={"userId": "u1", "event": "E", "messageId": "skew",
                                   "timestamp": "2026-03-01T12:00:00.000Z", "sentAt": "2026-03-01T12:00:10Z"},
                headers=h)
    client.post("/v1/batch", json={"sentAt": "2026-03-01T12:00:10+00:00", "batch": [
        {"type": "track", "userId": "u1", "event": "E", "messageId": "batch-sent",
         "timestamp": "2026-03-01T13:00:00+01:00"},
        {"type": "track", "userId": "u1", "event": "E", "messageId": "own-sent",
         "originalTimestamp": "2026-03-01T12:00:00Z", "timestamp": "1999-01-01T00:00:00Z",
         "sentAt": "2026-03-01T12:00:05Z"},
    ]}, headers=h)
    client.post("/v1/track", json={"userId": "u1", "event": "E", "messageId": "no-sent",
                                   "timestamp": "2026-03-01T12:00:00Z"}, headers=h)
    client.post("/v1/track", json={"userId": "u1", "event": "E", "messageId": "no-ts",
                                   "sentAt": "2026-03-01T12:00:00Z"}, headers=h)
    rows = {e.message_id: e for e in events(db)}
    for mid, sent in (("skew", T0 + timedelta(seconds=10)), ("batch-sent", T0 + timedelta(seconds=10)),
                      ("own-sent", T0 + timedelta(seconds=5))):
        e = rows[mid]
        assert (e.original_timestamp, e.sent_at) == (T0, sent), mid
        assert e.timestamp == T0 + (e.received_at - sent), mid
        assert abs(e.received_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert (rows["no-sent"].timestamp, rows["no-sent"].original_timestamp, rows["no-sent"].sent_at) == (T0, T0, None)
    e = rows["no-ts"]
    assert (e.timestamp, e.original_timestamp, e.sent_at) == (e.received_at, None, T0)


def test_skew_correction_exact_values() -> None:
    received = datetime(2026, 3, 1, 13, 0, 0, 250_000, tzinfo=UTC)
    m = parse_message({"type": "track", "userId": "u", "event": "E", "timestamp": "2026-03-01T11:59:59.5Z",
                       "sentAt": "2026-03-01T12:00:00Z"}, source=SRC, received_at=received)
    assert m.original_timestamp == datetime(2026, 3, 1, 11, 59, 59, 500_000, tzinfo=UTC)
    assert m.sent_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert m.received_at == received
    assert m.timestamp == datetime(2026, 3, 1, 12, 59, 59, 750_000, tzinfo=UTC)


def test_a_retried_message_id_is_stored_once(client: TestClient, db: Database, web: Source) -> None:
    h = basic(web.write_key)
    call = {"userId": "u1", "event": "Order Completed", "messageId": "once"}
    assert client.post("/v1/track", json=call, headers=h).json() == {"success": True}
    assert client.post("/v1/track", json=call, headers=h).json() == {"success": True}
    r = client.post("/v1/batch", json={"batch": [{**call, "type": "track"}, {**call, "type": "track",
                                                                             "messageId": "new"}]}, headers=h)
    assert r.json() == {"success": True, "accepted": 1, "duplicates": 1, "rejected": []}
    assert [e.message_id for e in events(db)] == ["once", "new"]
    # without a messageId one is generated, so each call is its own event
    client.post("/v1/track", json={"userId": "u1", "event": "E"}, headers=h)
    generated = events(db)[-1].message_id
    assert generated.startswith("api-") and len(generated) == 36


def test_batch_context_and_integrations_are_merged(client: TestClient, db: Database, web: Source) -> None:
    body = {
        "context": {"library": {"name": "lib", "version": "1"}, "ip": "10.0.0.1", "app": {"build": "7"}},
        "integrations": {"All": False, "Omnijourney": {"tag": "b"}},
        "batch": [
            {"type": "track", "userId": "u1", "event": "E", "messageId": "m1",
             "context": {"library": {"version": "2"}, "ip": "10.0.0.2", "page": {"path": "/"}}},
            {"type": "track", "userId": "u1", "event": "E", "messageId": "m2"},
        ],
    }
    r = client.post("/v1/batch", json=body, headers=basic(web.write_key))
    assert r.json()["accepted"] == 2
    rows = events(db)
    assert rows[0].context == {"library": {"name": "lib", "version": "2"}, "ip": "10.0.0.2", "app": {"build": "7"},
                               "page": {"path": "/"}}
    assert rows[1].context == {"library": {"name": "lib", "version": "1"}, "ip": "10.0.0.1", "app": {"build": "7"}}

    parsed = parse_batch({**body, "batch": [{**body["batch"][0], "integrations": {"Omnijourney": {"x": 1}}},
                                            body["batch"][1]]}, source=SRC, received_at=T0)
    assert [m.integrations for m in parsed.messages] == [
        {"All": False, "Omnijourney": {"tag": "b", "x": 1}}, {"All": False, "Omnijourney": {"tag": "b"}}]
    # messages never share the batch's nested objects
    parsed.messages[0].context["app"]["build"] = "changed"
    assert parsed.messages[1].context["app"] == {"build": "7"}
    assert body["context"]["app"] == {"build": "7"}


def test_channel_store_and_event_names(client: TestClient, db: Database, web: Source) -> None:
    pos = new_source(db, "store", "Store 12 POS", store="S12")
    h = basic(web.write_key)
    calls = [
        (h, {"anonymousId": "a1", "event": "completed order", "messageId": "c1", "context": {"channel": "chat"}}),
        (h, {"anonymousId": "a1", "event": "product_viewed", "messageId": "c2", "channel": "mobile",
             "context": {"channel": "server"}}),
        (h, {"anonymousId": "a1", "event": "Viewed Product", "messageId": "c3",
             "context": {"store": {"code": " S7 "}}}),
        (basic(pos.write_key), {"anonymousId": 42, "event": "Scanned Loyalty Card", "messageId": "c4"}),
        (basic(pos.write_key), {"anonymousId": " p1 ", "event": "Order Completed", "messageId": "c5",
                                "context": {"store_code": "S9"}}),
    ]
    for headers, call in calls:
        assert client.post("/v1/track", json=call, headers=headers).status_code == 200
    assert [(e.message_id, e.channel, e.store_code, e.event, e.anonymous_id) for e in events(db)] == [
        ("c1", "chat", None, "Order Completed", "a1"),
        ("c2", "web", None, "Product Viewed", "a1"),
        ("c3", "web", "S7", "Product Viewed", "a1"),
        ("c4", "store", "S12", "Scanned Loyalty Card", "42"),
        ("c5", "store", "S9", "Order Completed", "p1"),
    ]


def test_page_category_is_kept_in_properties() -> None:
    m = parse_message({"type": "page", "userId": "u", "name": "Shirts", "category": "Catalog",
                       "properties": {"path": "/shirts"}}, source=SRC, received_at=T0)
    assert (m.event, m.properties) == ("Shirts", {"path": "/shirts", "category": "Catalog"})


# --- CORS, settings, OpenAPI ----------------------------------------------------------------------------

def test_cors_preflight_and_responses_on_tracking_paths_only(client: TestClient, web: Source) -> None:
    preflight = {"Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "Content-Type, Authorization"}
    for path in ("/v1/track", "/v1/t", "/v1/batch"):
        r = client.options(path, headers=preflight)
        assert r.status_code == 200, path
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
        assert {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")} == {
            "content-type", "authorization"}
    r = client.post("/v1/t", json={"userId": "u", "event": "E"},
                    headers={**basic(web.write_key), "Origin": "https://shop.example"})
    assert r.headers["access-control-allow-origin"] == "*"
    r = client.post("/v1/t", json={"userId": "u", "event": "E"}, headers={"Origin": "https://shop.example"})
    assert (r.status_code, r.headers["access-control-allow-origin"]) == (401, "*")
    r = client.options("/api/v1/sources", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    r = client.get("/health", headers={"Origin": "https://shop.example"})
    assert "access-control-allow-origin" not in r.headers


def test_settings_document_for_analytics_js(db: Database, web: Source) -> None:
    with TestClient(create_app(db, Settings(database_url="sqlite://"))) as c:
        r = c.get(f"/v1/projects/{web.write_key}/settings")
        assert r.status_code == 200
        doc = r.json()
        assert doc["integrations"]["Segment.io"]["apiKey"] == web.write_key
        assert doc["integrations"]["Segment.io"]["apiHost"] == "testserver/v1"
        assert doc["integrations"]["Segment.io"]["protocol"] == "http"
        assert set(doc) == {"integrations", "plan", "edgeFunction", "analyticsNextEnabled", "middlewareSettings",
                            "enabledMiddleware", "metrics", "legacyVideoPluginsEnabled", "remotePlugins"}
        assert list(doc["integrations"]) == ["Segment.io"]
        assert doc["analyticsNextEnabled"] is True
        assert (doc["edgeFunction"], doc["middlewareSettings"], doc["enabledMiddleware"], doc["remotePlugins"]) == (
            {}, {}, {}, [])
        assert doc["metrics"] == {"sampleRate": 0}
        r = c.get("/v1/projects/wk_nope/settings")
        assert (r.status_code, r.json()["code"]) == (404, "invalid_write_key")
    public = Settings(database_url="sqlite://", public_url="https://track.shop.example/omni/")
    with TestClient(create_app(db, public)) as c:
        seg = c.get(f"/v1/projects/{web.write_key}/settings").json()["integrations"]["Segment.io"]
        assert (seg["apiHost"], seg["protocol"]) == ("track.shop.example/omni/v1", "https")


def test_openapi_documents_the_long_paths_only(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    tracking = sorted(p for p in paths if p.startswith("/v1/"))
    assert tracking == ["/v1/alias", "/v1/batch", "/v1/group", "/v1/identify", "/v1/page",
                        "/v1/projects/{write_key}/settings", "/v1/screen", "/v1/track"]
    assert paths["/v1/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]["required"] == ["batch"]


# --- backpressure ---------------------------------------------------------------------------------------

def test_in_flight_limit_answers_429(db: Database, web: Source) -> None:
    settings = Settings(database_url="sqlite://", ingest_max_inflight=0, ingest_retry_after_s=3)
    with TestClient(create_app(db, settings)) as c:
        r = c.post("/v1/track", json={"userId": "u", "event": "E"}, headers=basic(web.write_key))
        assert r.status_code == 429
        assert r.headers["retry-after"] == "3"
        assert r.json() == {"code": "too_many_requests",
                            "message": "too many ingestion requests in flight; retry in 3 s"}
        assert c.app.state.segment_inflight == 0
    assert events(db) == []


def test_a_429_lets_a_script_of_another_origin_read_retry_after(client: TestClient, db: Database, web: Source,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # Browsers hide Retry-After from scripts of another origin unless the answer exposes it; analytics.js
    # then retried a busy server within a fraction of a second instead of the delay we asked for.
    shop = {"Origin": "https://shop.example"}

    def busy(*_: Any, **__: Any) -> None:
        raise TooBusy("ingestion is saturated; retry shortly", retry_after=2)

    monkeypatch.setattr(segment_api, "ingest", busy)
    for path in ("/v1/t", "/v1/b"):
        body = {"userId": "u", "event": "E"} if path == "/v1/t" else {"batch": [{"type": "track", "userId": "u",
                                                                                 "event": "E"}]}
        r = client.post(path, json=body, headers={**basic(web.write_key), **shop})
        assert (r.status_code, r.headers["retry-after"], r.headers["access-control-allow-origin"]) == (429, "2", "*")
        assert r.headers["access-control-expose-headers"].lower() == "retry-after", path
    monkeypatch.undo()
    settings = Settings(database_url="sqlite://", ingest_max_inflight=0, ingest_retry_after_s=3)
    with TestClient(create_app(db, settings)) as c:
        r = c.post("/v1/t", json={"userId": "u", "event": "E"}, headers={**basic(web.write_key), **shop})
        assert (r.status_code, r.headers["retry-after"]) == (429, "3")
        assert r.headers["access-control-expose-headers"].lower() == "retry-after"


def test_too_busy_database_answers_429(client: TestClient, db: Database, web: Source,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def busy(*_: Any, **__: Any) -> None:
        raise TooBusy("ingestion is saturated; retry shortly", retry_after=2)

    monkeypatch.setattr(segment_api, "ingest", busy)
    r = client.post("/v1/batch", json={"batch": [{"type": "track", "userId": "u", "event": "E"}]},
                    headers=basic(web.write_key))
    assert (r.status_code, r.headers["retry-after"]) == (429, "2")
    assert r.json() == {"code": "too_many_requests", "message": "ingestion is saturated; retry shortly"}
    assert client.app.state.segment_inflight == 0
    assert events(db) == []


# --- pure parsing ---------------------------------------------------------------------------------------

def test_write_key_from_headers_and_body() -> None:
    assert write_key_from(basic("wk_a")["Authorization"], {"writeKey": "wk_b"}) == "wk_a"
    assert write_key_from("basic " + base64.b64encode(b"wk_a").decode(), {}) == "wk_a"  # no colon
    assert write_key_from("Bearer tok", {"writeKey": " wk_b "}) == "wk_b"
    assert write_key_from(basic("")["Authorization"], {"writeKey": "wk_b"}) == "wk_b"
    assert write_key_from(None, {"writeKey": 5}) is None
    assert write_key_from(None, {}) is None


def test_decode_body_limits() -> None:
    two_members = gzip.compress(b'{"a": ') + gzip.compress(b"1}")
    assert decode_body(two_members, "GZIP", batch=False) == {"a": 1}
    with pytest.raises(SegmentError) as err:
        decode_body(b"{}" + b" " * MAX_MESSAGE_BYTES, None, batch=False)
    assert err.value.code == "message_too_large"
    assert decode_body(b"{}" + b" " * (MAX_BATCH_BYTES - 2), "identity", batch=True) == {}


def test_ids_are_coerced_and_stripped() -> None:
    m = parse_message({"type": "group", "userId": 12, "anonymousId": 1.5, "groupId": " g ", "messageId": 99},
                      source=SRC, received_at=T0)
    assert (m.user_id, m.anonymous_id, m.group_id, m.message_id, m.traits) == ("12", "1.5", "g", "99", {})
    m = parse_message({"type": "alias", "userId": "u", "previousId": 7}, source=SRC, received_at=T0)
    assert (m.previous_id, m.traits, m.properties, m.event) == ("7", None, {}, None)


def test_deep_merge() -> None:
    assert deep_merge({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"b": 3}, "d": {"x": 1}}) == {
        "a": {"b": 3, "c": 2}, "d": {"x": 1}}
    assert deep_merge({"a": {"b": 1}}, {"a": None}) == {"a": None}


def test_spec_names() -> None:
    assert len(ECOMMERCE_EVENTS) == 28
    for name in ECOMMERCE_EVENTS:
        assert canonical_event_name(name) == name
        assert canonical_event_name(name.upper().replace(" ", "_")) == name
    for legacy, name in LEGACY_NAMES.items():
        assert canonical_event_name(legacy.lower()) == name
    assert canonical_event_name("Completed Order") == "Order Completed"
    assert canonical_event_name("viewed  product") == "Product Viewed"
    assert canonical_event_name("Added Product") == "Product Added"
    assert canonical_event_name("product-added-to-wishlist") == "Product Added to Wishlist"
    assert canonical_event_name("Store Visited") == "Store Visited"
    assert canonical_event_name("store visited ") == "store visited "
    assert [journey_stage(n) for n in ("Product Viewed", "checkout started", "Order Refunded", "Custom")] == [
        "before", "during", "after", None]


def test_single_calls_arriving_during_a_write_are_stored_together(live_server: str, db: Database, web: Source,
                                                                  app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    groups: list[list[str]] = []
    release = threading.Event()
    real = segment_api._store

    def store(app_: Any, messages: list[Any]) -> tuple[int, int]:
        groups.append([m.message_id for m in messages])
        release.wait(10)  # the first write is slow: everything sent meanwhile queues for the next one
        return real(app_, messages)

    monkeypatch.setattr(segment_api, "_store", store)
    writer = app.state.segment_writer

    def post(i: int) -> int:
        return httpx.post(f"{live_server}/v1/track", json={"userId": "u1", "event": "E", "messageId": f"m{i:02}"},
                          headers=basic(web.write_key)).status_code

    with ThreadPoolExecutor(20) as pool:
        first = pool.submit(post, 0)
        while not groups:
            time.sleep(0.005)
        rest = [pool.submit(post, i) for i in range(1, 20)]
        while len(writer.pending) < 19:
            time.sleep(0.005)
        release.set()
        assert [f.result() for f in [first, *rest]] == [200] * 20
    assert [len(g) for g in groups] == [1, 19]
    assert sorted(e.message_id for e in events(db)) == [f"m{i:02}" for i in range(20)]


def test_too_busy_database_answers_429_to_single_calls(client: TestClient, db: Database, web: Source,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def busy(*_: Any, **__: Any) -> None:
        raise TooBusy("ingestion is saturated; retry shortly", retry_after=2)

    monkeypatch.setattr(segment_api, "ingest", busy)
    r = client.post("/v1/t", json={"userId": "u", "event": "E"}, headers=basic(web.write_key))
    assert (r.status_code, r.headers["retry-after"], r.json()["code"]) == (429, "2", "too_many_requests")
    monkeypatch.undo()
    assert client.post("/v1/t", json={"userId": "u", "event": "E"}, headers=basic(web.write_key)).status_code == 200
    assert len(events(db)) == 1
