"""Bulk ingestion: history backfills and replays, a million events at a time.

The same identity resolution and the same rows as :func:`omnijourney.tracking.service.ingest`, shaped
for throughput:

- **Slices.** Messages are taken in slices of at most ``slice_size`` messages and about ``slice_seconds``:
  one transaction each, holding the identity lock. Live ingestion waits for at most one slice, so the time
  bound is what keeps a running shop's tracking calls answered during a backfill; a failure loses no more
  than the slice being written. Re-running an import stores nothing twice (``messageId``).
- **Bulk resolution** (:class:`omnijourney.customers.bulk.BulkResolver`): the graph stays in memory for
  the whole slice and one thread does the database work while this one prepares and resolves.
- **Duplicates** are checked against the database with each batch's graph read; that read runs before
  the previous batch's events are written, so duplicates of that batch are caught in memory.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from time import perf_counter

from omnijourney.config import IdentitySettings
from omnijourney.core.runtime import collector_paused
from omnijourney.customers.bulk import BulkResolver
from omnijourney.db import Database, insert_encoded
from omnijourney.tracking.messages import Message
from omnijourney.tracking.service import Key, PreparedBatch, event_rows, prepare, stored_keys


@dataclass(slots=True)
class ImportResult:
    accepted: int = 0  # newly stored
    duplicates: int = 0  # already stored before (or earlier in the same import)
    # seconds spent per step, summed; the calling thread's and the database thread's overlap
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))


def batches(messages: Iterable[Message], size: int) -> Iterator[list[Message]]:
    it = iter(messages)
    while part := list(islice(it, size)):
        yield part


def import_messages(db: Database, messages: Iterable[Message], *, settings: IdentitySettings,
                    batch_size: int = 20_000, slice_size: int = 200_000, slice_seconds: float = 2.0,
                    on_progress: Callable[[int], None] | None = None) -> ImportResult:
    """Store ``messages`` with their profiles resolved; ``on_progress(n)`` as each batch of n is written.

    Messages should come roughly in time order (as exports do): identity resolution, like live
    ingestion, links and merges in the order it sees events.
    """
    result = ImportResult()
    per_slice = max(1, slice_size // batch_size)
    incoming = batches(messages, batch_size)
    writes: deque[tuple[Future[None], int]] = deque()  # in order; a slice's commit counts 0 messages
    committed: Future[None] | None = None
    with collector_paused(), ThreadPoolExecutor(1, thread_name_prefix="omni-import-db") as pool:
        while (first := next(incoming, None)) is not None:
            rest = partial(_until, incoming, per_slice - 1, slice_seconds)
            committed = _import_slice(db, pool, settings, first, rest, committed, result, writes, on_progress)
        _report(writes, on_progress, wait=True)
    return result


def _until(incoming: Iterator[list[Message]], n: int, seconds: float,
           locked: Callable[[], float]) -> Iterator[list[Message]]:
    """Up to ``n`` more batches, none taken ``seconds`` after the slice took the identity lock. The wait for
    the lock is not the slice's time (live traffic holding it would otherwise shrink every slice), and no
    batch is taken before the lock is held (it would lengthen the slice past its time)."""
    deadline = locked() + seconds
    for _ in range(n):
        if perf_counter() >= deadline or (part := next(incoming, None)) is None:
            return
        yield part


def _import_slice(db: Database, pool: ThreadPoolExecutor, settings: IdentitySettings, first: list[Message],
                  batches_after: Callable[[Callable[[], float]], Iterator[list[Message]]],
                  after: Future[None] | None,
                  result: ImportResult, writes: deque[tuple[Future[None], int]],
                  on_progress: Callable[[int], None] | None) -> Future[None]:
    """Import ``first`` and the batches after it in one transaction, begun once ``after`` (the previous
    slice's commit) succeeded; returns this one's commit, still running."""
    dialect = db.dialect
    seconds = result.seconds
    resolver = BulkResolver(db, settings, pool, seconds)
    resolver.begin(after)
    try:
        start = perf_counter()
        batch: PreparedBatch | None = prepare(first, settings, dialect)
        seconds["preparing"] += perf_counter() - start
        read = resolver.read(batch.identifiers, partial(stored_keys, keys=batch.keys))
        rest = batches_after(resolver.locked)
        in_flight: set[Key] = set()  # keys of the batch being written (the database cannot see them yet)
        while batch is not None:
            start = perf_counter()
            raw_next = next(rest, None)
            nxt = prepare(raw_next, settings, dialect) if raw_next is not None else None
            seconds["preparing"] += perf_counter() - start
            graph_rows, stored = resolver.fetched(read)
            dup = stored | (in_flight & batch.keys)  # rarely any outside re-runs
            fresh, idents, rows = batch.without(dup)
            customer_ids = resolver.resolve(graph_rows, fresh, idents)
            start = perf_counter()
            events = event_rows(dialect, rows, customer_ids)
            seconds["encoding"] += perf_counter() - start
            if nxt is not None:  # queued before this batch's write: read ahead while it is written
                read = resolver.read(nxt.identifiers, partial(stored_keys, keys=nxt.keys))
            writes.append((resolver.write(partial(insert_encoded, rows=events)), batch.received))
            result.accepted += len(fresh)
            result.duplicates += batch.received - len(fresh)
            in_flight = batch.keys - dup
            _report(writes, on_progress, wait=False)
            batch = nxt
        committed = resolver.commit()
    except BaseException:
        resolver.rollback()
        raise
    writes.append((committed, 0))
    return committed


def _report(writes: deque[tuple[Future[None], int]], on_progress: Callable[[int], None] | None, *,
            wait: bool) -> None:
    """Surface finished writes (and their errors) in order."""
    while writes and (wait or writes[0][0].done()):
        future, n = writes.popleft()
        future.result()
        if on_progress and n:
            on_progress(n)
