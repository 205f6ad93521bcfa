"""The mobile SDKs against our tracking API, as the requests they really send.

No Android or iOS runs here, so each test builds the request the way the SDK's own source builds it: the
path, the headers, the body envelope (often written by hand into a file on the device) and each event's
fields with their quirks. Every payload names the repository and file it follows. What is asserted is what
the app's owner would notice: the events are stored with the right type, name, people and channel, the
device clock's skew is corrected, the device id links the visitor's profile, and a batch we refuse gets an
answer the SDK handles (it drops the batch rather than retrying it forever).

How each SDK treats our answers, from the same sources:

=========================== ==================== ================================ ============================
SDK                         400 (unreadable)     429 (busy, ``Retry-After``)      401 (unknown write key)
=========================== ==================== ================================ ============================
analytics-kotlin            drops the batch      pauses the pipeline for          drops the batch
                                                 Retry-After (at most 300 s),
                                                 retries (100 times, then drops)
analytics-swift             drops the batch      keeps it, retries next flush     keeps it, retries each flush
analytics-android (classic) drops the batch      keeps it, retries next flush     drops the batch
analytics-ios (classic)     drops the batch      keeps it, retries next flush     drops the batch
rudder-sdk-kotlin / -swift  drops the batch      retries with backoff             stops the SDK
rudder-sdk-android / -ios   retries, forever     retries (iOS with backoff)       stops (our body says
(v1)                        (so a batch we can                                    "invalid write key")
                            read is answered 200)
=========================== ==================== ================================ ============================
"""

from __future__ import annotations

import base64
import gzip
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omnijourney.api.app import create_app
from omnijourney.config import Settings
from omnijourney.customers.models import Identity
from omnijourney.db import Database
from omnijourney.tracking.models import Event, Source
from omnijourney.tracking.segment import MAX_BATCH_BYTES, SegmentError, SourceRef, decode_body, parse_message
from omnijourney.tracking.sources import create_source

# The device clock runs behind: every SDK stamps events and sentAt with it, and the server corrects by the
# difference between sentAt and its own clock when the batch arrives.
SKEW = timedelta(hours=-2, minutes=-13, seconds=-7)
AGO = timedelta(seconds=40)  # how long before the upload the first event happened


@pytest.fixture
def app_source(db: Database) -> Source:
    with db.transaction() as session:
        return create_source(session, name="Shop app", channel="app")


def stored(db: Database) -> list[Event]:
    with db.transaction(write=False) as session:
        return list(session.scalars(select(Event).order_by(Event.id)))


def identities(db: Database) -> dict[tuple[str, str], str]:
    """(type, value) -> customer id."""
    with db.transaction(write=False) as session:
        return {(i.type, i.value): i.customer_id for i in session.scalars(select(Identity))}


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def device_clock(ago: timedelta = AGO) -> tuple[datetime, datetime, datetime]:
    """(when the event really happened, the device's stamp for it, the device's stamp at upload), all
    on millisecond boundaries as the SDKs' clocks are."""
    real_now = datetime.now(UTC)
    sent = real_now + SKEW
    sent = sent.replace(microsecond=sent.microsecond // 1000 * 1000)
    return real_now - ago, sent - ago, sent


def iso_ms(dt: datetime) -> str:
    """``yyyy-MM-dd'T'HH:mm:ss.SSS'Z'``: what almost every mobile SDK writes."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def iso_nanos(dt: datetime) -> str:
    """Nine fraction digits: analytics-android's and analytics-ios's optional nanosecond timestamps."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond * 1000:09d}Z"


def java_instant(dt: datetime) -> str:
    """``java.time.Instant.toString()``: no fraction at all on a whole second, else 3, 6 or 9 digits."""
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond == 0:
        return base + "Z"
    if dt.microsecond % 1000 == 0:
        return f"{base}.{dt.microsecond // 1000:03d}Z"
    return f"{base}.{dt.microsecond:06d}Z"


def assert_skew_corrected(e: Event, real: datetime, stamped: datetime, sent: datetime) -> None:
    assert (e.original_timestamp, e.sent_at) == (stamped, sent)
    assert e.timestamp == e.original_timestamp + (e.received_at - e.sent_at)
    # the corrected time is when it happened by the server's clock, give or take the request's own time
    assert abs(e.timestamp - real) < timedelta(seconds=10), (e.timestamp, real)


def one_profile(db: Database, rows: list[Event], *ids: tuple[str, str]) -> str:
    """The events and the identifiers all belong to one profile; returns its id."""
    known = identities(db)
    owners = {known.get(i) for i in ids} | {e.customer_id for e in rows}
    assert len(owners) == 1 and None not in owners, (owners, known)
    return owners.pop()


# --- analytics-kotlin --------------------------------------------------------------------------------------

def kotlin_batch(write_key: str, anon: str, device_id: str) -> tuple[bytes, dict[str, datetime]]:
    """The file analytics-kotlin uploads as is, and the device stamps of its events.

    segmentio/analytics-kotlin core/.../utilities/EventsFileManager.kt writes ``{"batch":[`` then each event
    (comma-separated, compact kotlinx JSON) and on rollover ``],"sentAt":"<SegmentInstant.now()>",
    "writeKey":"<key>"}``. Events (core/.../Events.kt): ``timestamp`` is ``Instant.now().toString()``,
    ``messageId`` a lowercase UUID, ``integrations`` ``{}`` (SegmentDestination.kt adds ``false`` for bundled
    destinations), ``userId`` defaults to ``""`` (versions before EventPipeline filtered blank userIds
    uploaded it as is), ``_metadata`` from DestinationMetadataPlugin.kt, ``category`` of a screen is ``""``
    when not given. Context: ContextPlugin.kt (library) and android/.../AndroidContextPlugin.kt (app, device
    with the ANDROID_ID, os, screen, network, locale, userAgent, timezone).
    """
    real, stamped, sent = device_clock()
    context = {
        "app": {"name": "Shop", "version": "4.2.0", "namespace": "com.shop.app", "build": "420"},
        "device": {"id": device_id, "manufacturer": "Google", "model": "Pixel 8", "name": "shiba",
                   "type": "android"},
        "os": {"name": "Android", "version": "14"},
        "screen": {"density": 2.625, "height": 2205, "width": 1080},
        "network": {"wifi": True, "bluetooth": False, "cellular": False},
        "locale": "de-DE", "userAgent": "Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/UD1A.230803.041)",
        "timezone": "Europe/Berlin", "library": {"name": "analytics-kotlin", "version": "1.16.3"},
    }
    metadata = {"bundled": [], "unbundled": [], "bundledIds": []}
    stamps = {"screen": stamped, "track": stamped + timedelta(seconds=12, microseconds=345000),
              "identify": stamped + timedelta(seconds=30)}
    events = [
        {"name": "Product Detail", "category": "", "properties": {"sku": "TEE-M"}, "type": "screen",
         "messageId": str(uuid.uuid4()), "anonymousId": anon, "integrations": {}, "context": context,
         "userId": "", "timestamp": java_instant(stamps["screen"]), "_metadata": metadata},
        {"properties": {"product_id": "TEE", "sku": "TEE-M", "price": 19.9}, "event": "Added Product",
         "type": "track", "messageId": str(uuid.uuid4()), "anonymousId": anon,
         "integrations": {"Firebase": False}, "context": context, "userId": "",
         "timestamp": java_instant(stamps["track"]), "_metadata": metadata},
        {"userId": "u-kt-1", "traits": {"email": "Kim@Shop.example", "firstName": "Kim"}, "type": "identify",
         "messageId": str(uuid.uuid4()), "anonymousId": anon, "integrations": {}, "context": context,
         "timestamp": java_instant(stamps["identify"]), "_metadata": metadata},
    ]
    body = (b'{"batch":[' + b",".join(orjson.dumps(e) for e in events)
            + f'],"sentAt":"{iso_ms(sent)}","writeKey":"{write_key}"}}'.encode())
    return body, {"real": real, "sent": sent, **stamps}


@pytest.mark.parametrize("layers", [1, 2], ids=["HttpURLConnection", "OkHttp-double-gzip"])
def test_analytics_kotlin(client: TestClient, db: Database, app_source: Source, layers: int) -> None:
    anon, device_id = str(uuid.uuid4()), "f3a9c2d81b7e4c60"
    body, when = kotlin_batch(app_source.write_key, anon, device_id)
    for _ in range(layers):
        body = gzip.compress(body)
    # segmentio/analytics-kotlin core/.../HTTPClient.kt RequestFactory.upload: POST https://<apiHost>/b,
    # text/plain, gzip, its User-Agent, no Authorization (the write key is in the body since #73); the
    # OkHttp-based client (#281) gzips in createPostConnection and again in OkHttpURLConnection.buildRequest.
    r = client.post("/v1/b", content=body, headers={
        "Content-Type": "text/plain", "Content-Encoding": "gzip", "User-Agent": "analytics-kotlin/1.16.3"})
    assert (r.status_code, r.json()) == (200, {"success": True, "accepted": 3, "duplicates": 0, "rejected": []})

    rows = stored(db)
    assert [(e.type, e.event, e.user_id, e.anonymous_id, e.channel, e.source_id) for e in rows] == [
        ("screen", "Product Detail", None, anon, "app", app_source.id),
        ("track", "Product Added", None, anon, "app", app_source.id),  # the legacy name, canonical
        ("identify", None, "u-kt-1", anon, "app", app_source.id),
    ]
    assert rows[0].properties == {"sku": "TEE-M"}  # an empty category adds nothing
    for e, kind in zip(rows, ("screen", "track", "identify"), strict=True):
        assert_skew_corrected(e, when["real"] + (when[kind] - when["screen"]), when[kind], when["sent"])
    one_profile(db, rows, ("device_id", device_id), ("anonymous_id", anon), ("user_id", "u-kt-1"),
                ("email", "kim@shop.example"))


def test_analytics_kotlin_whole_second_timestamps(client: TestClient, db: Database, app_source: Source) -> None:
    # Instant.toString() drops the fraction on a whole second; SegmentInstant (DateTimeUtils.kt) always
    # writes milliseconds, and its first version ("ss'.'S") wrote them without zero padding.
    body = orjson.dumps({"batch": [
        {"type": "track", "event": "App Opened", "anonymousId": "a-1", "messageId": "m-1", "properties": {},
         "integrations": {}, "context": {}, "timestamp": "2026-03-01T09:59:50Z"},
        {"type": "track", "event": "App Opened", "anonymousId": "a-1", "messageId": "m-2", "properties": {},
         "integrations": {}, "context": {}, "timestamp": "2026-03-01T09:59:50.123456Z"},
    ], "sentAt": "2026-03-01T10:00:00.7Z", "writeKey": app_source.write_key})
    r = client.post("/v1/b", content=gzip.compress(body), headers={"Content-Type": "text/plain",
                                                                     "Content-Encoding": "gzip"})
    assert r.json()["accepted"] == 2
    sent = datetime(2026, 3, 1, 10, 0, 0, 700_000, tzinfo=UTC)
    assert [(e.original_timestamp, e.sent_at) for e in stored(db)] == [
        (datetime(2026, 3, 1, 9, 59, 50, tzinfo=UTC), sent),
        (datetime(2026, 3, 1, 9, 59, 50, 123_456, tzinfo=UTC), sent)]


def test_analytics_kotlin_drops_a_batch_we_refuse(client: TestClient, db: Database, app_source: Source) -> None:
    # EventsFileManager.kt writes events straight into the batch file ("TODO make atomic"): an app killed
    # mid-write leaves half an event that rollover closes anyway. 400 is a DROP in the SDK's retry
    # config (core/.../retry/RetryConfig.kt, default4xxBehavior), so the broken file is deleted, not retried.
    broken = (b'{"batch":[{"type":"track","event":"App Ope'
              + f'],"sentAt":"{iso_ms(datetime.now(UTC))}","writeKey":"{app_source.write_key}"}}'.encode())
    r = client.post("/v1/b", content=gzip.compress(broken), headers={"Content-Type": "text/plain",
                                                                       "Content-Encoding": "gzip"})
    assert (r.status_code, r.json()["code"]) == (400, "invalid_json")
    assert stored(db) == []


# --- analytics-swift ---------------------------------------------------------------------------------------

def swift_batch(write_key: str, anon: str, idfv: str, user_id: str | None) -> tuple[bytes, dict[str, datetime]]:
    """The file analytics-swift uploads as is.

    segmentio/analytics-swift Sources/Segment/Utilities/Storage/Types/DirectoryStore.swift writes the line
    ``{ "batch": [``, then one event per line (``,`` before all but the first), and on finishFile
    ``],"sentAt":"<iso8601>","writeKey":"<key>"}``. Events (Sources/Segment/Types.swift): ``messageId`` is
    ``UUID().uuidString`` (upper case), ``timestamp`` ``Date().iso8601()`` (ISO8601DateFormatter with
    fractional seconds), nil fields such as ``userId`` of an anonymous user are left out, ``integrations``
    ``{}``, ``_metadata`` from DestinationMetadataPlugin.swift. Context (Plugins/Context.swift): library,
    app, device with ``identifierForVendor``, os, screen, network, locale, timezone, userAgent and an
    ``instanceId`` per Analytics instance.
    """
    real, stamped, sent = device_clock()
    context = {
        "library": {"name": "analytics-swift", "version": "1.7.3"},
        "app": {"name": "Shop", "version": "4.2.0", "build": "420", "namespace": "com.shop.app"},
        "device": {"manufacturer": "Apple", "type": "ios", "model": "iPhone15,2", "name": "iPhone", "id": idfv},
        "os": {"name": "iOS", "version": "17.4"}, "screen": {"width": 393, "height": 852},
        "locale": "fr-FR", "timezone": "Europe/Paris", "network": {"bluetooth": False, "cellular": True,
                                                                  "wifi": False},
        "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)",
        "instanceId": str(uuid.uuid4()).upper(),
    }
    metadata = {"bundled": [], "unbundled": [], "bundledIds": []}
    stamps = {"screen": stamped, "track": stamped + timedelta(seconds=9)}
    base: dict[str, Any] = {"anonymousId": anon, "integrations": {}, "context": context, "_metadata": metadata}
    if user_id:
        base["userId"] = user_id
    events = [
        {**base, "type": "screen", "messageId": str(uuid.uuid4()).upper(), "timestamp": iso_ms(stamps["screen"]),
         "name": "Cart", "properties": {"items": 2}},
        {**base, "type": "track", "messageId": str(uuid.uuid4()).upper(), "timestamp": iso_ms(stamps["track"]),
         "event": "Checkout Started", "properties": {"order_id": "o-77", "revenue": 42.5, "currency": "EUR"}},
    ]
    lines = ['{ "batch": ['] + [("" if i == 0 else ",") + orjson.dumps(e).decode() for i, e in enumerate(events)]
    lines.append(f'],"sentAt":"{iso_ms(sent)}","writeKey":"{write_key}"}}')
    return ("\n".join(lines) + "\n").encode(), {"real": real, "sent": sent, **stamps}


@pytest.mark.parametrize("auth", [False, True], ids=["write-key-in-body", "1.0-basic-auth"])
def test_analytics_swift(client: TestClient, db: Database, app_source: Source, auth: bool) -> None:
    anon, idfv = str(uuid.uuid4()).upper(), str(uuid.uuid4()).upper()
    body, when = swift_batch(app_source.write_key, anon, idfv, user_id="u-sw-9")
    # segmentio/analytics-swift Sources/Segment/Utilities/Networking/HTTPClient.swift: POST
    # https://<apiHost>/b with the file as is (no gzip), application/json, "analytics-ios/<version>" as
    # User-Agent; the first releases (Utilities/HTTPClient.swift configuredSession) also sent Basic auth.
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "analytics-ios/1.7.3",
               "Accept-Encoding": "gzip"}
    if auth:
        headers["Authorization"] = basic(app_source.write_key)
    r = client.post("/v1/b", content=body, headers=headers)
    assert (r.status_code, r.json()["accepted"]) == (200, 2)

    rows = stored(db)
    assert [(e.type, e.event, e.user_id, e.anonymous_id, e.channel, e.source_id) for e in rows] == [
        ("screen", "Cart", "u-sw-9", anon, "app", app_source.id),
        ("track", "Checkout Started", "u-sw-9", anon, "app", app_source.id),
    ]
    assert rows[1].properties == {"order_id": "o-77", "revenue": 42.5, "currency": "EUR"}
    for e, kind in zip(rows, ("screen", "track"), strict=True):
        assert_skew_corrected(e, when["real"] + (when[kind] - when["screen"]), when[kind], when["sent"])
    one_profile(db, rows, ("device_id", idfv), ("anonymous_id", anon), ("user_id", "u-sw-9"))


def test_analytics_swift_anonymous_user_and_a_batch_we_refuse(client: TestClient, db: Database,
                                                              app_source: Source) -> None:
    anon = str(uuid.uuid4()).upper()
    body, _ = swift_batch(app_source.write_key, anon, idfv="", user_id=None)  # no IDFV: device.id is ""
    r = client.post("/v1/b", content=body, headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.json()["accepted"] == 2
    rows = stored(db)
    assert {(e.user_id, e.anonymous_id) for e in rows} == {(None, anon)}
    assert not [k for k in identities(db) if k[0] == "device_id"]  # an empty device id identifies nobody

    # SegmentDestination.swift removes a batch file on success and on exactly 400 ("malformed JSON");
    # any other failure keeps it for the next flush, so a file we cannot read must get a 400.
    r = client.post("/v1/b", content=b'{ "batch": [\n{"type":"tra\n],"sentAt":"2026-03-01T10:00:00.000Z"}\n',
                    headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 400
    assert len(stored(db)) == 2


# --- analytics-android (classic) ---------------------------------------------------------------------------

def android_payload(kind: str, when: str, anon: str, device_id: str, user_id: str | None,
                    **fields: Any) -> dict[str, Any]:
    """One queued payload of segmentio/analytics-android.

    analytics/src/main/java/com/segment/analytics/integrations/BasePayload.java: ``channel: "mobile"``,
    ``type``, a UUID ``messageId``, ``timestamp`` (Iso8601Utils.format, or nine fraction digits with
    nanosecond timestamps on), ``context``, ``integrations`` (bundled ones ``false``, SegmentIntegration
    .performEnqueue), ``userId`` only when known, ``anonymousId``. Context (AnalyticsContext.java): app,
    the user's traits (always with ``anonymousId``), device (id, manufacturer, model, name), library,
    locale, network with the carrier, os, screen, userAgent, timezone.
    """
    traits: dict[str, Any] = {"anonymousId": anon}
    if user_id:
        traits.update(userId=user_id, email="ana@shop.example")
    payload = {
        "channel": "mobile", "type": kind, "messageId": str(uuid.uuid4()), "timestamp": when,
        "context": {
            "app": {"name": "Shop", "version": "3.9.1", "namespace": "com.shop.app", "build": "391"},
            "traits": traits,
            "device": {"id": device_id, "manufacturer": "samsung", "model": "SM-G991B", "name": "o1s"},
            "library": {"name": "analytics-android", "version": "4.11.3"}, "locale": "es-ES",
            "network": {"wifi": False, "bluetooth": False, "cellular": True, "carrier": "Movistar"},
            "os": {"name": "Android", "version": "13"}, "screen": {"density": 3, "height": 2400, "width": 1080},
            "userAgent": "Dalvik/2.1.0 (Linux; U; Android 13; SM-G991B)", "timezone": "Europe/Madrid",
        },
        "integrations": {"Amplitude": False}, "anonymousId": anon, **fields,
    }
    if user_id:
        payload["userId"] = user_id
    return payload


def test_classic_analytics_android(client: TestClient, db: Database, app_source: Source) -> None:
    anon, device_id = str(uuid.uuid4()), "4c9e07b2a1d35f86"
    real, stamped, sent = device_clock()
    later = stamped + timedelta(seconds=20, microseconds=250)  # a nanosecond timestamp keeps the micros
    payloads = [
        android_payload("screen", iso_ms(stamped), anon, device_id, None, name="Home", properties={}),
        android_payload("identify", iso_nanos(later), anon, device_id, "u-an-3",
                        traits={"anonymousId": anon, "userId": "u-an-3", "email": "ana@shop.example"}),
        android_payload("track", iso_nanos(later), anon, device_id, "u-an-3", event="Completed Order",
                        properties={"order_id": "o-1", "total": 30.5}),
    ]
    # SegmentIntegration.java performFlush: BatchPayloadWriter writes {"batch":[<queued payloads>],
    # "sentAt":"<now>"}, no writeKey (it travels as Basic auth); ConnectionFactory.java upload():
    # POST https://api.segment.io/v1/import, gzip, application/json, "analytics-android/<version>".
    body = (b'{"batch":[' + b",".join(orjson.dumps(p) for p in payloads)
            + f'],"sentAt":"{iso_ms(sent)}"}}'.encode())
    r = client.post("/v1/import", content=gzip.compress(body), headers={
        "Authorization": basic(app_source.write_key), "Content-Encoding": "gzip",
        "Content-Type": "application/json", "User-Agent": "analytics-android/4.11.3"})
    assert (r.status_code, r.json()["accepted"]) == (200, 3)

    rows = stored(db)
    assert [(e.type, e.event, e.user_id, e.anonymous_id, e.channel, e.source_id) for e in rows] == [
        ("screen", "Home", None, anon, "app", app_source.id),
        ("identify", None, "u-an-3", anon, "app", app_source.id),
        ("track", "Order Completed", "u-an-3", anon, "app", app_source.id),
    ]
    assert_skew_corrected(rows[0], real, stamped, sent)
    assert_skew_corrected(rows[2], real + (later - stamped), later, sent)
    one_profile(db, rows, ("device_id", device_id), ("anonymous_id", anon), ("user_id", "u-an-3"),
                ("email", "ana@shop.example"))


def test_classic_analytics_android_drops_what_we_refuse(client: TestClient, db: Database,
                                                         app_source: Source) -> None:
    anon = str(uuid.uuid4())
    now = iso_ms(datetime.now(UTC))
    # A NUL typed into a form ends up in a property; android.util.JsonWriter escapes it as \u0000.
    nul = android_payload("track", now, anon, "d-1", None, event="Searched", properties={"q": "tee\u0000"})
    good = android_payload("track", now, anon, "d-1", None, event="Products Searched", properties={"q": "tee"})
    h = {"Authorization": basic(app_source.write_key), "Content-Encoding": "gzip", "Content-Type": "application/json"}

    def post(*payloads: dict[str, Any]) -> Any:
        return client.post("/v1/import", headers=h, content=gzip.compress(orjson.dumps(
            {"batch": list(payloads), "sentAt": now})))

    # Client.java throws HTTPException for >= 300; SegmentIntegration.performFlush removes the payloads on
    # success and on a 4xx other than 429: a batch we can read is answered 200, the good message stored,
    # the bad one reported, and the queue moves on.
    r = post(nul, good)
    assert (r.status_code, r.json()["accepted"], [x["code"] for x in r.json()["rejected"]]) == (
        200, 1, ["invalid_character"])
    r = post(nul)
    assert (r.status_code, r.json()["accepted"], [x["code"] for x in r.json()["rejected"]]) == (
        200, 0, ["invalid_character"])
    assert [e.event for e in stored(db)] == ["Products Searched"]


# --- analytics-ios (classic) -------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/batch", "/v1/import"], ids=["4.x", "3.x"])
def test_classic_analytics_ios(client: TestClient, db: Database, app_source: Source, path: str) -> None:
    anon, idfv = str(uuid.uuid4()).upper(), str(uuid.uuid4()).upper()
    real, stamped, sent = device_clock()
    # segmentio/analytics-ios Segment/Classes/SEGSegmentIntegration.m enqueueAction: type, timestamp
    # (iso8601FormattedString, SEGUtils.m), messageId (GenerateUUIDString, upper case), userId only once
    # known, anonymousId, integrations, and the static + live context (library, app, device with
    # identifierForVendor, os, screen, locale, timezone, network, traits); alias sends the new id as userId
    # and the old one (here the anonymous id) as previousId.
    context = {
        "library": {"name": "analytics-ios", "version": "4.1.8"},
        "app": {"name": "Shop", "version": "2.0", "build": "200", "namespace": "com.shop.app"},
        "device": {"manufacturer": "Apple", "type": "ios", "model": "iPhone12,1", "id": idfv,
                   "adTrackingEnabled": False},
        "os": {"name": "iOS", "version": "16.7"}, "screen": {"width": 414, "height": 896},
        "locale": "it-IT", "timezone": "Europe/Rome", "network": {"wifi": True, "cellular": False},
        "traits": {}, "referrer": {"url": "shopapp://deals/summer"},
    }
    batch = [
        {"type": "screen", "name": "Deals", "properties": {"campaign": "summer"}, "timestamp": iso_ms(stamped),
         "messageId": str(uuid.uuid4()).upper(), "anonymousId": anon, "integrations": {}, "context": context},
        {"type": "alias", "userId": "u-ios-5", "previousId": anon, "messageId": str(uuid.uuid4()).upper(),
         "timestamp": iso_ms(stamped + timedelta(seconds=5)), "anonymousId": anon, "integrations": {},
         "context": context},
        {"type": "track", "event": "Product Added to Wishlist", "properties": {"sku": "BAG-1"},
         "timestamp": iso_ms(stamped + timedelta(seconds=6)), "messageId": str(uuid.uuid4()).upper(),
         "userId": "u-ios-5", "anonymousId": anon, "integrations": {}, "context": context},
    ]
    # sendData: {sentAt, writeKey, batch} through NSJSONSerialization, which escapes "/" as "\/";
    # SEGHTTPClient.m upload: POST <api>/batch (3.x: /import), gzip, application/json, Basic auth.
    body = orjson.dumps({"sentAt": iso_ms(sent), "writeKey": app_source.write_key, "batch": batch})
    r = client.post(path, content=gzip.compress(body.replace(b"/", b"\\/")), headers={
        "Authorization": basic(app_source.write_key), "Content-Encoding": "gzip",
        "Content-Type": "application/json", "Accept-Encoding": "gzip", "User-Agent": "analytics-ios/4.1.8"})
    assert (r.status_code, r.json()["accepted"]) == (200, 3)

    rows = stored(db)
    assert [(e.type, e.event, e.user_id, e.anonymous_id, e.previous_id, e.channel) for e in rows] == [
        ("screen", "Deals", None, anon, None, "app"),
        ("alias", None, "u-ios-5", anon, anon, "app"),
        ("track", "Product Added to Wishlist", "u-ios-5", anon, None, "app"),
    ]
    assert rows[0].context["referrer"] == {"url": "shopapp://deals/summer"}
    assert_skew_corrected(rows[0], real, stamped, sent)
    one_profile(db, rows, ("device_id", idfv), ("anonymous_id", anon), ("user_id", "u-ios-5"))


def test_classic_analytics_ios_moves_on_from_what_we_refuse(client: TestClient, db: Database,
                                                            app_source: Source) -> None:
    # SEGHTTPClient.m removes a batch on success and on a non-429 4xx ("Don't retry"): ours is a 200 that
    # reports the refused message, and the queue moves on.
    body = {"sentAt": iso_ms(datetime.now(UTC)), "writeKey": app_source.write_key,
            "batch": [{"type": "track", "event": "Note Saved", "anonymousId": "A-1", "messageId": "M-1",
                       "timestamp": iso_ms(datetime.now(UTC)), "properties": {"text": "a\u0000b"}}]}
    r = client.post("/v1/batch", content=gzip.compress(orjson.dumps(body)), headers={
        "Authorization": basic(app_source.write_key), "Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert (r.status_code, [(x["messageId"], x["code"]) for x in r.json()["rejected"]]) == (
        200, [("M-1", "invalid_character")])
    assert stored(db) == []


# --- RudderStack --------------------------------------------------------------------------------------------

def rudder_v1_body(messages: list[dict[str, Any]], sent: str) -> bytes:
    """rudderlabs/rudder-sdk-android core/.../FlushUtils.java getPayloadFromMessages (RSCloudModeManager.m is
    the same on iOS): ``{"sentAt":"<ts>","batch": [`` and each stored message with ``,"sentAt":"<ts>"``
    spliced in before its closing brace."""
    spliced = [orjson.dumps(m)[:-1] + f',"sentAt":"{sent}"}}'.encode() for m in messages]
    return f'{{"sentAt":"{sent}",'.encode() + b'"batch": [' + b",".join(spliced) + b"]}"


def rudder_v1_message(kind: str, when: str, anon: str, device_id: str, user_id: str | None,
                      **fields: Any) -> dict[str, Any]:
    """rudder-sdk-android core/.../RudderMessage.java (Gson, nulls left out): messageId
    ``<epoch ms>-<uuid>``, ``channel: "mobile"``, ``originalTimestamp`` (no ``timestamp``), ``anonymousId``,
    ``userId`` taken from the traits' ``id``, ``integrations: {"All": true}``; the context
    (RudderContext.java) carries the user's traits, with identify's traits only there, and external ids
    under ``externalId``."""
    traits: dict[str, Any] = {"anonymousId": anon}
    if user_id:
        traits.update(id=user_id, userId=user_id, email="Rui@Shop.example")
    message = {
        "messageId": f"{int(datetime.now(UTC).timestamp() * 1000)}-{uuid.uuid4()}", "channel": "mobile",
        "context": {
            "app": {"build": "57", "name": "Shop", "namespace": "com.shop.app", "version": "5.7"},
            "traits": traits,
            "library": {"name": "com.rudderstack.android.sdk.core", "version": "1.25.1"},
            "os": {"name": "Android", "version": "14"}, "screen": {"density": 440, "width": 1080, "height": 2340},
            "userAgent": "Dalvik/2.1.0 (Linux; U; Android 14)", "locale": "pt-PT",
            "device": {"id": device_id, "manufacturer": "motorola", "model": "moto g54", "name": "cancunf",
                       "type": "Android", "adTrackingEnabled": False},
            "network": {"carrier": "MEO", "wifi": True, "bluetooth": False, "cellular": False},
            "timezone": "Europe/Lisbon", "sessionId": 1740823200,
            "externalId": [{"id": "LC-881", "type": "loyalty_card"}],
        },
        "type": kind, "originalTimestamp": when, "anonymousId": anon, "integrations": {"All": True}, **fields,
    }
    if user_id:
        message["userId"] = user_id
    return message


def test_rudderstack_android_v1(client: TestClient, db: Database, app_source: Source) -> None:
    anon, device_id = str(uuid.uuid4()), "5e2d91c07ab34f18"
    real, stamped, sent = device_clock()
    messages = [
        # RudderClient.screen(name): event is the name, properties.name too, no "name" field
        rudder_v1_message("screen", iso_ms(stamped), anon, device_id, None, event="Checkout",
                          properties={"name": "Checkout"}),
        rudder_v1_message("identify", iso_ms(stamped + timedelta(seconds=3)), anon, device_id, "u-rs-4",
                          event="identify"),
        rudder_v1_message("track", iso_ms(stamped + timedelta(seconds=8)), anon, device_id, "u-rs-4",
                          event="Order Completed", properties={"order_id": "o-9", "revenue": 12}),
    ]
    # RudderNetworkManager.java sendNetworkRequest: POST <dataPlaneUrl>/v1/batch, Basic auth with the write
    # key, application/json, and the anonymous id base64-encoded in an AnonymousId header.
    r = client.post("/v1/batch", content=rudder_v1_body(messages, iso_ms(sent)), headers={
        "Authorization": basic(app_source.write_key), "Content-Type": "application/json",
        "AnonymousId": base64.b64encode(anon.encode()).decode()})
    assert (r.status_code, r.json()["accepted"]) == (200, 3)

    rows = stored(db)
    assert [(e.type, e.event, e.user_id, e.anonymous_id, e.channel, e.source_id) for e in rows] == [
        ("screen", "Checkout", None, anon, "app", app_source.id),  # the name read from "event"
        ("identify", None, "u-rs-4", anon, "app", app_source.id),
        ("track", "Order Completed", "u-rs-4", anon, "app", app_source.id),
    ]
    assert_skew_corrected(rows[0], real, stamped, sent)
    # identify's traits only travel in context.traits
    one_profile(db, rows, ("device_id", device_id), ("anonymous_id", anon), ("user_id", "u-rs-4"),
                ("email", "rui@shop.example"))


def test_rudderstack_kotlin_v2(client: TestClient, db: Database, app_source: Source) -> None:
    anon = str(uuid.uuid4())
    real, stamped, sent = device_clock()
    # rudderlabs/rudder-sdk-kotlin core/.../models/Event.kt: userId defaults to "" for an anonymous user,
    # sentAt is a placeholder that JsonSentAtUpdater.kt replaces just before upload, originalTimestamp;
    # ScreenEvent.kt serialises the screen name as "event". The batch file is {"batch":[...],"sentAt":"..."}
    # (EventBatchFileManager); EventUpload.kt posts it to /v1/batch, gzip-compressed by default.
    common = {"anonymousId": anon, "userId": "", "channel": "mobile", "integrations": {"All": True},
              "sentAt": iso_ms(sent), "context": {"library": {"name": "com.rudderstack.android.sdk",
                                                              "version": "1.0.0"}, "traits": {}}}
    batch = [
        {**common, "type": "screen", "event": "Search", "properties": {"name": "Search"},
         "messageId": str(uuid.uuid4()), "originalTimestamp": iso_ms(stamped)},
        {**common, "type": "track", "event": "Products Searched", "properties": {"query": "linen"},
         "messageId": str(uuid.uuid4()), "originalTimestamp": iso_ms(stamped + timedelta(seconds=2))},
    ]
    r = client.post("/v1/batch", content=gzip.compress(orjson.dumps({"batch": batch, "sentAt": iso_ms(sent)})),
                    headers={"Authorization": basic(app_source.write_key), "Content-Type": "application/json",
                             "Content-Encoding": "gzip",
                             "AnonymousId": base64.b64encode(anon.encode()).decode()})
    assert (r.status_code, r.json()["accepted"]) == (200, 2)
    rows = stored(db)
    assert [(e.type, e.event, e.user_id, e.anonymous_id) for e in rows] == [
        ("screen", "Search", None, anon), ("track", "Products Searched", None, anon)]
    assert_skew_corrected(rows[0], real, stamped, sent)

    # EventUpload.kt handleNonRetryAbleError: 400 deletes the batch file.
    r = client.post("/v1/batch", content=gzip.compress(b'{"batch":[{"type":"track"'), headers={
        "Authorization": basic(app_source.write_key), "Content-Encoding": "gzip"})
    assert r.status_code == 400


def test_rudderstack_v1_is_not_stuck_on_a_batch_we_refuse(client: TestClient, db: Database,
                                                          app_source: Source) -> None:
    anon = str(uuid.uuid4())
    now = iso_ms(datetime.now(UTC))
    bad = rudder_v1_message("track", now, anon, "d-1", None, event="Note Saved", properties={"text": "a\u0000"})
    r = client.post("/v1/batch", content=rudder_v1_body([bad], now), headers={
        "Authorization": basic(app_source.write_key), "Content-Type": "application/json"})
    # FlushUtils.flushToServer / RSCloudModeManager.m drop a batch only on 200 and retry anything else forever
    assert (r.status_code, [x["code"] for x in r.json()["rejected"]]) == (200, ["invalid_character"])
    assert stored(db) == []


# --- the parser's part of the fixes above ------------------------------------------------------------------

def test_a_second_gzip_layer_is_removed_within_the_same_limits() -> None:
    body = orjson.dumps({"batch": []})
    assert decode_body(gzip.compress(gzip.compress(body)), "gzip", batch=True) == {"batch": []}
    with pytest.raises(SegmentError) as err:  # a third layer is not unwrapped: no SDK sends one
        decode_body(gzip.compress(gzip.compress(gzip.compress(body))), "gzip", batch=True)
    assert err.value.code == "invalid_json"
    bomb = gzip.compress(gzip.compress(b'{"batch": [' + b" " * (MAX_BATCH_BYTES * 4) + b"]}"))
    with pytest.raises(SegmentError) as err:
        decode_body(bomb, "gzip", batch=True)
    assert err.value.code == "batch_too_large"
    with pytest.raises(SegmentError) as err:  # a body that merely starts like gzip without the header
        decode_body(gzip.compress(body), None, batch=True)
    assert err.value.code == "invalid_json"


def test_a_screen_without_name_takes_rudderstacks_event_or_properties_name() -> None:
    src = SourceRef(id="s1", name="Shop app", channel="app")
    t = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def name(**fields: Any) -> str | None:
        return parse_message({"type": "screen", "anonymousId": "a", **fields}, source=src, received_at=t).event

    assert name(name="Cart", event="Other", properties={"name": "Third"}) == "Cart"
    assert name(event="Cart", properties={"name": "Other"}) == "Cart"
    assert name(name="", event=" ", properties={"name": "Cart"}) == "Cart"
    assert name(event=7, properties={"name": ["x"]}) is None  # odd values are not a reason to refuse
    assert name(event="x" * 201, properties={"name": "Cart"}) == "Cart"
    m = parse_message({"type": "page", "anonymousId": "a", "properties": {"name": "Home", "path": "/"}},
                      source=src, received_at=t)
    assert (m.event, m.properties) == ("Home", {"name": "Home", "path": "/"})


# --- answers every SDK handles --------------------------------------------------------------------------------

def test_a_busy_server_answers_429_with_retry_after(db: Database, app_source: Source) -> None:
    # Every SDK above keeps a batch answered 429 (analytics-kotlin: RetryStateMachine.kt pauses the whole
    # pipeline for Retry-After; classic analytics-android and -ios, analytics-swift: retried on the next
    # flush; RudderStack: backoff), so backpressure loses nothing.
    settings = Settings(database_url="sqlite://", ingest_max_inflight=0, ingest_retry_after_s=7)
    body, _ = kotlin_batch(app_source.write_key, str(uuid.uuid4()), "f3a9c2d81b7e4c60")
    with TestClient(create_app(db, settings)) as c:
        r = c.post("/v1/b", content=gzip.compress(body), headers={"Content-Type": "text/plain",
                                                                    "Content-Encoding": "gzip"})
    assert (r.status_code, r.headers["retry-after"], r.json()["code"]) == (429, "7", "too_many_requests")
    assert stored(db) == []
