"""Parsing and validation of Segment HTTP Tracking API calls, without any web framework.

The hot path of the platform: every tracked event goes through here, so checks are plain dict and
isinstance tests (no pydantic model per message) and JSON is read with orjson.

Errors are :class:`SegmentError` carrying Segment's error body ``{"code", "message"}`` (analytics-python
reads both) plus the HTTP status. Codes:

===================== ====== =====================================================================
code                  status meaning
===================== ====== =====================================================================
invalid_json          400    the body is not a JSON object
invalid_gzip          400    ``Content-Encoding: gzip`` but the body is not valid gzip
unsupported_encoding  400    a ``Content-Encoding`` other than gzip / identity
message_too_large     400    a message over 32 KB (a single call's body, or one message of a batch)
batch_too_large       400    a batch body over 500 KB after decompression
too_many_messages     400    more than 2,500 messages in one batch
invalid_batch         400    ``batch`` missing or not a list
missing_write_key     401    neither HTTP Basic auth nor ``writeKey`` in the body
invalid_write_key     401    no enabled source has this write key
invalid_type          400    ``type`` is not one of track/identify/page/screen/group/alias (or not the path's)
missing_identity      400    neither ``userId`` nor ``anonymousId``
missing_field         400    track without ``event``, alias without ``previousId``, group without ``groupId``
invalid_field         400    a field of the wrong JSON type (``properties`` not an object, ...) or too long
invalid_timestamp     400    ``timestamp``, ``originalTimestamp`` or ``sentAt`` is not ISO-8601
invalid_character     400    a string or key holds the NUL character (PostgreSQL cannot store it in text) or
                             half of a UTF-16 surrogate pair (not text at all); ``field`` names where
invalid_number        400    a number too large for a 64-bit float (``1e400``)
too_deeply_nested     400    objects or arrays nested more than about 250 levels deep
===================== ====== =====================================================================

Every rejection of a message names the ``field`` at fault (a path such as ``properties.items[2].name``)
whatever the JSON value sent; nothing a message holds may fail its batch. NUL characters are refused
rather than stripped: a silently changed identifier or property is worse than a refusal the source's
debugger shows.

Warnings: a message with one of these is stored, and the warning is listed in the source's debugger
(``tracking/debugger.py``, the ``rejections`` table with these codes) and in the answer's ``warnings``:

=========================== =========================================================================
code                        meaning
=========================== =========================================================================
warning_timestamp_in_future the event time is more than :data:`MAX_FUTURE_SKEW` after ``receivedAt``
warning_timestamp_too_old   the event time is before :data:`EARLIEST_EVENT_TIME`
warning_invalid_email       an ``email`` trait that is not an email address: kept as a trait, not an identifier
warning_invalid_phone       a ``phone`` trait that is not a phone number: kept as a trait, not an identifier
=========================== =========================================================================

Clock skew (Segment's rule, made explicit): ``timestamp = originalTimestamp + (receivedAt - sentAt)`` when the
message has ``sentAt``, else the ``timestamp`` (or ``originalTimestamp``) as sent. That event time is then
checked (:func:`plausible_event_time`): an event cannot have happened after it was received, so one more than
:data:`MAX_FUTURE_SKEW` after ``receivedAt`` is a wrong clock (a device without ``sentAt``, a time zone sent
as UTC, a placeholder date such as 2099-12-31); one before :data:`EARLIEST_EVENT_TIME` is an unset clock or
a zero date (the Unix epoch, 0001-01-01). Either is replaced by ``receivedAt``, the sent value is kept as
``originalTimestamp``, and a warning is recorded: otherwise one such event makes a profile "last seen in
2099" or "first seen in 1970". Older times are kept: a backfill through ``/v1/batch`` or ``/v1/import``
with an explicit ``timestamp`` is how Segment documents sending history, and offline mobile queues deliver
events days late. History files (``omni events import``) have their own rule, see ``tracking/importing.py``.

401 is used for a missing or unknown write key, like Segment's API answers for a bad key: the SDKs
do not retry 4xx answers (except 429), which is right for a key that will not start working.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from dataclasses import dataclass, field
from dataclasses import field as dataclass_field  # Rejection has an attribute named field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from omnijourney.core.channels import CHANNELS
from omnijourney.core.ids import new_id
from omnijourney.core.time import parse_ts
from omnijourney.customers.identifiers import invalid_contact_traits
from omnijourney.tracking.messages import MESSAGE_TYPES, Message
from omnijourney.tracking.spec import canonical_event_name

KB = 1024
MAX_MESSAGE_BYTES = 32 * KB
MAX_BATCH_BYTES = 500 * KB
MAX_BATCH_MESSAGES = 2500
# A gzip body may be slightly larger than its content (incompressible data plus headers).
GZIP_SLACK_BYTES = 16 * KB
_GZIP_MAGIC = b"\x1f\x8b"
# More layers than any SDK is known to send would only be a way to make us work for nothing.
_MAX_GZIP_LAYERS = 2

# Column widths of the events table: a longer value would fail the whole batch's INSERT on PostgreSQL.
MAX_ID_CHARS = 200
MAX_STORE_CODE_CHARS = 64

_TYPES = frozenset(MESSAGE_TYPES)
_NEEDS_PROPERTIES = frozenset(("track", "page", "screen"))
_NEEDS_TRAITS = frozenset(("identify", "group"))
# An escaped NUL (an odd number of backslashes before u0000) in JSON text.
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")

# The clock-skew rule (see the module docstring): an event time more than this after receivedAt, or
# before EARLIEST_EVENT_TIME, is replaced by receivedAt. A few minutes of drift is normal for a clock that
# is not corrected by sentAt; more is a wrong clock, and an event cannot happen after it was received.
MAX_FUTURE_SKEW = timedelta(minutes=10)
# Zero dates of unset clocks and null columns (1970-01-01, 0001-01-01, 1900-01-01, 1980-01-06 ...) fall
# before it; no retailer's tracked history does.
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)


class SegmentError(Exception):
    """A call or message the API refuses; ``to_dict`` is Segment's error body."""

    def __init__(self, code: str, message: str, *, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.status = status

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return body


@dataclass(frozen=True, slots=True)
class SourceRef:
    """What parsing needs of the source a write key belongs to."""

    id: str
    name: str
    channel: str
    store_code: str | None = None


@dataclass(slots=True)
class Rejection:
    """A message that failed validation, by its position in the batch (0 for a single call).

    ``raw`` is the message as received, kept for the source's debugger (``tracking/debugger.py``); it is
    not part of :meth:`to_dict`, the entry of the batch's answer.
    """

    index: int
    message_id: str | None
    code: str
    message: str
    field: str | None = None
    raw: Any = dataclass_field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"index": self.index, "messageId": self.message_id, "code": self.code,
                                "message": self.message}
        if self.field:
            body["field"] = self.field
        return body


# A warning about a message that is stored anyway: (code, message, field).
MessageWarning = tuple[str, str, str | None]


@dataclass(slots=True)
class ParsedBatch:
    """Valid messages, refused ones, and warnings about valid ones (a :class:`Rejection` each, with a
    ``warning_*`` code and the message's id: the message itself is stored)."""

    messages: list[Message] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    warnings: list[Rejection] = field(default_factory=list)


# --- the body ---------------------------------------------------------------------------------------

def body_limit(batch: bool) -> int:
    """Largest decompressed body accepted: 500 KB for a batch, 32 KB for a single call."""
    return MAX_BATCH_BYTES if batch else MAX_MESSAGE_BYTES


def read_limit(batch: bool, content_encoding: str | None) -> int:
    """Largest body read from the wire, before decompression."""
    limit = body_limit(batch)
    return limit + GZIP_SLACK_BYTES if _is_gzip(content_encoding) else limit


def too_large(batch: bool) -> SegmentError:
    if batch:
        return SegmentError("batch_too_large", f"a batch may be at most {MAX_BATCH_BYTES // KB} KB "
                                               f"({MAX_BATCH_BYTES} bytes) after decompression", field="batch")
    return SegmentError("message_too_large", f"a message may be at most {MAX_MESSAGE_BYTES // KB} KB "
                                             f"({MAX_MESSAGE_BYTES} bytes)")


def _is_gzip(content_encoding: str | None) -> bool:
    return (content_encoding or "").strip().lower() in ("gzip", "x-gzip")


def decompress(raw: bytes, content_encoding: str | None, *, limit: int, batch: bool) -> bytes:
    """The body without its ``Content-Encoding`` (and a second gzip layer, see below), never inflating
    past ``limit`` bytes (gzip bombs)."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        if len(raw) > limit:
            raise too_large(batch)
        return raw
    if encoding not in ("gzip", "x-gzip"):
        raise SegmentError("unsupported_encoding", f"Content-Encoding {content_encoding!r} is not supported: "
                                                   "send gzip or no encoding")
    out = _gunzip(raw, limit=limit, batch=batch)
    # analytics-kotlin since its OkHttp client (segmentio/analytics-kotlin#281) compresses the body twice
    # under one "Content-Encoding: gzip" (HTTPClient.createPostConnection, then
    # OkHttpURLConnection.buildRequest); JSON text never starts with the gzip magic bytes, so a second
    # layer is unambiguous.
    for _ in range(_MAX_GZIP_LAYERS - 1):
        if not out.startswith(_GZIP_MAGIC):
            break
        out = _gunzip(out, limit=limit, batch=batch)
    return out


def _gunzip(data: bytes, *, limit: int, batch: bool) -> bytes:
    out = bytearray()
    try:
        while data:  # concatenated gzip members are one stream (RFC 1952)
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += d.decompress(data, limit + 1 - len(out))
            if len(out) > limit or d.unconsumed_tail:
                raise too_large(batch)
            if not d.eof:
                raise SegmentError("invalid_gzip", "the gzip body is truncated")
            data = d.unused_data
    except zlib.error as exc:
        raise SegmentError("invalid_gzip", f"the body is not valid gzip: {exc}") from None
    return bytes(out)


def decode_body(raw: bytes, content_encoding: str | None = None, *, batch: bool) -> dict[str, Any]:
    """Decompress and parse a request body into its top-level object."""
    return parse_json(decompress(raw, content_encoding, limit=body_limit(batch), batch=batch))


def parse_json(data: bytes) -> dict[str, Any]:
    """The top-level object of a decompressed body. JSON whatever the ``Content-Type``: analytics.js
    sends ``text/plain`` (with ``writeKey`` in the body) to avoid a CORS preflight."""
    try:
        body = load_json(data)
    except ValueError as exc:
        raise SegmentError("invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise SegmentError("invalid_json", "the body must be a JSON object")
    return body


class OutOfRange:
    """A JSON number no 64-bit float holds (``1e400``): kept as its text so only its message is refused.

    orjson cannot write it (not a JSON type to it), so :func:`encoded` refuses the message that holds it.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text[:40]


def _json_int(text: str) -> int | float | OutOfRange:
    if len(text) > 400:  # Python refuses to convert more than 4,300 digits; no float holds 400
        return OutOfRange(text)
    value = int(text)
    # as orjson reads them: integers beyond 64 bits become floats
    return value if -(2 ** 63) <= value < 2 ** 64 else _json_float(text)


def _json_float(text: str) -> float | OutOfRange:
    value = float(text)
    return value if value not in (float("inf"), float("-inf")) else OutOfRange(text)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def load_json(data: bytes | str) -> Any:
    """Parse JSON text with orjson; raises ``ValueError`` (a ``json.JSONDecodeError``) when it is not JSON.

    orjson refuses two things JSON's grammar allows: numbers beyond a 64-bit float, and escaped halves of a
    UTF-16 surrogate pair (``"\\ud83d"``, what JavaScript's JSON.stringify writes for an emoji cut in two).
    Either would fail a whole batch for one bad string, so such a body is read again by the standard
    library (only then: it is about ten times slower), keeping those values for :func:`encoded` to refuse
    in the one message that holds them.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        try:
            return json.loads(data, parse_int=_json_int, parse_float=_json_float, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the interpreter's stack
            raise exc from None


def printable(text: str) -> str:
    """``text`` safe to store and to answer: NUL and surrogate halves written as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    key = printable(key) or '""'  # an empty key is still a field to name
    return f"{parent}.{key}" if parent else key


def _unstorable(value: Any, where: str, depth: int = 0) -> tuple[str, str, str] | None:
    """(code, path, what is wrong) of the first value or key in ``value`` that :func:`encoded` cannot keep;
    slow, only called once a message is known to hold one."""
    if isinstance(value, str):
        if "\x00" in value:
            return "invalid_character", where, _NUL_TEXT
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "invalid_character", where, "holds half of a UTF-16 surrogate pair (\\ud800-\\udfff), not text"
        return None
    if isinstance(value, OutOfRange) or (
            isinstance(value, int) and not isinstance(value, bool) and not -(2 ** 63) <= value < 2 ** 64):
        return "invalid_number", where, "holds a number too large for a 64-bit float"
    if depth > 200:
        return "too_deeply_nested", where, _DEEP_TEXT
    if isinstance(value, dict):
        for k, v in value.items():
            at = _path(where, k)
            found = _unstorable(k, at) or _unstorable(v, at, depth + 1)
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _unstorable(v, _path(where, i), depth + 1)
            if found:
                return found
    return None


_NUL_TEXT = "may not contain the NUL character (\\u0000)"
_DEEP_TEXT = "nests objects or arrays too deeply"


def encoded(value: Any, what: str) -> bytes:
    """``value`` as the compact JSON the database will store; refuses what the databases cannot store.

    orjson writes at most 254 levels of nesting (it reads 1024), PostgreSQL refuses the NUL character in
    text (its ``json`` type takes the escape, but the values end in text columns and ``jsonb``), and neither
    database stores half a surrogate pair; any of them would fail a whole batch's INSERT, so the message is
    refused here, naming the field (the first one found, as a path: ``properties.items[0].name``).
    """
    try:
        data = orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        code, where, wrong = _unstorable(value, "") or ("too_deeply_nested", "", _DEEP_TEXT)
        if code == "too_deeply_nested":  # the field that holds the deep value, not a path 200 levels long
            where = where.partition("[")[0].partition(".")[0]
        raise SegmentError(code, f"{where or what} {wrong}", field=where or None) from None
    if b"\\u0000" in data and _NUL.search(data):  # the substring test is a fast scan; the regex is not
        found = _unstorable(value, "")
        where = found[1] if found else ""
        raise SegmentError("invalid_character", f"{where or what} {_NUL_TEXT}", field=where or None)
    return data


# --- the write key ----------------------------------------------------------------------------------

def write_key_from(authorization: str | None, body: dict[str, Any]) -> str | None:
    """The write key: the user name of HTTP Basic auth (empty password), else ``writeKey`` in the body."""
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "basic" and token:
            try:
                user = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                user = ""
            if user.strip():
                return user.strip()
    key = body.get("writeKey")
    if isinstance(key, str) and key.strip():
        return key.strip()
    return None


def missing_write_key() -> SegmentError:
    return SegmentError("missing_write_key", "no write key: send it as the HTTP Basic auth user name "
                                             "(empty password) or as writeKey in the body", status=401)


def invalid_write_key() -> SegmentError:
    # RudderStack's v1 mobile SDKs recognise a wrong key only by "invalid write key" in the body; otherwise
    # they retry the batch forever
    return SegmentError("invalid_write_key", "invalid write key: no enabled source has it", status=401)


# --- messages ---------------------------------------------------------------------------------------

def _id(raw: dict[str, Any], key: str) -> str | None:
    """An identifier as a stripped string (SDKs may send numbers); None when absent or empty."""
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    else:
        raise SegmentError("invalid_field", f"{key} must be a string", field=key)
    if len(value) > MAX_ID_CHARS:
        raise SegmentError("invalid_field", f"{key} may be at most {MAX_ID_CHARS} characters", field=key)
    return value or None


def object_field(raw: dict[str, Any], key: str) -> dict[str, Any] | None:
    """``raw[key]`` when it is an object (or absent)."""
    value = raw.get(key)
    if value is None or isinstance(value, dict):
        return value
    raise SegmentError("invalid_field", f"{key} must be an object", field=key)


def timestamp_field(value: Any, key: str) -> datetime | None:
    """An ISO-8601 value of field ``key`` (None stays None)."""
    try:
        return parse_ts(value)
    except (ValueError, TypeError, OverflowError):
        raise SegmentError("invalid_timestamp", f"{key} must be an ISO-8601 date-time, got {value!r:.60}",
                           field=key) from None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``: nested objects merge, every other value of ``override`` wins.

    Returns a new dict; nested dicts taken from ``base`` are copied so messages never share them.
    """
    out = {k: (deep_merge(v, {}) if isinstance(v, dict) else v) for k, v in base.items()}
    for k, v in override.items():
        old = out.get(k)
        out[k] = deep_merge(old, v) if isinstance(v, dict) and isinstance(old, dict) else v
    return out


def _store_code(context: dict[str, Any]) -> str | None:
    store = context.get("store")
    value = store.get("code") if isinstance(store, dict) else None
    name = "context.store.code"
    if value is None:
        value, name = context.get("store_code"), "context.store_code"
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value.strip()) > MAX_STORE_CODE_CHARS:
        raise SegmentError("invalid_field", f"{name} must be a string of at most {MAX_STORE_CODE_CHARS} "
                                            "characters", field=name)
    return value.strip() or None


def _rudderstack_screen_name(raw: dict[str, Any], properties: dict[str, Any]) -> str | None:
    """The name of a page or screen sent without ``name``: RudderStack's mobile SDKs put a screen's name
    in ``event`` and in ``properties.name`` (rudder-sdk-android ``RudderClient.screen``,
    rudder-sdk-kotlin ``ScreenEvent``). Best effort: a value that could not be stored is skipped rather
    than refusing the message, the properties keep it anyway."""
    for value in (raw.get("event"), properties.get("name")):
        if isinstance(value, str) and value.strip() and len(value) <= MAX_ID_CHARS:
            return value
    return None


def plausible_event_time(timestamp: datetime, received_at: datetime, *, field: str,
                         warnings: list[MessageWarning] | None) -> datetime:
    """``timestamp``, or ``received_at`` when the clock that wrote it was wrong (the module docstring's rule:
    more than :data:`MAX_FUTURE_SKEW` after ``received_at``, or before :data:`EARLIEST_EVENT_TIME`); a
    replacement is appended to ``warnings``, naming ``field``, the value sent."""
    if timestamp > received_at + MAX_FUTURE_SKEW:
        code, why = "warning_timestamp_in_future", f"is more than {_minutes(MAX_FUTURE_SKEW)} after receivedAt"
    elif timestamp < EARLIEST_EVENT_TIME:
        code, why = "warning_timestamp_too_old", f"is before {EARLIEST_EVENT_TIME.date().isoformat()}"
    else:
        return timestamp
    if warnings is not None:
        warnings.append((code, f"the event time {timestamp.isoformat()} {why}: stored at receivedAt "
                               f"{received_at.isoformat()}, the sent value kept as originalTimestamp", field))
    return received_at


def _minutes(delta: timedelta) -> str:
    return f"{int(delta.total_seconds() // 60)} minutes"


def contact_warnings(kind: str, traits: dict[str, Any] | None, context: dict[str, Any], region: str,
                     warnings: list[MessageWarning]) -> None:
    """Append a warning for each email or phone trait that is not one: it stays a trait, and is never an
    identifier (``customers/identifiers.py`` decides, the same way)."""
    for path, what, value in invalid_contact_traits(traits if kind == "identify" else None, context, region):
        code, noun = ("warning_invalid_email", "an email address") if what == "email" else \
            ("warning_invalid_phone", "a phone number")
        warnings.append((code, f"{path} {printable(repr(value))[:80]} is not {noun}: kept as a trait, not used "
                               "to identify the person", path))


def parse_message(raw: Any, *, source: SourceRef, received_at: datetime, type_hint: str | None = None,
                  sent_at: datetime | None = None, context: dict[str, Any] | None = None,
                  integrations: dict[str, Any] | None = None, warnings: list[MessageWarning] | None = None,
                  region: str | None = None, history: bool = False) -> Message:
    """Validate one Segment message and normalise it into a :class:`Message`.

    ``type_hint`` is the type named by the path of a single call; ``sent_at``, ``context`` and
    ``integrations`` are the batch-level values (the message's own values win). Warnings about a valid
    message are appended to ``warnings`` when given: an event time replaced by the clock-skew rule (not
    for ``history``: history files have their own rule, the caller applies it) and, when ``region`` is
    given (the identity settings' default region for phone numbers), email and phone traits that are not one.
    """
    if not isinstance(raw, dict):
        raise SegmentError("invalid_json", "a message must be a JSON object")
    kind = raw.get("type")
    if type_hint is not None:
        if kind is not None and kind != type_hint:
            raise SegmentError("invalid_type", f"type {kind!r:.40} sent to the {type_hint} path", field="type")
        kind = type_hint
    elif not isinstance(kind, str) or kind not in _TYPES:  # an object or a list is not hashable
        what = "type is missing" if kind is None else f"unknown type {kind!r:.40}"
        raise SegmentError("invalid_type", f"{what}: one of {', '.join(MESSAGE_TYPES)}", field="type")

    user_id = _id(raw, "userId")
    anonymous_id = _id(raw, "anonymousId")
    if user_id is None and anonymous_id is None:
        raise SegmentError("missing_identity", "a message needs a userId or an anonymousId", field="userId")
    message_id = _id(raw, "messageId") or "api-" + new_id()  # Segment generates one too

    own_context = object_field(raw, "context")
    ctx = deep_merge(context, own_context or {}) if context else (own_context or {})
    own_integrations = object_field(raw, "integrations")
    if integrations:
        integ: dict[str, Any] | None = deep_merge(integrations, own_integrations or {})
    else:
        integ = own_integrations

    event: str | None = None
    properties: dict[str, Any] = {}
    traits: dict[str, Any] | None = None
    previous_id = group_id = None
    if kind in _NEEDS_PROPERTIES:
        properties = object_field(raw, "properties") or {}
        if kind == "track":
            name = raw.get("event")
            if name is None or (isinstance(name, str) and not name.strip()):
                raise SegmentError("missing_field", "a track call needs an event name", field="event")
            if not isinstance(name, str):
                raise SegmentError("invalid_field", "event must be a string", field="event")
            event = canonical_event_name(name)
        else:
            name = raw.get("name")
            if name is not None and not isinstance(name, str):
                raise SegmentError("invalid_field", "name must be a string", field="name")
            event = name or _rudderstack_screen_name(raw, properties)
            category = raw.get("category")
            if isinstance(category, str) and category and "category" not in properties:
                properties = {**properties, "category": category}
        if event is not None and len(event) > MAX_ID_CHARS:
            field_name = "event" if kind == "track" else "name"
            raise SegmentError("invalid_field", f"{field_name} may be at most {MAX_ID_CHARS} characters",
                               field=field_name)
    elif kind in _NEEDS_TRAITS:
        traits = object_field(raw, "traits") or {}
        if kind == "identify" and not traits and isinstance(ctx.get("traits"), dict):
            # RudderStack's SDKs send an identify's traits only in context.traits
            traits = ctx["traits"]
        if kind == "group":
            group_id = _id(raw, "groupId")
            if group_id is None:
                raise SegmentError("missing_field", "a group call needs a groupId", field="groupId")
    else:  # alias
        previous_id = _id(raw, "previousId")
        if previous_id is None:
            raise SegmentError("missing_field", "an alias call needs a previousId", field="previousId")

    # Timestamps as Segment keeps them: originalTimestamp is the device clock (RudderStack SDKs send it
    # under that name), timestamp corrects it by the device clock's skew measured at sentAt.
    original = raw.get("originalTimestamp")
    original_ts = timestamp_field(original, "originalTimestamp") if original is not None else None
    if original_ts is None:
        original_ts = timestamp_field(raw.get("timestamp"), "timestamp")
    own_sent = raw.get("sentAt")
    if own_sent is not None:
        sent_at = timestamp_field(own_sent, "sentAt")
    if original_ts is None:
        timestamp = received_at
    else:
        if sent_at is None:
            timestamp = original_ts
        else:
            try:
                timestamp = original_ts + (received_at - sent_at)
            except OverflowError:
                raise SegmentError("invalid_timestamp", "timestamp corrected by sentAt is out of range",
                                   field="sentAt") from None
        if not history and not EARLIEST_EVENT_TIME <= timestamp <= received_at + MAX_FUTURE_SKEW:
            timestamp = plausible_event_time(timestamp, received_at, warnings=warnings,
                                             field="originalTimestamp" if original is not None else "timestamp")

    channel = source.channel
    finer = ctx.get("channel")
    # Only our own channel names refine the source's; e.g. RudderStack's top-level "channel"
    # ("web"/"mobile"/"server") names the SDK's platform, not the brand's channel, and is not read.
    if isinstance(finer, str) and finer in CHANNELS:
        channel = finer
    store_code = _store_code(ctx) if ctx else None
    if warnings is not None and region is not None and (
            (traits and kind == "identify") or "traits" in ctx or "externalIds" in ctx or "externalId" in ctx):
        contact_warnings(kind, traits, ctx, region, warnings)  # the membership tests spare most messages the call

    return Message(
        message_id=message_id, type=kind, channel=channel, timestamp=timestamp, received_at=received_at,
        user_id=user_id, anonymous_id=anonymous_id, event=event, previous_id=previous_id, group_id=group_id,
        store_code=store_code or source.store_code, original_timestamp=original_ts, sent_at=sent_at,
        properties=properties, traits=traits, context=ctx, source_id=source.id, source_name=source.name,
        integrations=integ,
    )


def reported_message_id(raw: Any) -> str | None:
    """The ``messageId`` of a refused message as reported back (it may be what was wrong with it)."""
    mid = raw.get("messageId") if isinstance(raw, dict) else None
    if isinstance(mid, str | int | float) and not isinstance(mid, bool) and not isinstance(mid, OutOfRange):
        return printable(str(mid))[:MAX_ID_CHARS]  # what could not be stored is shown escaped
    return None


def parse_single(body: dict[str, Any], *, type_hint: str, source: SourceRef, received_at: datetime,
                 warnings: list[MessageWarning] | None = None, region: str | None = None) -> Message:
    """A single call (``/v1/track`` ...): the body is the message; warnings about it go to ``warnings``."""
    encoded(body, "the message")
    return parse_message(body, source=source, received_at=received_at, type_hint=type_hint, warnings=warnings,
                         region=region)


def parse_batch(body: dict[str, Any], *, source: SourceRef, received_at: datetime,
                region: str | None = None) -> ParsedBatch:
    """A ``/v1/batch`` body: good messages parsed, bad ones reported by index, warnings about good ones
    (email and phone traits checked when ``region`` is given, see :func:`parse_message`).

    Raises :class:`SegmentError` for faults of the whole batch (not a list, too many messages,
    batch-level ``context``/``integrations``/``sentAt`` invalid).
    """
    messages = body.get("batch")
    if not isinstance(messages, list):
        raise SegmentError("invalid_batch", "batch must be a list of messages", field="batch")
    if len(messages) > MAX_BATCH_MESSAGES:
        raise SegmentError("too_many_messages", f"a batch may hold at most {MAX_BATCH_MESSAGES} messages, "
                                                f"got {len(messages)}", field="batch")
    context = object_field(body, "context")
    integrations = object_field(body, "integrations")
    encoded({"context": context, "integrations": integrations}, "the batch's context or integrations")
    sent_at = timestamp_field(body.get("sentAt"), "sentAt")
    out = ParsedBatch()
    warnings: list[MessageWarning] = []
    for i, raw in enumerate(messages):
        try:
            # about 0.2 us a message with orjson: the size, the nesting and NUL checks in one pass
            if len(encoded(raw, "the message")) > MAX_MESSAGE_BYTES:
                raise too_large(False)
            message = parse_message(raw, source=source, received_at=received_at, sent_at=sent_at,
                                    context=context, integrations=integrations, warnings=warnings, region=region)
        except SegmentError as exc:
            out.rejected.append(Rejection(i, reported_message_id(raw), exc.code, exc.message, exc.field, raw))
            continue
        out.messages.append(message)
        if warnings:
            out.warnings.extend(Rejection(i, message.message_id, code, text, where, raw)
                                for code, text, where in warnings)
            warnings.clear()
    return out
