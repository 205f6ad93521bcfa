"""Any JSON in any field of any message: refused alone, never a 5xx, the rest of the batch stored (issue 13).

Hypothesis builds messages from a valid one by putting arbitrary JSON values in the fields the API reads
(and in made-up ones): objects, arrays, numbers beyond 64 bits, numbers no float holds (``1e400``), NUL
characters and halves of surrogate pairs in strings and keys, far-off timestamps, emails and phones that
are not one. The same messages go through ``/v1/batch`` (with valid messages beside them), the single-call
paths and ``omni events import``'s reader and bulk writer, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from omnijourney.config import Settings
from omnijourney.core.errors import OmniError
from omnijourney.db import Database
from omnijourney.tracking.bulk import import_messages
from omnijourney.tracking.importing import ReadReport, read_messages
from omnijourney.tracking.messages import MESSAGE_TYPES
from omnijourney.tracking.models import Event, Source
from omnijourney.tracking.segment import SegmentError, SourceRef, load_json, parse_batch
from omnijourney.tracking.service import prepare
from omnijourney.tracking.sources import create_source

IDENTITY = Settings().identity
SRC = SourceRef(id="src1", name="Web shop", channel="web")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# A number no 64-bit float holds cannot be a Python value that json.dumps writes: a marker string stands for
# it and is replaced in the JSON text (the alphabet below never produces \u0001).
_HUGE = "\u0001huge\u0001"
_HUGE_JSON = json.dumps(_HUGE)

# Keys the API reads, top level and in context; the rest of a message is carried as is.
FIELDS = ["type", "event", "name", "userId", "anonymousId", "messageId", "previousId", "groupId", "properties",
          "traits", "context", "integrations", "timestamp", "originalTimestamp", "sentAt", "receivedAt",
          "category", "writeKey", "channel"]
CONTEXT_FIELDS = ["traits", "device", "externalIds", "externalId", "channel", "store", "store_code", "library"]

text = st.text(st.one_of(st.characters(exclude_characters="\x01"),
                         st.sampled_from(["\x00", "\ud83d", "\udc00", "😀", "@", ".", " "])), max_size=12)
numbers = st.one_of(st.integers(min_value=-(2 ** 70), max_value=2 ** 70), st.just(_HUGE),
                    st.floats(allow_nan=False, allow_infinity=False))
timestamps = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.sampled_from(["1970-01-01T00:00:00Z", "2099-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
                     "2026-03-01T12:00:00+14:00", "2026-03-01", "not a date"]),
)
contacts = st.sampled_from(["ann@example.com", "not an email", "a@@b.c", "a@b..c", "+33612345678", "12", "phone",
                            "ß" * 200 + "@x.io", "0" * 400])
leaves = st.one_of(st.none(), st.booleans(), numbers, text, timestamps, contacts)
json_values = st.recursive(leaves, lambda children: st.one_of(
    st.lists(children, max_size=3), st.dictionaries(text, children, max_size=3)), max_leaves=6)


@st.composite
def messages(draw: st.DrawFn) -> Any:
    """A message: mostly a valid one with some fields replaced by arbitrary JSON, sometimes not an object."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)  # a bare string, number, null, list... as a message
    kind = draw(st.sampled_from(MESSAGE_TYPES))
    message: dict[str, Any] = {"type": kind, "userId": "u-fuzz", "event": "Product Viewed", "name": "Home",
                               "groupId": "g1", "previousId": "a-fuzz", "messageId": f"fz-{uuid.uuid4().hex}"}
    for key in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        message[key] = draw(json_values)
    if draw(st.booleans()):
        context = draw(st.dictionaries(st.sampled_from(CONTEXT_FIELDS), json_values, max_size=3))
        if draw(st.booleans()):
            context["traits"] = draw(st.dictionaries(st.sampled_from(["email", "phone", "loyalty_card"]),
                                                     json_values, max_size=3))
        if draw(st.booleans()):
            context["externalIds"] = draw(st.lists(st.fixed_dictionaries(
                {"type": st.sampled_from(["email", "phone", "whatsapp", "facebook", "crm"]), "id": json_values}),
                max_size=2))
        message["context"] = context
    if draw(st.booleans()):
        message["traits"] = draw(st.dictionaries(st.sampled_from(["email", "phone", "name"]), json_values,
                                                 max_size=3))
    message.update(draw(st.dictionaries(text, json_values, max_size=2)))  # made-up fields
    return message


def dumps(value: Any) -> bytes:
    """JSON text as an SDK would send it: ASCII escapes (so halves of surrogate pairs travel as \\udXXX)."""
    return json.dumps(value, ensure_ascii=True).replace(_HUGE_JSON, "1e400").encode()


def valid(n: int) -> list[dict[str, Any]]:
    return [{"type": "track", "anonymousId": f"a-{uuid.uuid4().hex[:8]}", "event": "Order Completed",
             "messageId": f"ok-{uuid.uuid4().hex}", "properties": {"revenue": 10}} for _ in range(n)]


FUZZ = settings(max_examples=25, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# --- parsing alone: many examples, no database ---------------------------------------------------------

@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages(), min_size=1, max_size=6))
def test_parsing_refuses_each_bad_message_alone_and_keeps_only_storable_ones(batch: list[Any]) -> None:
    good = valid(2)
    body = load_json(dumps({"batch": [*batch, *good]}))
    parsed = parse_batch(body, source=SRC, received_at=NOW, region=IDENTITY.default_region)
    assert len(parsed.messages) + len(parsed.rejected) == len(batch) + 2
    assert {m["messageId"] for m in good} <= {m.message_id for m in parsed.messages}
    for r in parsed.rejected:
        assert r.code and r.message
        if isinstance(body["batch"][r.index], dict) and r.code != "message_too_large":
            assert r.field, r  # the field at fault is named
    for w in parsed.warnings:
        assert w.code.startswith("warning_") and w.field
    # what is accepted can be encoded for either database (identifiers and rows are built outside the lock)
    for dialect in ("sqlite", "postgresql"):
        prepare(parsed.messages, IDENTITY, dialect)


# --- over HTTP, on both engines ---------------------------------------------------------------------------

@pytest.fixture
def web(db: Database) -> Source:
    with db.transaction() as session:
        return create_source(session, name="Web shop", channel="web")


def stored_ids(db: Database, ids: list[str]) -> set[str]:
    with db.transaction(write=False) as session:
        return set(session.scalars(select(Event.message_id).where(Event.message_id.in_(ids))))


def event_count(db: Database) -> int:
    with db.transaction(write=False) as session:
        return session.scalar(select(func.count()).select_from(Event)) or 0


@FUZZ
@given(batch=st.lists(messages(), min_size=1, max_size=5), where=st.integers(0, 5))
def test_a_batch_is_answered_200_and_its_valid_messages_stored_whatever_the_others_hold(
        client: TestClient, db: Database, web: Source, batch: list[Any], where: int) -> None:
    good = valid(2)
    body = [*batch[:where], good[0], *batch[where:], good[1]]
    before = event_count(db)
    auth = {"Authorization": "Basic " + base64.b64encode(f"{web.write_key}:".encode()).decode(),
            "Content-Type": "application/json"}
    r = client.post("/v1/batch", content=dumps({"batch": body}), headers=auth)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["accepted"] + answer["duplicates"] + len(answer["rejected"]) == len(body)
    assert all(x["code"] and x["message"] for x in answer["rejected"])
    assert stored_ids(db, [m["messageId"] for m in good]) == {m["messageId"] for m in good}
    assert event_count(db) == before + answer["accepted"]

    for message in batch:  # the same messages as single calls: 200, or 400 naming the fault
        kind = message.get("type") if isinstance(message, dict) else None
        path = kind if isinstance(kind, str) and kind in MESSAGE_TYPES else "track"
        r = client.post(f"/v1/{path}", content=dumps(message), headers=auth)
        assert r.status_code in (200, 400), r.text
        if r.status_code == 400:
            assert r.json()["code"] and r.json()["message"]


@FUZZ
@given(batch=st.lists(messages(), min_size=1, max_size=5))
def test_an_import_skips_bad_lines_and_stores_the_rest(db: Database, tmp_path_factory: pytest.TempPathFactory,
                                                       batch: list[Any]) -> None:
    with db.transaction() as session:
        source = create_source(session, name=f"Import {uuid.uuid4().hex[:8]}", channel="web")
    ref = SourceRef(source.id, source.name, source.channel)
    good = valid(2)
    path = tmp_path_factory.mktemp("fuzz") / "history.ndjson"
    lines = [dumps(m) for m in [good[0], *batch]] + [dumps({"batch": [*batch, good[1]]})]
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = ReadReport()

    def read() -> Iterator[Any]:
        yield from read_messages([path], default_source=ref, sources_by_key={}, now=NOW, report=report,
                                 region=IDENTITY.default_region)

    try:
        result = import_messages(db, read(), settings=IDENTITY, batch_size=4)
    except (SegmentError, OmniError) as exc:  # pragma: no cover - what the test is for
        pytest.fail(f"the import failed as a whole: {exc}")
    assert all(r.code and r.message for r in report.rejections)
    assert result.accepted + result.duplicates + report.rejected == report.read
    assert stored_ids(db, [m["messageId"] for m in good]) == {m["messageId"] for m in good}

