"""Identity resolution in bulk: many batches in one transaction, the database work overlapped.

Within one transaction holding the identity lock nobody else can change the identity graph, so the
profiles read for one batch stay in memory for the next ones and only identifiers never seen before are
looked up. One thread does all the database work of the transaction, in order, on its session; the
calling thread meanwhile resolves. A batch's slice of the graph is read while the previous batch is
still being written: safe, because every profile those pending writes touch is already in memory, and
the graph keeps its own state over what the database returns for profiles it holds.

Identifiers are written batch by batch; profiles once, in their final state, at commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from time import perf_counter
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from omnijourney.config import IdentitySettings
from omnijourney.core.time import utcnow
from omnijourney.customers.graph import Graph
from omnijourney.customers.identifiers import Identifier
from omnijourney.customers.resolution import (
    IDENTITY_LOCK,
    Changes,
    GraphRows,
    MergeChanges,
    absorb,
    fetch_graph,
    resolve_in,
    save_changes,
    save_merges,
    take_changes,
    take_links,
    take_merges,
    take_new_profiles,
    wanted_identifiers,
)
from omnijourney.db import Database, EncodedRows, advisory_lock, insert_encoded
from omnijourney.tracking.messages import Message

Step = Callable[[Session], Any]
T = TypeVar("T")


class BulkResolver:
    """One transaction of bulk resolution. Call from one thread: ``begin``, then ``read`` -> ``resolve`` ->
    ``write`` per batch (the next batch's ``read`` may be issued before this one's ``write``), then ``commit``.
    Every step queues on ``pool``; the calling thread waits only for the graph reads it needs."""

    def __init__(self, db: Database, settings: IdentitySettings, pool: ThreadPoolExecutor,
                 seconds: dict[str, float]) -> None:
        self.db = db
        self.dialect = db.dialect
        self.pool = pool  # one worker: database steps run in submission order
        self.seconds = seconds
        self.graph = Graph(settings, utcnow())
        self._session: Session | None = None
        self._writes: list[Future[None]] = []
        self._error: BaseException | None = None  # the first failure of a database step
        self.locked_at: float | None = None  # perf_counter() when the identity lock was taken
        self._begun: Future[None] | None = None

    def _submit(self, step: Callable[..., T], *args: Any) -> Future[T]:
        return self.pool.submit(self._guarded, step, *args)

    def _guarded(self, step: Callable[..., T], *args: Any) -> T:
        """Run a database step unless an earlier one failed: then every later step raises that first
        error, which names the cause (a later one would only say the transaction is aborted)."""
        if self._error is not None:
            raise self._error
        try:
            return step(*args)
        except BaseException as exc:
            self._error = exc
            raise

    @contextmanager
    def _timed(self, step: str) -> Iterator[None]:
        start = perf_counter()
        try:
            yield
        finally:
            self.seconds[step] += perf_counter() - start

    # -- the calling thread --------------------------------------------------------------------
    def begin(self, after: Future[None] | None = None) -> None:
        """Queue the start of the transaction and the taking of the identity lock (waiting as long as it
        takes). ``after``: the previous transaction's :meth:`commit`; if it failed, this one fails with its
        error instead of starting."""
        self._begun = self._submit(self._begin, after)

    def locked(self) -> float:
        """Wait until the transaction holds the identity lock; when it took it (``perf_counter()``)."""
        assert self._begun is not None, "begin() first"
        self._begun.result()
        assert self.locked_at is not None
        return self.locked_at

    def read(self, identifiers: Sequence[list[Identifier]], also: Step | None = None) -> Future[tuple[GraphRows, Any]]:
        """Queue the read of what the database holds about identifiers the graph has not seen; ``also`` runs
        first in the same task (e.g. a duplicate check), its result returned beside the graph rows."""
        return self._submit(self._read, self.graph.missing(wanted_identifiers(identifiers)), also)

    def fetched(self, read: Future[tuple[GraphRows, Any]]) -> tuple[GraphRows, Any]:
        with self._timed("waiting for the database"):
            return read.result()

    def resolve(self, rows: GraphRows, messages: Sequence[Message],
                identifiers: Sequence[list[Identifier]]) -> list[str | None]:
        """Resolve messages (in order) against the graph plus ``rows``; each message's profile id."""
        with self._timed("resolving"):
            absorb(self.graph, rows)
            return resolve_in(self.graph, messages, identifiers)

    def write(self, first: Step | None = None) -> Future[None]:
        """Queue the writes of what the batches resolved since the last call: ``first`` (e.g. the events),
        then new identifiers and merges."""
        with self._timed("encoding"):
            links = take_links(self.graph, self.dialect)
            merges = take_merges(self.graph, self.dialect)
        future = self._submit(self._write, first, links, merges)
        self._writes.append(future)
        return future

    def commit(self) -> Future[None]:
        """Queue the profiles' writes and the commit, without waiting for them: the caller goes on (with the
        next transaction's first batch, say) while the database finishes this one. The future fails with the
        first error of any step of the transaction, which is then rolled back."""
        new_profiles = take_new_profiles(self.graph, self.dialect, 25_000)
        while True:  # each part is written while the next one is encoded
            with self._timed("encoding"):
                part = next(new_profiles, None)
            if part is None:
                break
            self._writes.append(self._submit(self._insert, part))
        with self._timed("encoding"):
            changes = take_changes(self.graph, self.dialect)
        self._submit(self._finish, changes)
        return self.pool.submit(self._commit)

    def rollback(self) -> None:
        for future in self._writes:
            future.cancel()
        self.pool.submit(self._end, False).result()

    # -- the database thread -------------------------------------------------------------------
    def _begin(self, after: Future[None] | None) -> None:
        if after is not None:
            after.result()  # done: it ran before this step on the same thread
        self._session = self.db.begin()
        advisory_lock(self._session, IDENTITY_LOCK)
        self.locked_at = perf_counter()

    def _read(self, wanted: set[Identifier], also: Step | None) -> tuple[GraphRows, Any]:
        assert self._session is not None
        extra = None
        if also is not None:
            with self._timed("db: reads"):
                extra = also(self._session)
        with self._timed("db: reads"):
            return fetch_graph(self._session, wanted), extra

    def _write(self, first: Step | None, links: EncodedRows | None, merges: MergeChanges) -> None:
        assert self._session is not None
        if first is not None:
            with self._timed("db: event writes"):
                first(self._session)
        with self._timed("db: profile and identity writes"):
            if links is not None:
                insert_encoded(self._session, links)
            save_merges(self._session, merges)

    def _insert(self, rows: EncodedRows) -> None:
        assert self._session is not None
        with self._timed("db: profile and identity writes"):
            insert_encoded(self._session, rows)

    def _finish(self, changes: Changes) -> None:
        assert self._session is not None
        with self._timed("db: profile and identity writes"):
            save_changes(self._session, changes)

    def _commit(self) -> None:
        if self._error is not None:  # a step failed: nothing of the transaction may stay
            self._end(False)
            raise self._error
        self._end(True)

    def _end(self, commit: bool) -> None:
        if self._session is None:
            return
        try:
            if commit:
                self._session.commit()
            else:
                self._session.rollback()
        finally:
            self._session.close()
            self._session = None
