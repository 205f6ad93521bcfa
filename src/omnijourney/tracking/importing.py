"""Reading history files into validated messages: backfills from Segment / RudderStack exports.

Formats, told apart by content rather than by file name (archives are named ``*.gz``, ``*.json``,
``*.jsonl`` or nothing in particular):

* newline-delimited JSON, one message per line (Segment's S3 archive format); a line may also hold a
  batch object or an array of messages. Read line by line, never whole.
* one JSON document: a batch object ``{"batch": [...], "context", "integrations", "sentAt", "writeKey"}``
  or an array of messages. A document is parsed whole, so very large exports belong in NDJSON.
* either of them gzip-compressed (recognised by the gzip magic bytes).

Every message goes through :func:`omnijourney.tracking.segment.parse_message` and the 32 KB limit, as
in ``/v1/batch``; a bad one becomes a :class:`Rejection` and the import goes on. Differences from the
live API, because these are historical messages:

* ``receivedAt`` of every message is the time of the import; the event time is the message's
  ``timestamp`` as written (Segment's ``/v1/import``: an archive's ``timestamp`` is already
  skew-corrected), else ``originalTimestamp`` corrected by ``receivedAt - sentAt`` when the message
  carries Segment's ``receivedAt``, else ``originalTimestamp`` as is, else ``receivedAt``, else now.
* the clock-skew rule of the live API (``tracking/segment.py``) does not apply: old timestamps are the point
  of an import. Only an event time no history can have is refused: after the import's time (plus
  ``MAX_FUTURE_SKEW``) or before ``EARLIEST_EVENT_TIME`` (2000: zero dates of unset clocks, 1970-01-01,
  0001-01-01). Such a message is stored at the ``receivedAt`` its archive line carries when that one is
  plausible (what Segment itself would have stored; a ``warning_timestamp_*`` in the report), else
  rejected as ``invalid_timestamp``: the import's own time would turn an old event into today's, which
  is worse than a line listed for fixing.
* a message without ``messageId`` gets one derived from its content, so re-running an import stores it
  once (two byte-identical messages without ids are therefore one).
* no limit on the number of messages in a batch object.
* any JSON value in any field rejects its message only, as in ``/v1/batch``; so do numbers beyond a 64-bit
  float and escaped halves of surrogate pairs (:func:`omnijourney.tracking.segment.load_json`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from io import BufferedIOBase, BufferedReader
from itertools import chain
from pathlib import Path
from typing import Any

import orjson

from omnijourney.tracking.messages import Message
from omnijourney.tracking.segment import (
    EARLIEST_EVENT_TIME,
    MAX_FUTURE_SKEW,
    MAX_MESSAGE_BYTES,
    MessageWarning,
    SegmentError,
    SourceRef,
    encoded,
    invalid_write_key,
    load_json,
    object_field,
    parse_message,
    reported_message_id,
    timestamp_field,
    too_large,
    write_key_from,
)

# A line holds one message (32 KB) or at most a batch object; longer lines are refused without being
# held in memory in full.
MAX_LINE_BYTES = 4 * 1024 * 1024
MAX_KEPT_REJECTIONS = 1000
_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
_SNIFF_LINES = 5
_PROGRESS_EVERY = 1024  # lines between updates of ReadReport.bytes_read


@dataclass(slots=True)
class Rejection:
    """A message (or line, or file) that was not imported, and why."""

    file: str
    line: int | None  # 1-based line of an NDJSON file, or where a document failed to parse
    index: int | None  # position in a batch object or array
    message_id: str | None
    code: str  # segment.py's codes (warning_* ones for warnings), plus line_too_long and unreadable_file
    message: str
    field: str | None = None

    @property
    def location(self) -> str:
        """``file:line``, ``file:line[index]`` or ``file[index]``."""
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return where if self.index is None else f"{where}[{self.index}]"

    def __str__(self) -> str:
        return f"{self.location} {self.code} {self.message}"


@dataclass(slots=True)
class ReadReport:
    """Counts of a :func:`read_messages` run, filled in while it runs; the first rejections in full."""

    read: int = 0  # messages read, valid or not
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)  # the first ``max_kept``
    bytes_read: int = 0  # of the files on disk (compressed bytes for gzip); for progress bars
    max_kept: int = MAX_KEPT_REJECTIONS
    warned: int = 0  # warnings about imported messages (warning_* codes: the message is imported)
    warnings: list[Rejection] = field(default_factory=list)  # the first ``max_kept``

    def reject(self, rejection: Rejection, count: int = 1) -> None:
        """Record ``rejection``, standing for ``count`` messages (a whole batch object may fail at once)."""
        self.rejected += count
        if len(self.rejections) < self.max_kept:
            self.rejections.append(rejection)

    def warn(self, warning: Rejection) -> None:
        """Record a warning about a message that is imported anyway."""
        self.warned += 1
        if len(self.warnings) < self.max_kept:
            self.warnings.append(warning)


@dataclass(slots=True)
class _Batch:
    """Batch-level values applied to the messages of a batch object (their own values win)."""

    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    sent_at: datetime | None = None
    write_key: str | None = None


_NO_BATCH = _Batch()


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """Files to read: each file as given, each directory's files recursively (sorted, hidden ones skipped)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(p for p in sorted(path.rglob("*"))
                       if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
        else:
            out.append(path)
    return out


def read_messages(paths: Iterable[Path], *, default_source: SourceRef | None,
                  sources_by_key: Mapping[str, SourceRef], now: datetime, report: ReadReport,
                  region: str | None = None) -> Iterator[Message]:
    """Validated messages of ``paths`` (files, in order), streaming; rejections and warnings go to ``report``
    (email and phone traits that are not one are warned about when ``region``, the identity settings'
    default region for phone numbers, is given).

    ``default_source`` (``--source``) receives every message; without it each message goes to the
    source of its ``writeKey`` (or its batch object's) looked up in ``sources_by_key``: none is a
    ``missing_write_key`` rejection, an unknown one ``invalid_write_key``. A default source wins over
    write keys because exports carry the old vendor's keys.
    """
    for path in paths:
        reader = _FileReader(path, default_source=default_source, sources_by_key=sources_by_key, now=now,
                             report=report, region=region)
        yield from reader.messages()


class _FileReader:
    """One file's messages; a class only to share the lookups between its steps."""

    def __init__(self, path: Path, *, default_source: SourceRef | None, sources_by_key: Mapping[str, SourceRef],
                 now: datetime, report: ReadReport, region: str | None = None) -> None:
        self.path = path
        self.name = str(path)
        self.default_source = default_source
        self.sources_by_key = sources_by_key
        self.now = now
        self.report = report
        self.region = region
        self.found: list[MessageWarning] = []  # the current message's warnings
        self.base_bytes = report.bytes_read
        self.lineno = 0

    def messages(self) -> Iterator[Message]:
        try:
            with open(self.path, "rb") as raw:
                if raw.peek(2)[:2] == _GZIP_MAGIC:
                    with gzip.open(raw) as f:
                        yield from self._read(f, raw)
                else:
                    yield from self._read(raw, raw)
                self.report.bytes_read = self.base_bytes + raw.tell()
        except (OSError, EOFError, zlib.error) as exc:
            # a truncated or corrupt gzip stream, or a file that cannot be read: the rest of it is lost
            self.report.read += 1
            where = f" (after line {self.lineno})" if self.lineno else ""
            self.report.reject(Rejection(self.name, None, None, None, "unreadable_file",
                                         f"{exc or type(exc).__name__}{where}"))

    def _read(self, f: BufferedIOBase, raw: BufferedReader) -> Iterator[Message]:
        head: list[bytes] = []  # the first lines, kept to tell NDJSON from a document
        sample: list[bytes] = []  # the non-blank ones
        while len(sample) < _SNIFF_LINES and (line := f.readline(MAX_LINE_BYTES + 1)):
            if not head and line.startswith(_BOM):  # a UTF-8 byte order mark, which JSON refuses
                line = line[len(_BOM):]
            head.append(line)
            if _too_long(line):
                break
            if line.strip():
                sample.append(line)
        if not head:
            return
        # a first line longer than any message is a one-line document (json.dump's output), not NDJSON
        if not sample or not _looks_like_ndjson(sample):
            f.seek(0)
            data = f.read()
            yield from self._document(data[len(_BOM):] if data.startswith(_BOM) else data)
            return
        # lazily chained: the rest of an over-long line is skipped before the next line is read
        for line in chain(head, iter(partial(f.readline, MAX_LINE_BYTES + 1), b"")):
            self.lineno += 1
            if self.lineno % _PROGRESS_EVERY == 0:
                self.report.bytes_read = self.base_bytes + raw.tell()
            if _too_long(line):
                while (rest := f.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass
                self.report.read += 1
                self.report.reject(Rejection(self.name, self.lineno, None, None, "line_too_long",
                                             f"a line may be at most {MAX_LINE_BYTES // (1024 * 1024)} MB"))
            elif line.strip():
                yield from self._ndjson_line(self.lineno, line)

    def _document(self, data: bytes) -> Iterator[Message]:
        try:
            value = load_json(data)
        except json.JSONDecodeError as exc:
            self.report.read += 1
            self.report.reject(Rejection(self.name, exc.lineno, None, None, "invalid_json",
                                         f"the file is neither NDJSON nor one JSON document: {exc}"))
            return
        yield from self._value(value, None)

    def _ndjson_line(self, lineno: int, line: bytes) -> Iterator[Message]:
        try:
            value = load_json(line)
        except json.JSONDecodeError as exc:
            self.report.read += 1
            self.report.reject(Rejection(self.name, lineno, None, None, "invalid_json",
                                         f"the line is not valid JSON: {exc}"))
            return
        yield from self._value(value, lineno)

    def _value(self, value: Any, lineno: int | None) -> Iterator[Message]:
        """A parsed line or document: a batch object, an array of messages, or one message."""
        if isinstance(value, dict) and "batch" in value:
            yield from self._batch(value, lineno)
        elif isinstance(value, list):
            for i, raw in enumerate(value):
                yield from self._one(raw, lineno, i, _NO_BATCH)
        else:
            yield from self._one(value, lineno, None, _NO_BATCH)

    def _batch(self, body: dict[str, Any], lineno: int | None) -> Iterator[Message]:
        messages = body["batch"]
        try:
            if not isinstance(messages, list):
                raise SegmentError("invalid_batch", "batch must be a list of messages", field="batch")
            batch = _Batch(context=object_field(body, "context"), integrations=object_field(body, "integrations"),
                           sent_at=timestamp_field(body.get("sentAt"), "sentAt"), write_key=write_key_from(None, body))
            encoded({"context": batch.context, "integrations": batch.integrations}, "the batch's context")
        except SegmentError as exc:  # the whole batch object is unusable
            count = len(messages) if isinstance(messages, list) else 1
            self.report.read += count
            self.report.reject(Rejection(self.name, lineno, None, None, exc.code, exc.message, exc.field), count)
            return
        for i, raw in enumerate(messages):
            yield from self._one(raw, lineno, i, batch)

    def _one(self, raw: Any, lineno: int | None, index: int | None, batch: _Batch) -> Iterator[Message]:
        self.report.read += 1
        found = self.found
        found.clear()
        try:
            message = self._parse(raw, batch)
        except SegmentError as exc:
            self.report.reject(Rejection(self.name, lineno, index, reported_message_id(raw), exc.code, exc.message,
                                         exc.field))
            return
        for code, text, where in found:
            self.report.warn(Rejection(self.name, lineno, index, message.message_id, code, text, where))
        yield message

    def _parse(self, raw: Any, batch: _Batch) -> Message:
        data = encoded(raw, "the message")  # the size, the nesting and NUL checks in one pass, as parse_batch
        if len(data) > MAX_MESSAGE_BYTES:
            raise too_large(False)
        if not isinstance(raw, dict):
            raise SegmentError("invalid_json", "a message must be a JSON object")
        source = self._source(raw, batch)
        mid = raw.get("messageId")
        if mid is None or (isinstance(mid, str) and not mid.strip()):
            # parse_message would make up a random id: the same file imported twice would be stored twice
            raw = {**raw, "messageId": "import-" + hashlib.blake2b(data, digest_size=16).hexdigest()}
        message = parse_message(raw, source=source, received_at=self.now, sent_at=batch.sent_at,
                                context=batch.context, integrations=batch.integrations, warnings=self.found,
                                region=self.region, history=True)
        message.timestamp = _historical_time(raw, message, self.now, self.found)
        return message

    def _source(self, raw: dict[str, Any], batch: _Batch) -> SourceRef:
        if self.default_source is not None:
            return self.default_source
        key = write_key_from(None, raw) or batch.write_key
        if key is None:
            raise SegmentError("missing_write_key", "no writeKey in the message and no --source given",
                               field="writeKey", status=401)
        source = self.sources_by_key.get(key)
        if source is None:
            raise invalid_write_key()
        return source


def _too_long(line: bytes) -> bool:
    return len(line) > MAX_LINE_BYTES and not line.endswith(b"\n")


def _is_json_value(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line), dict | list)
    except orjson.JSONDecodeError:
        return False


def _looks_like_ndjson(sample: list[bytes]) -> bool:
    """NDJSON when the first non-blank line is a JSON object or array, or (a broken first line) two of the
    next few are; a pretty-printed document has at most one such line (its last element)."""
    return _is_json_value(sample[0]) or sum(map(_is_json_value, sample[1:])) >= 2


def _historical_time(raw: dict[str, Any], message: Message, now: datetime, warnings: list[MessageWarning]) -> datetime:
    """The event time of a historical message, checked (see the module docstring): kept when history can
    have it, else the archive line's ``receivedAt`` with a warning, else the message is refused."""
    when = _event_time(raw, message)
    if EARLIEST_EVENT_TIME <= when <= now + MAX_FUTURE_SKEW:
        return when
    field = "timestamp" if raw.get("timestamp") is not None else "originalTimestamp"
    why = "after the import" if when > now else f"before {EARLIEST_EVENT_TIME.date().isoformat()}"
    received = timestamp_field(raw.get("receivedAt"), "receivedAt")
    if received is None or not EARLIEST_EVENT_TIME <= received <= now + MAX_FUTURE_SKEW:
        raise SegmentError("invalid_timestamp", f"the event time {when.isoformat()} is {why}, and the message has "
                                                "no plausible receivedAt to use instead", field=field)
    code = "warning_timestamp_in_future" if when > now else "warning_timestamp_too_old"
    warnings.append((code, f"the event time {when.isoformat()} is {why}: stored at the message's receivedAt "
                           f"{received.isoformat()}, the sent value kept as originalTimestamp", field))
    return received


def _event_time(raw: dict[str, Any], message: Message) -> datetime:
    """When it happened, for a historical message (see the module docstring).

    parse_message corrects ``originalTimestamp`` by ``receivedAt - sentAt`` with receivedAt = the import
    time, which would move months-old events to today; the skew is that of the original delivery.
    """
    stated = timestamp_field(raw.get("timestamp"), "timestamp")
    if stated is not None:
        return stated
    received = timestamp_field(raw.get("receivedAt"), "receivedAt")
    original = message.original_timestamp
    if original is None:
        return received or message.timestamp
    if received is None or message.sent_at is None:
        return original
    try:
        return original + (received - message.sent_at)
    except OverflowError:
        raise SegmentError("invalid_timestamp", "originalTimestamp corrected by sentAt is out of range",
                           field="sentAt") from None
