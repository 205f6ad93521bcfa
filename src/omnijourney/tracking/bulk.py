"""Bulk ingestion: history backfills and replays, a million events at a time.

The same identity resolution and the same rows as :func:`omnijourney.tracking.service.ingest`, shaped
for throughput:

- **Slices.** Messages are taken in slices of ``slice_size``: one transaction each, holding the identity
  lock, so live ingestion waits at most one slice (a few seconds) and a failure loses no more than the
  slice being written. Re-running an import stores nothing twice (``messageId``).
- **A graph kept across batches.** Within a slice nobody else can change the identity graph, so the
  profiles read for one batch stay in memory for the next ones and only identifiers never seen before
  are looked up.
- **Overlap.** One thread does all the database work of the slice, in order, on the slice's
  connection; the calling thread meanwhile prepares the next batch (identifiers, encoded rows) and
  resolves the one whose graph was just read. The database reads a batch's slice of the graph while the
  previous batch is still being written, which is safe because every profile the pending writes touch is
  already held in memory; duplicates of the batch still being written are caught in memory.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from time import perf_counter
from typing import Any

from sqlalchemy.orm import Session

from omnijourney.config import IdentitySettings
from omnijourney.core.time import utcnow
from omnijourney.customers.graph import Graph
from omnijourney.customers.resolution import (
    Changes,
    GraphRows,
    absorb,
    fetch_graph,
    resolve_in,
    save_changes,
    take_changes,
    wanted_identifiers,
)
from omnijourney.db import _WRITE, Database, advisory_lock, copy_lines, write_rows
from omnijourney.tracking.messages import Message
from omnijourney.tracking.models import Event
from omnijourney.tracking.service import EVENT_COLUMNS, IDENTITY_LOCK, NULL, PreparedBatch, not_stored, prepare

Key = tuple[str | None, str]


@dataclass(slots=True)
class ImportResult:
    accepted: int = 0  # newly stored
    duplicates: int = 0  # already stored before (or earlier in the same import)
    # seconds spent per step, summed; the calling thread's and the database thread's overlap
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))


@contextmanager
def _timed(seconds: dict[str, float], step: str) -> Iterator[None]:
    start = perf_counter()
    try:
        yield
    finally:
        seconds[step] += perf_counter() - start


def batches(messages: Iterable[Message], size: int) -> Iterator[list[Message]]:
    it = iter(messages)
    while part := list(islice(it, size)):
        yield part


@dataclass(slots=True)
class _Read:
    stored: list[bool]  # per prepared message: already in the database
    graph: GraphRows


class _Slice:
    """One transaction on one connection, driven from a single database thread."""

    def __init__(self, db: Database, pool: ThreadPoolExecutor, seconds: dict[str, float]) -> None:
        self.db = db
        self.pool = pool
        self.seconds = seconds
        self.session: Session | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self.pool.submit(fn, *args)

    def begin(self) -> None:
        self.session = self.db.sessions()
        self.session.connection(execution_options={_WRITE: True})
        # wait as long as it takes: a backfill queues behind live ingestion instead of failing
        advisory_lock(self.session, IDENTITY_LOCK)

    def read(self, batch: PreparedBatch, wanted: set) -> _Read:
        assert self.session is not None
        with _timed(self.seconds, "db: duplicates check"):
            stored = [not fresh for fresh in not_stored(self.session, batch.messages)]
        with _timed(self.seconds, "db: graph read"):
            return _Read(stored, fetch_graph(self.session, wanted))

    def write(self, dialect: str, rows: Any, changes: Changes) -> None:
        assert self.session is not None
        with _timed(self.seconds, "db: profile and identity writes"):
            save_changes(self.session, changes)
        columns = [*EVENT_COLUMNS, "customer_id"]
        with _timed(self.seconds, "db: event writes"):
            if dialect == "postgresql":
                copy_lines(self.session, Event.__table__, columns, rows)
            else:
                write_rows(self.session, Event.__table__, columns, rows)

    def end(self, commit: bool) -> None:
        if self.session is None:
            return
        try:
            if commit:
                self.session.commit()
            else:
                self.session.rollback()
        finally:
            self.session.close()
            self.session = None


def import_messages(db: Database, messages: Iterable[Message], *, settings: IdentitySettings,
                    batch_size: int = 20_000, slice_size: int = 200_000,
                    on_progress: Callable[[int], None] | None = None) -> ImportResult:
    """Store ``messages`` with their profiles resolved; ``on_progress(n)`` as each batch of n is written.

    Messages should come roughly in time order (as exports do): identity resolution, like live
    ingestion, links and merges in the order it sees events.
    """
    result = ImportResult()
    per_slice = max(1, slice_size // batch_size)
    incoming = batches(messages, batch_size)
    with ThreadPoolExecutor(1, thread_name_prefix="omni-import-db") as pool:
        while (first := next(incoming, None)) is not None:
            _run_slice(db, pool, settings, first, islice(incoming, per_slice - 1), result, on_progress)
    return result


def _run_slice(db: Database, pool: ThreadPoolExecutor, settings: IdentitySettings, first: list[Message],
               rest: Iterator[list[Message]], result: ImportResult,
               on_progress: Callable[[int], None] | None) -> None:
    """Import ``first`` and ``rest`` in one transaction."""
    dialect = db.dialect
    seconds = result.seconds
    tx = _Slice(db, pool, seconds)
    graph = Graph(settings, utcnow())
    writes: deque[tuple[Future[None], int]] = deque()
    committed = False
    try:
        tx.submit(tx.begin).result()
        with _timed(seconds, "prepare"):
            batch = prepare(first, settings, dialect)
        read = tx.submit(tx.read, batch, wanted_identifiers(batch.identifiers))
        in_flight: set[Key] = set()  # keys of the batch being written (the database cannot see them yet)
        while batch is not None:
            raw_next = next(rest, None)
            with _timed(seconds, "prepare"):
                nxt = prepare(raw_next, settings, dialect) if raw_next is not None else None
            with _timed(seconds, "waiting for the database"):
                got: _Read = read.result()
            start = perf_counter()
            absorb(graph, got.graph)
            keep = [not stored and (m.source_id, m.message_id) not in in_flight
                    for m, stored in zip(batch.messages, got.stored, strict=True)]
            fresh = [m for m, k in zip(batch.messages, keep, strict=True) if k]
            idents = [i for i, k in zip(batch.identifiers, keep, strict=True) if k]
            customer_ids = resolve_in(graph, fresh, idents)
            changes = take_changes(graph, dialect)
            rows = [r for r, k in zip(batch.rows, keep, strict=True) if k]
            if dialect == "postgresql":
                data: Any = "".join([f"{r}{cid or NULL}\n" for r, cid in zip(rows, customer_ids, strict=True)])
            else:
                data = [(*r, cid) for r, cid in zip(rows, customer_ids, strict=True)]
            seconds["resolve"] += perf_counter() - start
            if nxt is not None:  # queued before this batch's write: read ahead while it is written
                read = tx.submit(tx.read, nxt, graph.missing(wanted_identifiers(nxt.identifiers)))
            writes.append((tx.submit(tx.write, dialect, data, changes), len(batch.messages)))
            result.accepted += len(fresh)
            result.duplicates += len(batch.messages) - len(fresh)
            in_flight = {(m.source_id, m.message_id) for m in fresh}
            _report(writes, on_progress, wait=False)
            batch = nxt
        with _timed(seconds, "waiting for the database"):
            _report(writes, on_progress, wait=True)
        tx.submit(tx.end, True).result()
        committed = True
    finally:
        if not committed:
            for fut, _ in writes:
                fut.cancel()
            pool.submit(tx.end, False).result()


def _report(writes: deque[tuple[Future[None], int]], on_progress: Callable[[int], None] | None, *,
            wait: bool) -> None:
    """Surface finished writes (and their errors) in order."""
    while writes and (wait or writes[0][0].done()):
        fut, n = writes.popleft()
        fut.result()
        if on_progress:
            on_progress(n)
