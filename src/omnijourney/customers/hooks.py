"""What other domains do when two profiles turn out to be one person.

Identity resolution calls every registered handler with the (merged, survivor) pairs of a merge, inside
its transaction, so a domain that keys rows by customer (carts, later orders or loyalty accounts) can
follow the merge without the customers package knowing its tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

MergeHandler = Callable[[Session, Sequence[tuple[str, str]]], None]
_handlers: list[MergeHandler] = []


def on_merge(handler: MergeHandler) -> MergeHandler:
    """Register ``handler(session, [(merged_id, survivor_id), ...])``; usable as a decorator."""
    if handler not in _handlers:
        _handlers.append(handler)
    return handler


def profiles_merged(session: Session, pairs: Sequence[tuple[str, str]]) -> None:
    """Tell every registered domain about merges, in the merging transaction."""
    if pairs:
        for handler in _handlers:
            handler(session, pairs)
