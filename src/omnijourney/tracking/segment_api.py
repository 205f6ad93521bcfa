"""Segment HTTP Tracking API: /v1/track, /v1/identify, ... /v1/batch and the one-letter paths.

Real Segment and RudderStack SDKs work unchanged when pointed at this host. Answers:

* 200 ``{"success": true}`` for a single call (``/v1/track`` ...), also when the messageId was stored before.
* 200 ``{"success": true, "accepted": N, "duplicates": D, "rejected": [...]}`` for a batch that could be
  read, as Segment answers: valid messages are stored, each invalid one is reported as
  ``{"index", "messageId", "code", "message", "field"}`` and not stored, even when none was valid; whatever
  JSON a message holds, it is refused alone (``tracking/segment.py``), never the batch. ``"warnings"``, in
  the same shape, is added when stored messages had some (``warning_*`` codes: an event time replaced by
  the clock-skew rule, an email or phone trait that is not one); a single call adds it to its 200 too.
  A 400 there would make RudderStack's v1 mobile SDKs retry the batch forever, blocking their queue;
  Segment's SDKs drop a batch on 200 and on 400 alike.
* 400 ``{"code", "message"}`` (Segment's error body) for an invalid single call, a body that is not a
  batch (not JSON, no ``batch`` list) or one over the limits.
* 401 ``missing_write_key`` / ``invalid_write_key``: the SDKs do not retry 4xx, right for a bad key.
* 429 with ``Retry-After`` when this process has too many ingestion requests in flight
  (``settings.ingest_max_inflight``) or the database is saturated; the SDKs retry after the delay.

Write key: the HTTP Basic auth user name (empty password), else ``writeKey`` in the body.

Every message refused for a known source (in a batch, a single call, or a whole batch refused) is also kept
for that source's debugger (``tracking/debugger.py``, ``GET /api/v1/sources/{id}/rejections``), and so are
warnings, alongside the write of the messages and outside the identity lock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from omnijourney.core.time import utcnow
from omnijourney.tracking import debugger
from omnijourney.tracking.messages import Message
from omnijourney.tracking.segment import (
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    MAX_MESSAGE_BYTES,
    MessageWarning,
    ParsedBatch,
    Rejection,
    SegmentError,
    SourceRef,
    decode_body,
    decompress,
    invalid_write_key,
    missing_write_key,
    parse_batch,
    parse_json,
    parse_single,
    printable,
    read_limit,
    reported_message_id,
    too_large,
    write_key_from,
)
from omnijourney.tracking.service import ingest, prepare
from omnijourney.tracking.sources import source_by_write_key

log = logging.getLogger(__name__)

SOURCE_TTL_S = 10.0  # a disabled source stops being accepted within this many seconds
_SOURCE_CACHE_MAX = 10_000  # bounds memory when clients send many made-up keys
_MAX_WRITE_KEY = 64  # Source.write_key's width: longer keys cannot exist, no need to ask the database
_DRAIN_MAX = 8 * 1024 * 1024  # an oversized body is read this far so the client sees our 400, then cut

# path -> type; None is a batch. One-letter paths are what analytics.js (Segment's and RudderStack's) posts to.
PATHS: dict[str, str | None] = {
    "track": "track", "identify": "identify", "page": "page", "screen": "screen", "group": "group",
    "alias": "alias", "batch": None,
}
SHORT_PATHS: dict[str, str | None] = {
    "t": "track", "i": "identify", "p": "page", "s": "screen", "g": "group", "a": "alias", "b": None,
    "import": None,  # Segment's historical-import path takes batches too
}

_SUCCESS = orjson.dumps({"success": True})
_JSON = "application/json"


# --- responses --------------------------------------------------------------------------------------

def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=_JSON, headers=headers)


def _error(exc: SegmentError) -> Response:
    return _json(exc.to_dict(), exc.status)


def _busy(retry_after: int) -> Response:
    return _json({"code": "too_many_requests",
                  "message": f"too many ingestion requests in flight; retry in {retry_after} s"},
                 429, {"Retry-After": str(retry_after)})


# --- sources ----------------------------------------------------------------------------------------

def _cached_source(app: FastAPI, key: str) -> tuple[bool, SourceRef | None]:
    hit = app.state.segment_sources.get(key)
    if hit is not None and hit[0] > time.monotonic():
        return True, hit[1]
    return False, None


def _lookup_source(app: FastAPI, key: str) -> SourceRef | None:
    """The enabled source of ``key`` (None if none), remembered for ``SOURCE_TTL_S``; blocking."""
    found, ref = _cached_source(app, key)
    if found:
        return ref
    if len(key) <= _MAX_WRITE_KEY and printable(key) == key:  # a NUL or half a surrogate pair: no source has it
        with app.state.db.transaction(write=False) as session:
            source = source_by_write_key(session, key)
            if source is not None:
                ref = SourceRef(source.id, source.name, source.channel, source.store_code)
    cache: dict[str, tuple[float, SourceRef | None]] = app.state.segment_sources
    if len(cache) >= _SOURCE_CACHE_MAX:
        cache.clear()
    cache[key] = (time.monotonic() + SOURCE_TTL_S, ref)  # unknown keys too: they are the ones sent in loops
    return ref


# --- ingestion --------------------------------------------------------------------------------------

async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is longer than ``limit`` bytes."""
    buf = bytearray()
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen <= limit:
            buf += chunk
        elif seen > _DRAIN_MAX:
            break
    return bytes(buf) if seen <= limit else None


def _source_or_raise(app: FastAPI, key: str | None) -> SourceRef:
    if key is None:
        raise missing_write_key()
    source = _lookup_source(app, key)
    if source is None:
        raise invalid_write_key()
    return source


def _parse_batch(app: FastAPI, raw: bytes, encoding: str | None, authorization: str | None,
                 received_at: datetime) -> tuple[SourceRef, ParsedBatch]:
    """Decode and validate one batch: its source, valid messages and rejections; blocking (runs in the
    thread pool). A fault of the whole batch once its source is known is recorded for the source's
    debugger too (one rejection, the body as sample), then raised."""
    data = decompress(raw, encoding, limit=MAX_BATCH_BYTES, batch=True)
    body = parse_json(data)
    source = _source_or_raise(app, write_key_from(authorization, body))
    try:
        return source, parse_batch(body, source=source, received_at=received_at, region=_region(app))
    except SegmentError as exc:
        _record_rejections(app, source, [Rejection(0, None, exc.code, exc.message, exc.field, body)], received_at)
        raise


def _region(app: FastAPI) -> str:
    """The region phone numbers without a country code are read in, as identity resolution reads them."""
    return app.state.settings.identity.default_region


def _record_rejections(app: FastAPI, source: SourceRef, rejections: list[Rejection], at: datetime) -> None:
    """Keep ``rejections`` for the source's debugger; blocking, and never raises.

    Called only when a request had rejections, so the happy path does no work here. One statement in a
    short transaction of its own, without the identity lock: a batch whose messages were all refused does
    not queue behind ingestion (on SQLite every write transaction takes the database lock, held only
    briefly). Keeping them is a debugging aid: a failure is logged and the client's answer stays as it was.
    Unknown write keys never get here: they belong to no source, so nothing is recorded for them.
    """
    try:
        rows = debugger.rejection_rows(source.id, at, rejections)  # encoded before the transaction
        with app.state.db.transaction() as session:
            debugger.record_rejections(session, source_id=source.id, rows=rows)
    except Exception:
        log.exception("could not record %d rejection(s) of source %s", len(rejections), source.id)


def _store(app: FastAPI, messages: list[Message]) -> set[tuple[str | None, str]]:
    """One write transaction for ``messages``; the (source, messageId) keys newly stored; blocking."""
    if not messages:
        return set()
    db = app.state.db
    identity = app.state.settings.identity
    # Encoding rows and extracting identifiers needs no database: done before the write transaction so
    # it does not hold the write lock.
    prepared = prepare(messages, identity, db.dialect)
    with db.transaction() as session:
        return ingest(session, messages=prepared, settings=identity).stored


# Requests waiting while a write runs are stored together in the next one, up to this many messages.
GROUP_MAX_MESSAGES = 5000


class _GroupWriter:
    """Group commit: requests (single calls and batches) arriving while a write runs go together in the
    next one. Ingestion is serialised by the identity lock anyway, so one transaction per request would
    only queue connections on that lock; one writer per process turns a burst into a few transactions
    and spreads each transaction's fixed costs (lock, commit, look-ups) over more messages."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.pending: list[tuple[list[Message], asyncio.Future[int]]] = []
        self.task: asyncio.Task[None] | None = None

    async def write(self, messages: list[Message]) -> int:
        """Return, once ``messages`` are committed, how many were new (the rest were already stored);
        raise what their write raised (e.g. TooBusy)."""
        loop = asyncio.get_running_loop()
        if self.task is not None and self.task.get_loop() is not loop:  # an app served again by a new loop
            self.task, self.pending = None, []
        done: asyncio.Future[int] = loop.create_future()
        self.pending.append((messages, done))
        if self.task is None:
            self.task = loop.create_task(self._run())
        return await done

    def _next_group(self) -> list[tuple[list[Message], asyncio.Future[int]]]:
        group, size = [], 0
        while self.pending and (not group or size + len(self.pending[0][0]) <= GROUP_MAX_MESSAGES):
            item = self.pending.pop(0)
            group.append(item)
            size += len(item[0])
        return group

    async def _run(self) -> None:
        try:
            while self.pending:
                group = self._next_group()
                try:
                    stored = await run_in_threadpool(_store, self.app, [m for ms, _ in group for m in ms])
                except Exception as exc:
                    for _, done in group:
                        if not done.done():
                            done.set_exception(exc)
                except BaseException:
                    for _, done in group:
                        done.cancel()
                    raise
                else:
                    for messages, done in group:
                        if not done.done():
                            done.set_result(_claim(messages, stored))
        finally:
            self.task = None


def _claim(messages: list[Message], stored: set[tuple[str | None, str]]) -> int:
    """How many of ``messages`` were newly stored; claimed keys are removed, so a message repeated in two
    requests of one group counts as new once."""
    new = 0
    for m in messages:
        key = (m.source_id, m.message_id)
        if key in stored:
            stored.discard(key)
            new += 1
    return new


async def _receive_single(request: Request, kind: str, received_at: datetime) -> Response:
    app = request.app
    encoding = request.headers.get("content-encoding")
    raw = await _read_body(request, read_limit(False, encoding))
    if raw is None:
        raise too_large(False)
    # At most 32 KB: decoded and validated on the event loop, cheaper than a hop to a thread.
    body = decode_body(raw, encoding, batch=False)
    key = write_key_from(request.headers.get("authorization"), body)
    if key is None:
        raise missing_write_key()
    found, source = _cached_source(app, key)
    if not found:
        source = await run_in_threadpool(_source_or_raise, app, key)
    if source is None:
        raise invalid_write_key()
    found: list[MessageWarning] = []
    try:
        message = parse_single(body, type_hint=kind, source=source, received_at=received_at, warnings=found,
                               region=_region(app))
    except SegmentError as exc:  # answered 400; kept for the source's debugger first
        rejection = Rejection(0, reported_message_id(body), exc.code, exc.message, exc.field, body)
        await run_in_threadpool(_record_rejections, app, source, [rejection], received_at)
        raise
    if not found:
        await app.state.segment_writer.write([message])
        return Response(_SUCCESS, media_type=_JSON)
    warnings = [Rejection(0, message.message_id, code, text, where, body) for code, text, where in found]
    recording = asyncio.ensure_future(run_in_threadpool(_record_rejections, app, source, warnings, received_at))
    try:
        await app.state.segment_writer.write([message])
    finally:
        await recording  # never raises
    return _json({"success": True, "warnings": [w.to_dict() for w in warnings]})


async def _receive(request: Request, kind: str | None) -> Response:
    state = request.app.state
    settings = state.settings
    # Backpressure: the counter only changes on the event loop, so no lock is needed.
    if state.segment_inflight >= settings.ingest_max_inflight:
        return _busy(settings.ingest_retry_after_s)
    state.segment_inflight += 1
    try:
        received_at = utcnow()
        if kind is not None:
            return await _receive_single(request, kind, received_at)
        encoding = request.headers.get("content-encoding")
        raw = await _read_body(request, read_limit(True, encoding))
        if raw is None:
            raise too_large(True)
        source, parsed = await run_in_threadpool(_parse_batch, request.app, raw, encoding,
                                                 request.headers.get("authorization"), received_at)
        messages = parsed.messages
        rejected = [r.to_dict() for r in parsed.rejected]
        recording: asyncio.Future[None] | None = None
        if rejected:  # the SDKs do not read a 200's body: the log and the source's debugger show them
            first = rejected[0]
            log.warning("batch: %d of %d messages rejected; the first (index %d, messageId %s): %s %s",
                        len(rejected), len(rejected) + len(messages), first["index"], first.get("messageId"),
                        first["code"], first["message"])
        if parsed.rejected or parsed.warnings:
            # recorded alongside the write of the good messages, not after it: no added latency
            recording = asyncio.ensure_future(run_in_threadpool(_record_rejections, request.app, source,
                                                                parsed.rejected + parsed.warnings, received_at))
        try:
            accepted = await request.app.state.segment_writer.write(messages) if messages else 0
        finally:
            if recording is not None:
                await recording  # never raises: _record_rejections logs its failures
        answer = {"success": True, "accepted": accepted, "duplicates": len(messages) - accepted,
                  "rejected": rejected}
        if parsed.warnings:
            answer["warnings"] = [w.to_dict() for w in parsed.warnings]
        return _json(answer)
    except SegmentError as exc:
        return _error(exc)
    finally:
        state.segment_inflight -= 1


def _endpoint(kind: str | None) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await _receive(request, kind)

    endpoint.__name__ = f"segment_{kind or 'batch'}"
    endpoint.__doc__ = (f"Segment `{kind}` call." if kind else "Segment batch of calls.") + \
        " Write key as the HTTP Basic auth user name (empty password) or `writeKey` in the body."
    return endpoint


# --- analytics.js settings ---------------------------------------------------------------------------

def settings_document(write_key: str, public_url: str) -> dict[str, Any]:
    """What analytics.js reads from ``/v1/projects/{writeKey}/settings``: send everything to us, load
    no other destination, no middleware, no telemetry to Segment."""
    scheme, sep, rest = public_url.partition("://")
    if not sep:
        scheme, rest = "https", public_url
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": rest.rstrip("/") + "/v1",
                "protocol": scheme,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
                "versionSettings": {"version": "4.4.7", "componentTypes": ["browser"]},
            },
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }


async def project_settings(request: Request, write_key: str) -> Response:
    """The analytics.js settings of a write key (404 if unknown)."""
    app = request.app
    found, source = _cached_source(app, write_key)
    if not found:
        source = await run_in_threadpool(_lookup_source, app, write_key)
    if source is None:
        return _json({"code": "invalid_write_key", "message": "invalid write key: no enabled source has it"}, 404)
    public = app.state.settings.public_url or str(request.base_url)
    return _json(settings_document(write_key, public), headers={"Cache-Control": "public, max-age=60"})


# --- CORS and installation ---------------------------------------------------------------------------

class _TrackingCORS:
    """CORS for the /v1 tracking paths only: any origin may post events (write keys are public), while
    the rest of the API keeps the browser's same-origin protection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # "*" headers mirrors what a preflight asks for: Content-Type and Authorization, and e.g. the
        # AnonymousId header RudderStack's JavaScript SDK adds. Retry-After is not a header scripts may
        # read across origins unless exposed: without it analytics.js retries a 429 on its own short
        # schedule instead of backing off for as long as we asked.
        self.cors = CORSMiddleware(app, allow_origins=["*"], allow_methods=["GET", "POST", "OPTIONS"],
                                   allow_headers=["*"], expose_headers=["Retry-After"], max_age=86400)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


_ERROR_SCHEMA = {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}},
}
_MESSAGE_SCHEMA = {
    "type": "object",
    "description": "A Segment message (https://segment.com/docs/connections/spec/common/).",
    "properties": {
        "type": {"type": "string", "enum": ["track", "identify", "page", "screen", "group", "alias"]},
        "userId": {"type": "string"}, "anonymousId": {"type": "string"}, "messageId": {"type": "string"},
        "event": {"type": "string"}, "name": {"type": "string"}, "previousId": {"type": "string"},
        "groupId": {"type": "string"}, "properties": {"type": "object"}, "traits": {"type": "object"},
        "context": {"type": "object"}, "integrations": {"type": "object"},
        "timestamp": {"type": "string", "format": "date-time"}, "sentAt": {"type": "string", "format": "date-time"},
        "writeKey": {"type": "string"},
    },
}
_BATCH_SCHEMA = {
    "type": "object", "required": ["batch"],
    "properties": {
        "batch": {"type": "array", "items": _MESSAGE_SCHEMA, "maxItems": MAX_BATCH_MESSAGES},
        "context": {"type": "object"}, "integrations": {"type": "object"},
        "sentAt": {"type": "string", "format": "date-time"}, "writeKey": {"type": "string"},
    },
}
_BATCH_OK = {
    "type": "object",
    "properties": {
        "success": {"type": "boolean"}, "accepted": {"type": "integer"}, "duplicates": {"type": "integer"},
        "rejected": {"type": "array", "items": {"type": "object"}},
        "warnings": {"type": "array", "items": {"type": "object"},
                     "description": "about stored messages (warning_* codes); present when there are some"},
    },
}


def _responses(batch: bool) -> dict[int | str, dict[str, Any]]:
    ok = _BATCH_OK if batch else {"type": "object", "properties": {"success": {"type": "boolean"},
                                                                   "warnings": _BATCH_OK["properties"]["warnings"]}}
    limit = f"{MAX_BATCH_BYTES // 1024} KB" if batch else f"{MAX_MESSAGE_BYTES // 1024} KB"
    return {
        200: {"description": "Stored (or already stored)", "content": {_JSON: {"schema": ok}}},
        400: {"description": f"Invalid call or body over {limit}", "content": {_JSON: {"schema": _ERROR_SCHEMA}}},
        401: {"description": "Missing or unknown write key", "content": {_JSON: {"schema": _ERROR_SCHEMA}}},
        429: {"description": "Too busy; retry after Retry-After seconds",
              "content": {_JSON: {"schema": _ERROR_SCHEMA}}},
    }


def install(app: FastAPI) -> None:
    """Mount the tracking paths (and their CORS handling) on ``app``."""
    app.state.segment_inflight = 0
    app.state.segment_sources = {}
    app.state.segment_writer = _GroupWriter(app)
    for paths, documented in ((PATHS, True), (SHORT_PATHS, False)):
        for path, kind in paths.items():
            schema = _BATCH_SCHEMA if kind is None else _MESSAGE_SCHEMA
            app.add_api_route(
                f"/v1/{path}", _endpoint(kind), methods=["POST"], name=f"segment_{path}",
                include_in_schema=documented, tags=["tracking"], responses=_responses(kind is None),
                summary=f"Segment {kind or 'batch'}",
                openapi_extra={"requestBody": {"required": True, "content": {_JSON: {"schema": schema}}}},
            )
    app.add_api_route("/v1/projects/{write_key}/settings", project_settings, methods=["GET"],
                      name="segment_settings", tags=["tracking"], summary="analytics.js settings",
                      responses={404: {"description": "Unknown write key",
                                       "content": {_JSON: {"schema": _ERROR_SCHEMA}}}})
    app.add_middleware(_TrackingCORS)
