"""Domains follow the person: rows keyed by a customer end on the surviving profile after a merge.

Identity resolution decides merges inside the ingestion lock and only enqueues the follow-up (one job row per
transaction that merged, whatever the number of domains). The jobs below then, outside that lock:

* :func:`follow_merge` takes the merged profiles' person locks exclusively (``omnijourney.locks``), so every
  domain write that was keyed by a merged profile has committed, and none can start on it (a new write is led to
  the survivor by its own lock); runs the domain rules registered with ``customers.hooks.on_merge`` (two active
  carts become one); then re-points every column declared with :func:`customer_ref` in one statement per column.
* :func:`follow_known` hands what an anonymous visitor did (their anonymous carts) to the profile they turned out
  to be (``customers.hooks.on_known``).

A domain cannot forget this: a column declared with :func:`customer_ref` is re-pointed without more code, and a
flush that writes such a column for a customer this transaction did not lock fails (see ``_guard``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Column, String, event, inspect
from sqlalchemy.orm import Mapped, Session, mapped_column

from omnijourney import jobs, locks
from omnijourney.customers import hooks
from omnijourney.db import Base, remap

FOLLOWS = "follows_customer"
MERGE_JOB = "customers.follow_merge"
KNOWN_JOB = "customers.follow_known"


def customer_ref(*args: Any, nullable: bool = True, **kwargs: Any) -> Mapped[Any]:
    """A column holding a customer (profile) id that follows the person through merges.

    Rows are re-pointed to the survivor by the merge-follow job, and writes of it must hold the person lock
    (``locks.customers``), which a flush checks.
    """
    info = {**kwargs.pop("info", {}), FOLLOWS: True}
    return mapped_column(*(args or (String(32),)), nullable=nullable, info=info, **kwargs)


def followed_columns() -> tuple[Column[Any], ...]:
    """Every column declared with :func:`customer_ref`, over all tables (read each time: a handful of tables, and
    a cache taken before every domain's models were imported would miss some)."""
    return tuple(c for t in Base.metadata.sorted_tables for c in t.columns if c.info.get(FOLLOWS))


@jobs.handler(MERGE_JOB, backoff_s=1.0)
def follow_merge(session: Session, args: dict[str, Any]) -> None:
    """Move what domains keep for merged profiles to their survivors (idempotent)."""
    merged = sorted({m for m, _ in args["pairs"]})
    survivor_of = locks.customers(session, merged, exclusive=True, missing_ok=True)
    pairs = [(m, survivor_of[m]) for m in merged if survivor_of.get(m, m) != m]
    if not pairs:
        return
    hooks.run_merge_handlers(session, pairs)
    session.flush()
    mapping = dict(pairs)
    for column in followed_columns():
        remap(session, column.table, column.name, mapping)
    session.expire_all()  # rows changed behind the ORM's back


@jobs.handler(KNOWN_JOB, backoff_s=1.0)
def follow_known(session: Session, args: dict[str, Any]) -> None:
    """Profiles that just became known adopt their anonymous ids' rows (idempotent)."""
    known: dict[str, list[str]] = args["known"]
    locks.anonymous(session, [a for anons in known.values() for a in anons], exclusive=True)
    survivor_of = locks.customers(session, known, missing_ok=True)
    by_survivor: dict[str, list[str]] = {}
    for cid, anons in known.items():
        if cid in survivor_of:
            by_survivor.setdefault(survivor_of[cid], []).extend(anons)
    hooks.run_known_handlers(session, by_survivor)


def enqueue_merges(session: Session, pairs: Sequence[tuple[str, str]]) -> None:
    """Called by identity resolution, in its transaction: one job for every merge it made."""
    if pairs:
        jobs.enqueue(session, MERGE_JOB, {"pairs": [list(p) for p in pairs]})


def enqueue_known(session: Session, anonymous_ids: dict[str, list[str]]) -> None:
    """Called by identity resolution, in its transaction, for profiles that just gained a known identifier."""
    known = hooks.interesting(session, anonymous_ids)
    if known:
        jobs.enqueue(session, KNOWN_JOB, {"known": known})


@cache
def _followed_attributes(cls: type) -> tuple[str, ...]:
    mapper = inspect(cls)
    # a column_property of a SQL expression (a level's pooled units) has no column info: it is never written
    return tuple(attr.key for attr in mapper.column_attrs
                 if any(getattr(c, "info", {}).get(FOLLOWS) for c in attr.columns))


@event.listens_for(Session, "before_flush")
def _guard(session: Session, _context: Any, _instances: Any) -> None:
    """Refuse to write a customer-keyed row for a customer this transaction holds no person lock on: without it,
    the row could stay on a profile merged at that moment."""
    held = session.info.get(locks.LOCKED, ())
    for obj in (*session.new, *session.dirty):
        attrs = _followed_attributes(type(obj))
        if not attrs:
            continue
        state = inspect(obj)
        for key in attrs:
            value = getattr(obj, key)
            if value is None or value in held:
                continue
            if state.pending or state.attrs[key].history.has_changes():
                raise RuntimeError(f"{type(obj).__name__}.{key} = {value!r} written without locks.customers(): "
                                   "a concurrent profile merge could leave the row behind")
