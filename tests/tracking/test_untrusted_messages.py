"""What a first user tripped over (issue 13): messages of the wrong JSON types, text PostgreSQL cannot store,
clocks far off, and email or phone traits that are not one. Each is refused alone or stored with a warning, the
source's debugger shows it, and nothing answers 5xx."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omnijourney.config import Settings
from omnijourney.customers.identifiers import MAX_VALUE_LEN, invalid_contact_traits, normalise, normalise_email
from omnijourney.customers.models import Identity
from omnijourney.db import Database
from omnijourney.tracking.importing import ReadReport, read_messages
from omnijourney.tracking.models import Event, RejectedMessage, Source
from omnijourney.tracking.segment import (
    EARLIEST_EVENT_TIME,
    MAX_FUTURE_SKEW,
    SegmentError,
    SourceRef,
    encoded,
    load_json,
    parse_message,
)
from omnijourney.tracking.sources import create_source
from tests.conftest import make_key

SRC = SourceRef(id="src1", name="Web shop", channel="web")
REGION = Settings().identity.default_region


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode(),
            "Content-Type": "application/json"}


@pytest.fixture
def web(db: Database) -> Source:
    with db.transaction() as session:
        return create_source(session, name="Web shop", channel="web")


@pytest.fixture
def admin(db: Database) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(db, 'admin')}"}


def post(client: TestClient, path: str, body: Any, source: Source) -> Any:
    """POST ``body`` as an SDK writes it (ASCII escapes, so NUL and surrogate halves travel as \\uXXXX)."""
    return client.post(path, content=json.dumps(body).encode(), headers=basic(source.write_key))


def stored(db: Database) -> dict[str, Event]:
    with db.transaction(write=False) as session:
        return {e.message_id: e for e in session.scalars(select(Event).order_by(Event.id))}


def debugger_items(client: TestClient, admin: dict[str, str], source: Source) -> list[dict[str, Any]]:
    r = client.get(f"/api/v1/sources/{source.id}/rejections", params={"limit": 1000}, headers=admin)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def track(mid: str, **fields: Any) -> dict[str, Any]:
    return {"type": "track", "userId": "u1", "event": "Product Viewed", "messageId": mid, **fields}


# --- wrong JSON types ----------------------------------------------------------------------------------

WRONG_TYPES: list[tuple[Any, str, str | None]] = [  # message, code, field
    (track("type-object", type={"a": 1}), "invalid_type", "type"),
    (track("type-list", type=["track"]), "invalid_type", "type"),
    (track("event-number", event=5), "invalid_field", "event"),
    (track("props-list", properties=[1, 2]), "invalid_field", "properties"),
    (track("context-string", context="web"), "invalid_field", "context"),
    (track("integrations-list", integrations=["All"]), "invalid_field", "integrations"),
    ({**track("x"), "messageId": {"id": 1}}, "invalid_field", "messageId"),
    (track("user-object", userId={"id": 1}), "invalid_field", "userId"),
    (track("anon-list", anonymousId=["a"]), "invalid_field", "anonymousId"),
    (track("ts-object", timestamp={"t": 1}), "invalid_timestamp", "timestamp"),
    (track("ts-number", timestamp=1700000000), "invalid_timestamp", "timestamp"),
    (track("sent-object", sentAt={}), "invalid_timestamp", "sentAt"),
    ({"type": "identify", "userId": "u1", "messageId": "traits-string", "traits": "vip"}, "invalid_field", "traits"),
    ({"type": "page", "userId": "u1", "messageId": "name-object", "name": {"n": 1}}, "invalid_field", "name"),
    ({"type": "alias", "userId": "u1", "messageId": "prev-list", "previousId": ["a"]}, "invalid_field", "previousId"),
    ({"type": "group", "userId": "u1", "messageId": "group-true", "groupId": True}, "invalid_field", "groupId"),
    (track("store-object", context={"store": {"code": {"c": 1}}}), "invalid_field", "context.store.code"),
    ("a bare string", "invalid_json", None),
    (42, "invalid_json", None),
    (None, "invalid_json", None),
    ([track("in-a-list")], "invalid_json", None),
]


def test_a_batch_with_messages_of_the_wrong_json_types_stores_the_good_ones_and_lists_the_bad(
        client: TestClient, db: Database, web: Source, admin: dict[str, str]) -> None:
    batch = [track("good-1"), *[m for m, _, _ in WRONG_TYPES], track("good-2"),
             track("null-props", properties=None, context=None, traits=None)]  # null is absent: accepted
    r = post(client, "/v1/batch", {"batch": batch}, web)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["accepted"], answer["duplicates"]) == (3, 0)
    assert [(x["index"], x["code"], x.get("field")) for x in answer["rejected"]] == [
        (i, code, field) for i, (_, code, field) in enumerate(WRONG_TYPES, 1)]
    for item in answer["rejected"]:
        if item.get("field"):
            assert item["field"] in item["message"], item
    assert list(stored(db)) == ["good-1", "good-2", "null-props"]
    shown = debugger_items(client, admin, web)
    assert [(i["code"], i["field"], i["stored"]) for i in reversed(shown)] == [
        (code, field, False) for _, code, field in WRONG_TYPES]


def test_single_calls_of_the_wrong_json_types_are_400_naming_the_field(client: TestClient, db: Database,
                                                                       web: Source) -> None:
    for message, code, field in WRONG_TYPES:
        if not isinstance(message, dict) or message.get("type") in ({"a": 1}, ["track"]):
            path = "/v1/track"
        else:
            path = f"/v1/{message.get('type', 'track')}"
        r = post(client, path, message, web)
        assert r.status_code == 400, (message, r.text)
        assert (r.json()["code"], r.json().get("field")) == (code if isinstance(message, dict) else "invalid_json",
                                                             field), message
    assert stored(db) == {}


# --- text no database stores ---------------------------------------------------------------------------

UNSTORABLE: list[tuple[dict[str, Any], str, str]] = [  # message, code, field
    (track("nul-value", properties={"note": "a\u0000b"}), "invalid_character", "properties.note"),
    (track("nul-key", properties={"a\u0000b": 1}), "invalid_character", "properties.a\\u0000b"),
    (track("nul-deep", properties={"items": [{"sku": "A"}, {"sku": "B\u0000"}]}), "invalid_character",
     "properties.items[1].sku"),
    ({"type": "identify", "userId": "u1", "messageId": "nul-trait", "traits": {"name": "\u0000"}},
     "invalid_character", "traits.name"),
    (track("nul-context", context={"page": {"title": "x\u0000"}}), "invalid_character", "context.page.title"),
    (track("nul-user", userId="u\u0000"), "invalid_character", "userId"),
    (track("nul\u0000id"), "invalid_character", "messageId"),
    (track("surrogate", properties={"title": "cut emoji \ud83d"}), "invalid_character", "properties.title"),
    (track("surrogate-key", properties={"\udc00": 1}), "invalid_character", "properties.\\udc00"),
]


def test_nul_characters_and_surrogate_halves_refuse_their_message_only_naming_the_field(
        client: TestClient, db: Database, web: Source, admin: dict[str, str]) -> None:
    batch = [*[m for m, _, _ in UNSTORABLE], track("good", properties={"x": "a\\u0000 is fine as text"})]
    r = post(client, "/v1/batch", {"batch": batch}, web)
    assert r.status_code == 200, r.text
    assert [(x["code"], x["field"]) for x in r.json()["rejected"]] == [(c, f) for _, c, f in UNSTORABLE]
    assert r.json()["rejected"][6]["messageId"] == "nul\\u0000id"  # written as an escape
    assert list(stored(db)) == ["good"]
    # the debugger keeps them all, on PostgreSQL too (its text columns refuse NUL; json keeps the escape)
    shown = debugger_items(client, admin, web)
    assert [(i["code"], i["field"]) for i in reversed(shown)] == [(c, f) for _, c, f in UNSTORABLE]
    assert shown[-1]["sample"] == UNSTORABLE[0][0]

    for message, code, field in UNSTORABLE:
        r = post(client, "/v1/track" if message["type"] == "track" else "/v1/identify", message, web)
        assert (r.status_code, r.json()["code"], r.json()["field"]) == (400, code, field)


def test_a_batch_level_context_that_cannot_be_stored_refuses_the_batch_naming_the_field(
        client: TestClient, db: Database, web: Source) -> None:
    # it would be merged into every message: the batch is refused (400, not retried by the SDKs), never a 5xx
    r = post(client, "/v1/batch", {"batch": [track("m")], "context": {"page": {"title": "\u0000"}}}, web)
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (400, "invalid_character", "context.page.title")
    r = post(client, "/v1/batch", {"batch": [track("m")], "integrations": {"\ud800": True}}, web)
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (400, "invalid_character", "integrations.\\ud800")
    for key in ("\u0000", "\ud800", "k\u0000" * 10):  # a write key no source can have: not looked up
        r = client.post("/v1/batch", content=json.dumps({"batch": [track("m")], "writeKey": key}).encode())
        assert (r.status_code, r.json()["code"]) == (401, "invalid_write_key")
    assert stored(db) == {}


def test_numbers_beyond_a_float_refuse_their_message_only(client: TestClient, db: Database, web: Source) -> None:
    body = (b'{"batch": [{"type": "track", "userId": "u1", "event": "E", "messageId": "huge", '
            b'"properties": {"revenue": 1e400}}, {"type": "track", "userId": "u1", "event": "E", "messageId": "big", '
            b'"properties": {"n": 123456789012345678901234567890}}]}')
    r = client.post("/v1/batch", content=body, headers=basic(web.write_key))
    assert r.status_code == 200, r.text
    assert [(x["messageId"], x["code"], x["field"]) for x in r.json()["rejected"]] == [
        ("huge", "invalid_number", "properties.revenue")]
    assert stored(db)["big"].properties == {"n": 1.2345678901234568e29}  # as orjson reads it: a float
    # text that is not JSON at all is still refused whole
    r = client.post("/v1/batch", content=b'{"batch": [NaN]}', headers=basic(web.write_key))
    assert (r.status_code, r.json()["code"]) == (400, "invalid_json")


def test_load_json_reads_what_orjson_refuses_and_nothing_else() -> None:
    assert load_json(b'{"a": "\\ud83d"}') == {"a": "\ud83d"}
    assert repr(load_json(b"[1e400]")[0]) == "1e400"
    assert load_json(b"[18446744073709551616]") == [1.8446744073709552e19]
    for bad in (b"[NaN]", b"[Infinity]", b"{", b"[1,]", b"[" * 5000):
        with pytest.raises(ValueError):
            load_json(bad)
    with pytest.raises(SegmentError) as err:
        encoded({"properties": {"list": [{"deep": "\ud800"}]}}, "the message")
    assert (err.value.code, err.value.field) == ("invalid_character", "properties.list[0].deep")


# --- clocks --------------------------------------------------------------------------------------------

def test_a_future_or_zero_event_time_without_sent_at_is_replaced_by_received_at(
        client: TestClient, db: Database, web: Source, admin: dict[str, str]) -> None:
    now = datetime.now(UTC)
    batch = [
        track("future", timestamp="2099-12-31T23:59:59Z"),
        track("epoch", timestamp="1970-01-01T00:00:00Z"),
        track("history", timestamp="2015-06-01T10:00:00Z"),  # a backfill through the API: kept
        track("late", timestamp=(now - timedelta(days=3)).isoformat()),  # an offline queue: kept
        track("skewed", originalTimestamp="2099-01-01T00:00:00Z", sentAt="2099-01-01T00:00:05Z"),  # corrected
        track("sent-future", originalTimestamp="2099-01-01T00:00:00Z", sentAt=now.isoformat()),
    ]
    r = post(client, "/v1/batch", {"batch": batch}, web)
    assert r.status_code == 200 and r.json()["accepted"] == 6, r.text
    assert [(w["index"], w["messageId"], w["code"], w["field"]) for w in r.json()["warnings"]] == [
        (0, "future", "warning_timestamp_in_future", "timestamp"),
        (1, "epoch", "warning_timestamp_too_old", "timestamp"),
        (5, "sent-future", "warning_timestamp_in_future", "originalTimestamp"),
    ]
    rows = stored(db)
    for mid, sent in (("future", "2099-12-31T23:59:59"), ("epoch", "1970-01-01T00:00:00"),
                      ("sent-future", "2099-01-01T00:00:00")):
        e = rows[mid]
        assert e.timestamp == e.received_at, mid
        assert e.original_timestamp == datetime.fromisoformat(sent).replace(tzinfo=UTC), mid  # the sent value kept
    assert rows["history"].timestamp == datetime(2015, 6, 1, 10, tzinfo=UTC)
    assert rows["late"].timestamp < now - timedelta(days=2)
    assert abs(rows["skewed"].timestamp - rows["skewed"].received_at) < timedelta(seconds=10)

    # the profile's first and last seen are no longer 1970 and 2099
    customer = client.get(f"/api/v1/customers/{rows['future'].customer_id}", headers=admin).json()
    assert customer["first_seen"].startswith("2015-06-01")
    assert datetime.fromisoformat(customer["last_seen"]) < datetime.now(UTC) + timedelta(minutes=1)

    shown = [(i["messageId"], i["code"], i["stored"]) for i in debugger_items(client, admin, web)]
    assert sorted(shown) == [("epoch", "warning_timestamp_too_old", True),
                             ("future", "warning_timestamp_in_future", True),
                             ("sent-future", "warning_timestamp_in_future", True)]


def test_a_single_call_answers_its_warnings(client: TestClient, db: Database, web: Source) -> None:
    body = {"userId": "u1", "event": "E", "messageId": "one", "timestamp": "2099-01-01T00:00:00Z"}
    r = post(client, "/v1/track", body, web)
    assert r.status_code == 200
    assert [(w["code"], w["field"]) for w in r.json()["warnings"]] == [("warning_timestamp_in_future", "timestamp")]
    assert stored(db)["one"].timestamp == stored(db)["one"].received_at
    r = post(client, "/v1/track", {**body, "messageId": "two", "timestamp": datetime.now(UTC).isoformat()}, web)
    assert r.json() == {"success": True}


def test_the_clock_rule_bounds() -> None:
    received = datetime(2026, 3, 1, 12, tzinfo=UTC)
    warnings: list[Any] = []

    def at(ts: datetime) -> datetime:
        return parse_message(track("m", timestamp=ts.isoformat()), source=SRC, received_at=received,
                             warnings=warnings).timestamp

    assert at(received + MAX_FUTURE_SKEW) == received + MAX_FUTURE_SKEW  # a few minutes fast: kept
    assert at(received + MAX_FUTURE_SKEW + timedelta(seconds=1)) == received
    assert at(EARLIEST_EVENT_TIME) == EARLIEST_EVENT_TIME
    assert at(EARLIEST_EVENT_TIME - timedelta(seconds=1)) == received
    assert [w[0] for w in warnings] == ["warning_timestamp_in_future", "warning_timestamp_too_old"]
    # history files keep what they say; importing.py applies its own rule
    m = parse_message(track("m", timestamp="1970-01-01T00:00:00Z"), source=SRC, received_at=received,
                      warnings=warnings, history=True)
    assert m.timestamp == datetime(1970, 1, 1, tzinfo=UTC) and len(warnings) == 2


def test_an_import_keeps_history_and_refuses_only_impossible_times(tmp_path: Path) -> None:
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    lines = [
        track("old", timestamp="2012-05-01T08:00:00Z"),
        track("future-archived", timestamp="2099-01-01T00:00:00Z", receivedAt="2016-01-01T00:00:00Z"),
        track("epoch-archived", originalTimestamp="1970-01-01T00:00:00Z", receivedAt="2017-02-02T00:00:00Z"),
        track("future-bare", timestamp="2099-01-01T00:00:00Z"),
        track("epoch-bare", timestamp="1970-01-01T00:00:00Z", receivedAt="1970-01-01T00:00:01Z"),
    ]
    path = tmp_path / "history.ndjson"
    path.write_text("".join(json.dumps(m) + "\n" for m in lines))
    report = ReadReport()
    got = {m.message_id: m for m in read_messages([path], default_source=SRC, sources_by_key={}, now=now,
                                                   report=report, region=REGION)}
    assert got["old"].timestamp == datetime(2012, 5, 1, 8, tzinfo=UTC)
    assert got["future-archived"].timestamp == datetime(2016, 1, 1, tzinfo=UTC)
    assert got["future-archived"].original_timestamp == datetime(2099, 1, 1, tzinfo=UTC)
    assert got["epoch-archived"].timestamp == datetime(2017, 2, 2, tzinfo=UTC)
    assert [(w.line, w.code) for w in report.warnings] == [(2, "warning_timestamp_in_future"),
                                                           (3, "warning_timestamp_too_old")]
    assert [(r.line, r.code, r.field) for r in report.rejections] == [(4, "invalid_timestamp", "timestamp"),
                                                                      (5, "invalid_timestamp", "timestamp")]


# --- emails and phones that are not one --------------------------------------------------------------

def test_an_email_or_phone_that_is_not_one_stays_a_trait_but_never_identifies(
        client: TestClient, db: Database, web: Source, admin: dict[str, str]) -> None:
    batch = [
        {"type": "identify", "userId": "u-bad", "messageId": "bad", "traits": {"email": "not an email", "phone": "12"}},
        {"type": "identify", "userId": "u-ok", "messageId": "ok",
         "traits": {"email": "Ann@Example.com", "phone": "+33 6 12 34 56 78"}},
        {"type": "track", "anonymousId": "a1", "event": "E", "messageId": "ctx",
         "context": {"traits": {"email": "a@@b.c"},
                     "externalIds": [{"type": "phone", "id": "phone", "collection": "users"}]}},
    ]
    r = post(client, "/v1/batch", {"batch": batch}, web)
    assert r.status_code == 200 and r.json()["accepted"] == 3, r.text
    assert [(w["messageId"], w["code"], w["field"]) for w in r.json()["warnings"]] == [
        ("bad", "warning_invalid_email", "traits.email"),
        ("bad", "warning_invalid_phone", "traits.phone"),
        ("ctx", "warning_invalid_email", "context.traits.email"),
        ("ctx", "warning_invalid_phone", "context.externalIds[0].id"),
    ]
    rows = stored(db)
    assert rows["bad"].traits == {"email": "not an email", "phone": "12"}  # kept as sent
    with db.transaction(write=False) as session:
        identities = {(t, v) for t, v in session.execute(select(Identity.type, Identity.value))}
    assert identities == {("user_id", "u-bad"), ("user_id", "u-ok"), ("email", "ann@example.com"),
                          ("phone", "+33612345678"), ("anonymous_id", "a1")}
    customer = client.get(f"/api/v1/customers/{rows['bad'].customer_id}", headers=admin).json()
    assert customer["traits"]["email"] == "not an email"

    with db.transaction(write=False) as session:
        codes = sorted(session.scalars(select(RejectedMessage.code)))
    assert codes == ["warning_invalid_email", "warning_invalid_email", "warning_invalid_phone",
                     "warning_invalid_phone"]
    item = next(i for i in debugger_items(client, admin, web) if i["field"] == "traits.email")
    assert (item["messageId"], item["stored"], item["sample"]) == ("bad", True, batch[0])
    assert "not an email" in item["message"]


def test_emails_that_are_not_one() -> None:
    for good in ("ann@example.com", "A.B+tag@sub.example.co.uk", "jürgen@münchen.de", "o'brien@x.ie"):
        assert normalise_email(good) == good.lower(), good
    for bad in ("not an email", "a@@b.c", "a@b@c.d", "@x.io", "a@x", "a@.x.io", "a@x..io", "a@x.io.", "a b@x.io",
                "<a@x.io>", "a@x.io, b@x.io", "a;b@x.io", "a@[1.2.3.4]", "x" * 65 + "@x.io"):
        assert normalise_email(bad) is None, bad
    assert invalid_contact_traits({"email": None, "phone": ""}, {"traits": {"email": "  "}}, REGION) == []
    assert invalid_contact_traits({"email": {"a": 1}, "phone": 12}, None, REGION) == [
        ("traits.email", "email", {"a": 1}), ("traits.phone", "phone", 12)]


def test_identifier_values_never_exceed_their_column() -> None:
    # lower() and upper() may lengthen text, social ids gain a prefix: neither may fail a batch's INSERT
    assert normalise("loyalty_card", "ß" * 200, REGION) is None  # "SS" * 200
    assert normalise("facebook", "1" * MAX_VALUE_LEN, REGION) is None
    assert normalise("facebook", "1" * 300, REGION) == ("social", "facebook:" + "1" * 300)


def test_omni_events_import_lists_its_warnings(cli_database: Database, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from omnijourney.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["sources", "add", "Web shop", "--channel", "web"]).exit_code == 0
    lines = [
        {"type": "identify", "userId": "u1", "messageId": "m1", "timestamp": "2019-01-01T00:00:00Z",
         "traits": {"email": "not an email"}},
        track("m2", timestamp="2099-01-01T00:00:00Z", receivedAt="2019-01-02T00:00:00Z"),
    ]
    path = tmp_path / "history.ndjson"
    path.write_text("".join(json.dumps(m) + "\n" for m in lines))
    result = runner.invoke(app, ["events", "import", str(path), "--source", "Web shop"])
    assert result.exit_code == 0, result.output
    assert "2 stored" in result.output and "2 warning(s)" in result.output
    assert f"{path}:1 warning_invalid_email traits.email 'not an email' is not an email address" in result.output
    assert f"{path}:2 warning_timestamp_in_future" in result.output
    with cli_database.transaction(write=False) as session:
        times = {m: t for m, t in session.execute(select(Event.message_id, Event.timestamp))}
    assert times == {"m1": datetime(2019, 1, 1, tzinfo=UTC), "m2": datetime(2019, 1, 2, tzinfo=UTC)}
