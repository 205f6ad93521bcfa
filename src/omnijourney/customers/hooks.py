"""What other domains do when two profiles turn out to be one person, or a visitor becomes known.

Domains register rules here; identity resolution never calls them inside its transaction. It enqueues a job
(``customers.follow``), and the job runs them outside the ingestion lock, holding the people's locks:

* ``on_merge(session, [(merged_id, survivor_id)])``: domain rules for two profiles becoming one (two active carts
  become one). Plain re-pointing needs no handler: columns declared with ``customers.follow.customer_ref`` follow
  by themselves.
* ``on_known(session, {customer_id: [anonymous ids]})``: a profile gained a known identifier (a login, an email at
  the till, a scanned card), so what the visitor did anonymously becomes the customer's. An optional
  ``interested(session, known)`` runs in the resolving transaction and keeps only the profiles the domain has
  something for, so that no job is enqueued for nothing (a history import).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

MergeHandler = Callable[[Session, Sequence[tuple[str, str]]], None]
KnownHandler = Callable[[Session, dict[str, list[str]]], None]
KnownFilter = Callable[[Session, dict[str, list[str]]], dict[str, list[str]]]
_handlers: list[MergeHandler] = []
_known_handlers: list[tuple[KnownHandler, KnownFilter | None]] = []
# Identifier types that make a profile someone we know (a login, an email at the till, a scanned card).
KNOWN_TYPES = frozenset({"user_id", "email", "phone", "loyalty_card", "whatsapp"})


def on_merge(handler: MergeHandler) -> MergeHandler:
    """Register ``handler(session, [(merged_id, survivor_id), ...])``; usable as a decorator."""
    if handler not in _handlers:
        _handlers.append(handler)
    return handler


def run_merge_handlers(session: Session, pairs: Sequence[tuple[str, str]]) -> None:
    """Every domain's merge rule, in the merge-follow job."""
    for handler in _handlers:
        handler(session, pairs)


def on_known(*, interested: KnownFilter | None = None) -> Callable[[KnownHandler], KnownHandler]:
    """Register ``handler(session, {customer_id: [their anonymous ids]})`` (a decorator)."""

    def register(handler: KnownHandler) -> KnownHandler:
        if all(h is not handler for h, _ in _known_handlers):
            _known_handlers.append((handler, interested))
        return handler

    return register


def interesting(session: Session, known: dict[str, list[str]]) -> dict[str, list[str]]:
    """The part of ``known`` some domain has something for (in the resolving transaction)."""
    if not known or not _known_handlers:
        return {}
    wanted: dict[str, set[str]] = {}
    for _, interested in _known_handlers:
        for cid, anons in (known if interested is None else interested(session, known)).items():
            wanted.setdefault(cid, set()).update(anons)
    return {cid: sorted(anons) for cid, anons in wanted.items()}


def run_known_handlers(session: Session, known: dict[str, list[str]]) -> None:
    """Every domain's "became known" rule, in the follow job."""
    if known:
        for handler, _ in _known_handlers:
            handler(session, known)
