"""``omni events import``: a retailer's Segment / RudderStack history, backfilled from files."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from omnijourney.cli import app
from omnijourney.config import Settings
from omnijourney.customers.models import Customer
from omnijourney.customers.service import find
from omnijourney.db import Database
from omnijourney.tracking.models import Event, Source

SETTINGS = Settings().identity


@pytest.fixture
def database(cli_database: Database) -> Database:
    return cli_database


def add_source(name: str, channel: str) -> str:
    """Register a source through the CLI; its write key."""
    result = CliRunner().invoke(app, ["sources", "add", name, "--channel", channel])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


@pytest.fixture
def web_key(database: Database) -> str:
    return add_source("Web shop", "web")


def omni_import(*args: str | Path) -> Result:
    return CliRunner().invoke(app, ["events", "import", *map(str, args)])


def ndjson(path: Path, messages: list[Any], *, compress: bool = False) -> Path:
    data = "".join(json.dumps(m) + "\n" for m in messages).encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def customer_of(database: Database, id_type: str, value: str) -> str:
    with database.transaction(write=False) as s:
        found = find(s, id_type=id_type, value=value, settings=SETTINGS)
    assert len(found) == 1, (id_type, value, found)
    return found[0].id


def events_of(database: Database, customer_id: str) -> list[Event]:
    with database.transaction(write=False) as s:
        return list(s.scalars(select(Event).where(Event.customer_id == customer_id).order_by(Event.timestamp)))


def count(database: Database, model: type) -> int:
    with database.transaction(write=False) as s:
        return s.scalar(select(func.count()).select_from(model))


def ts(day: int, hour: int = 12) -> str:
    return f"2024-03-{day:02d}T{hour:02d}:00:00.000Z"


HISTORY = [
    {"type": "identify", "messageId": "h-1", "userId": "u-ann", "traits": {"email": "Ann@Example.com"},
     "timestamp": ts(1), "sentAt": ts(1), "receivedAt": ts(1)},
    {"type": "page", "messageId": "h-2", "userId": "u-ann", "name": "Home", "timestamp": ts(2)},
    {"type": "track", "messageId": "h-3", "userId": "u-ann", "event": "Order Completed",
     "properties": {"total": 59.9}, "timestamp": ts(3)},
    {"type": "identify", "messageId": "h-4", "userId": "u-bob", "traits": {"email": "bob@example.com"},
     "timestamp": ts(4)},
    # as a client SDK sent it: the device clock was 5 s behind Segment's when it was delivered
    {"type": "track", "messageId": "h-5", "userId": "u-bob", "event": "Product Viewed",
     "originalTimestamp": ts(5), "sentAt": ts(5, 13), "receivedAt": "2024-03-05T13:00:05.000Z"},
]


def test_ndjson_history_becomes_profiles_with_their_events_at_their_historical_times(
        database: Database, web_key: str, tmp_path: Path) -> None:
    before = datetime.now(UTC)
    result = omni_import(ndjson(tmp_path / "history.ndjson", HISTORY), "--source", "Web shop")

    assert result.exit_code == 0, result.output
    assert "read 5 messages from 1 file(s): 5 stored, 0 duplicates (stored before), 0 rejected" in result.output
    ann, bob = customer_of(database, "email", "ann@example.com"), customer_of(database, "email", "bob@example.com")
    assert ann != bob and customer_of(database, "user_id", "u-ann") == ann
    ann_events, bob_events = events_of(database, ann), events_of(database, bob)
    assert [(e.type, e.event) for e in ann_events] == [("identify", None), ("page", "Home"),
                                                       ("track", "Order Completed")]
    assert [e.timestamp for e in ann_events] == [datetime(2024, 3, d, 12, tzinfo=UTC) for d in (1, 2, 3)]
    assert {e.channel for e in ann_events + bob_events} == {"web"}
    assert all(e.received_at >= before - timedelta(seconds=1) for e in ann_events + bob_events)  # import time
    # the skew measured at the original delivery, not months of "skew" up to the import
    assert bob_events[-1].timestamp == datetime(2024, 3, 5, 12, 0, 5, tzinfo=UTC)


def test_anonymous_visits_and_the_later_identify_end_on_one_profile(
        database: Database, web_key: str, tmp_path: Path) -> None:
    visits = [
        {"type": "page", "anonymousId": "anon-7", "name": "Dresses", "timestamp": ts(1)},
        {"type": "track", "anonymousId": "anon-7", "event": "Product Added", "timestamp": ts(1, 13)},
        {"type": "identify", "anonymousId": "anon-7", "userId": "u-cleo",
         "traits": {"email": "cleo@example.com"}, "timestamp": ts(2)},
        {"type": "track", "userId": "u-cleo", "event": "Order Completed", "timestamp": ts(3)},
    ]
    result = omni_import(ndjson(tmp_path / "visits.ndjson", visits), "--source", "Web shop")

    assert result.exit_code == 0, result.output
    cleo = customer_of(database, "email", "cleo@example.com")
    assert customer_of(database, "anonymous_id", "anon-7") == cleo
    assert [e.event for e in events_of(database, cleo)] == ["Dresses", "Product Added", None, "Order Completed"]
    with database.transaction(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Customer).where(Customer.merged_into.is_(None))) == 1


def test_gzip_compressed_ndjson_is_read(database: Database, web_key: str, tmp_path: Path) -> None:
    path = ndjson(tmp_path / "segment-logs-part-0000.gz", HISTORY, compress=True)

    result = omni_import(path, "--source", "Web shop")

    assert result.exit_code == 0, result.output
    assert "5 stored" in result.output
    assert len(events_of(database, customer_of(database, "user_id", "u-ann"))) == 3


def test_batch_object_file_merges_the_batch_context_into_each_message(
        database: Database, web_key: str, tmp_path: Path) -> None:
    add_source("iOS app", "app")
    body = {
        "batch": [
            {"type": "screen", "anonymousId": "dev-1", "name": "Home", "timestamp": ts(1)},
            {"type": "track", "anonymousId": "dev-1", "event": "Product Viewed", "timestamp": ts(2),
             "context": {"locale": "de-DE", "app": {"version": "3.1"}}},
        ],
        "context": {"locale": "fr-FR", "app": {"name": "Shop", "version": "3.0"}},
        "sentAt": ts(2, 13),
    }
    path = tmp_path / "batch.json"
    path.write_text(json.dumps(body, indent=2))  # pretty-printed: one document, not NDJSON

    result = omni_import(path, "--source", "iOS app")

    assert result.exit_code == 0, result.output
    screen, track = events_of(database, customer_of(database, "anonymous_id", "dev-1"))
    assert screen.context == {"locale": "fr-FR", "app": {"name": "Shop", "version": "3.0"}}
    assert track.context == {"locale": "de-DE", "app": {"name": "Shop", "version": "3.1"}}  # its own win
    assert (screen.channel, track.channel) == ("app", "app")


def test_a_directory_of_array_and_gzip_files_is_imported(database: Database, web_key: str, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    (folder / "2024-03").mkdir(parents=True)
    (folder / "2024-03" / "a.json").write_text(json.dumps(HISTORY[:3]))  # a JSON array, on one line
    ndjson(folder / "2024-03" / "b.gz", HISTORY[3:], compress=True)

    result = omni_import(folder, "--source", "Web shop")

    assert result.exit_code == 0, result.output
    assert "read 5 messages from 2 file(s): 5 stored" in result.output


def test_running_the_same_import_again_stores_nothing_twice(database: Database, web_key: str, tmp_path: Path) -> None:
    no_ids = [{k: v for k, v in m.items() if k != "messageId"} for m in HISTORY]  # ids derived from content
    path = ndjson(tmp_path / "history.ndjson", no_ids)
    assert omni_import(path, "--source", "Web shop").exit_code == 0
    events, customers = count(database, Event), count(database, Customer)

    again = omni_import(path, "--source", "Web shop")

    assert again.exit_code == 0, again.output
    assert "read 5 messages from 1 file(s): 0 stored, 5 duplicates (stored before), 0 rejected" in again.output
    assert (count(database, Event), count(database, Customer)) == (events, customers) == (5, 2)


def test_bad_lines_are_reported_by_line_and_the_good_ones_stored(
        database: Database, web_key: str, tmp_path: Path) -> None:
    path = tmp_path / "mixed.ndjson"
    path.write_text("\n".join([
        json.dumps({"type": "track", "messageId": "ok-1", "userId": "u-1", "event": "A", "timestamp": ts(1)}),
        '{"type": "track", "userId": "u-1", "event": ',
        json.dumps({"type": "track", "messageId": "who", "event": "B", "timestamp": ts(1)}),
        json.dumps({"type": "track", "messageId": "big", "userId": "u-1", "event": "C",
                    "properties": {"blob": "x" * 40_000}}),
        "",
        json.dumps({"type": "track", "messageId": "ok-2", "userId": "u-1", "event": "D", "timestamp": ts(2)}),
    ]) + "\n")

    result = omni_import(path, "--source", "Web shop")

    assert result.exit_code == 1, result.output
    assert "read 5 messages from 1 file(s): 2 stored, 0 duplicates (stored before), 3 rejected" in result.output
    assert f"{path}:2 invalid_json" in result.output
    assert f"{path}:3 missing_identity" in result.output
    assert f"{path}:4 message_too_large" in result.output
    assert [e.event for e in events_of(database, customer_of(database, "user_id", "u-1"))] == ["A", "D"]


def test_write_key_on_each_line_routes_it_to_its_source(database: Database, web_key: str, tmp_path: Path) -> None:
    store_key = add_source("Call center", "call_center")
    lines = [
        {"writeKey": web_key, "type": "track", "userId": "u-dan", "event": "Product Viewed", "timestamp": ts(1)},
        {"writeKey": store_key, "type": "track", "userId": "u-dan", "event": "Order Completed", "timestamp": ts(2)},
        {"writeKey": "wk_from_segment", "type": "track", "userId": "u-dan", "event": "Lost", "timestamp": ts(3)},
        {"type": "track", "userId": "u-dan", "event": "Keyless", "timestamp": ts(4)},
    ]
    path = ndjson(tmp_path / "keys.ndjson", lines)

    result = omni_import(path)

    assert result.exit_code == 1, result.output
    assert f"{path}:3 invalid_write_key" in result.output
    assert f"{path}:4 missing_write_key" in result.output
    with database.transaction(write=False) as s:
        names = dict(s.execute(select(Source.id, Source.name)).all())
    events = events_of(database, customer_of(database, "user_id", "u-dan"))
    assert [(e.event, names[e.source_id], e.channel) for e in events] == [
        ("Product Viewed", "Web shop", "web"), ("Order Completed", "Call center", "call_center")]


def test_unknown_source_is_a_usage_error(database: Database, web_key: str, tmp_path: Path) -> None:
    result = omni_import(ndjson(tmp_path / "history.ndjson", HISTORY), "--source", "Web shop EU")

    assert result.exit_code == 2
    assert "unknown source 'Web shop EU'; registered sources: 'Web shop'" in result.output
    assert count(database, Event) == 0


def test_missing_file_is_a_usage_error(database: Database, web_key: str, tmp_path: Path) -> None:
    result = omni_import(tmp_path / "nowhere.ndjson", "--source", "Web shop")

    assert result.exit_code == 2
    assert "does not exist" in result.output
