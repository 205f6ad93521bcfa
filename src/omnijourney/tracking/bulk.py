"""Bulk ingestion: history backfills and replays, a million events at a time.

The same resolution and the same rows as :func:`omnijourney.tracking.service.ingest`, in batches of
``batch_size`` messages, one transaction per batch. Re-running an import stores nothing twice
(``messageId``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

from omnijourney.config import IdentitySettings
from omnijourney.db import Database
from omnijourney.tracking.messages import Message
from omnijourney.tracking.service import ingest


@dataclass(slots=True)
class ImportResult:
    accepted: int = 0  # newly stored
    duplicates: int = 0  # already stored before (or earlier in the same import)


def batches(messages: Iterable[Message], size: int) -> Iterator[list[Message]]:
    it = iter(messages)
    while part := list(islice(it, size)):
        yield part


def import_messages(db: Database, messages: Iterable[Message], *, settings: IdentitySettings,
                    batch_size: int = 20_000, on_progress: Callable[[int], None] | None = None) -> ImportResult:
    """Store ``messages`` with their profiles resolved; ``on_progress(n)`` after each batch of n."""
    result = ImportResult()
    for part in batches(messages, batch_size):
        with db.transaction() as s:
            r = ingest(s, messages=part, settings=settings)
        result.accepted += r.accepted
        result.duplicates += r.duplicates
        if on_progress:
            on_progress(len(part))
    return result
