"""What other domains do when two profiles turn out to be one person, or a visitor becomes known.

Identity resolution calls every registered handler inside its transaction: merge handlers with the
(merged, survivor) pairs of a merge, "known" handlers with profiles that just gained a known identifier.
So a domain that keys rows by customer (carts, later orders or loyalty accounts) can follow the person
without the customers package knowing its tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

MergeHandler = Callable[[Session, Sequence[tuple[str, str]]], None]
KnownHandler = Callable[[Session, dict[str, list[str]]], None]
_handlers: list[MergeHandler] = []
_known_handlers: list[KnownHandler] = []
# Identifier types that make a profile someone we know (a login, an email at the till, a scanned card).
KNOWN_TYPES = frozenset({"user_id", "email", "phone", "loyalty_card", "whatsapp"})


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


def on_known(handler: KnownHandler) -> KnownHandler:
    """Register ``handler(session, {customer_id: [their anonymous ids]})`` for profiles that just gained a
    known identifier (``KNOWN_TYPES``) or absorbed another profile: e.g. an anonymous visitor logged in, so
    their anonymous cart becomes the customer's."""
    if handler not in _known_handlers:
        _known_handlers.append(handler)
    return handler


def profiles_became_known(session: Session, anonymous_ids: dict[str, list[str]]) -> None:
    if anonymous_ids:
        for handler in _known_handlers:
            handler(session, anonymous_ids)
