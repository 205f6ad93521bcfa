"""Background work for every domain: durable jobs in the application database.

A job is enqueued in the same transaction as the change that causes it (:func:`enqueue`), so a rolled-back order
schedules nothing and a committed one always does. Workers (:mod:`omnijourney.jobs.worker`) claim due jobs
(PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so many workers on many machines never take the same job; SQLite: its
single writer), run the handler in a transaction of its own and delete the job in that same transaction: a
handler's changes and the job's completion commit together. A failure puts the job back with exponential backoff,
and after ``max_attempts`` leaves it ``failed`` for an operator (``omni jobs``). Delivery is at least once (a
worker that dies mid-job leaves it to be claimed again once its lease lapses), so handlers are idempotent.

Effects that must wait for the commit (publishing, sending) register with :func:`after_commit`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, delete, event, func, select, text, update
from sqlalchemy.orm import Session

from omnijourney.core.errors import Conflict, Invalid, NotFound
from omnijourney.core.time import utcnow
from omnijourney.db import dialect_insert
from omnijourney.jobs.models import Job

Handler = Callable[[Any, dict[str, Any]], None]  # (Session, args); (Database, args) for external kinds


@dataclass(frozen=True, slots=True)
class Kind:
    """A registered kind of job: its handler and retry policy."""

    name: str
    handler: Handler
    max_attempts: int
    backoff_s: float  # first retry after about this long, doubling per attempt
    max_backoff_s: float
    external: bool = False  # runs outside any transaction: see handler()


_kinds: dict[str, Kind] = {}
_AFTER_COMMIT = "omni_after_commit"
_BATCH = "omni_job_batch"  # session.info: rows enqueued inside jobs.batch(), written when it ends
_wakers: list[Callable[[], None]] = []  # in-process workers to nudge when a transaction enqueued work


def handler(name: str, *, max_attempts: int = 10, backoff_s: float = 2.0,
            max_backoff_s: float = 3600.0, external: bool = False) -> Callable[[Handler], Handler]:
    """Register ``fn(session, args)`` as the handler of jobs of kind ``name`` (a decorator).

    Handlers run in their own transaction, must be idempotent (a job may run again after a crash) and take their
    locks through :mod:`omnijourney.locks` like any domain write.

    ``external=True`` is for work that calls a system outside the database (a payment provider): the worker calls
    ``fn(db, args)`` with the :class:`~omnijourney.db.Database` and no transaction open, so no database lock is held
    while the other system answers; the handler opens its own short transactions, and the job is deleted after it
    returns in a transaction of its own. A crash between the call and that deletion runs it again, so such handlers
    are idempotent towards the other system too (idempotency keys).
    """

    def register(fn: Handler) -> Handler:
        existing = _kinds.get(name)
        if existing is not None and existing.handler is not fn:
            raise ValueError(f"job kind {name!r} is registered twice")
        _kinds[name] = Kind(name, fn, max_attempts, backoff_s, max_backoff_s, external)
        return fn

    return register


def kind(name: str) -> Kind:
    try:
        return _kinds[name]
    except KeyError:
        raise ValueError(f"no handler for job kind {name!r}") from None


def enqueue(session: Session, name: str, args: dict[str, Any] | None = None, *, at: datetime | None = None,
            delay_s: float = 0.0, unique_key: str | None = None) -> None:
    """Schedule a job of kind ``name`` in the caller's transaction, due at ``at`` (default now + ``delay_s``).

    With ``unique_key``, enqueueing work that is already pending, running or failed (waiting for an operator's
    retry or discard) under that key does nothing; once that job is done, the key schedules new work again.
    """
    row = _row(name, args, at, delay_s, unique_key)
    if not _batched(session, row):
        _insert(session, [row])


def _batched(session: Session, row: dict[str, Any]) -> bool:
    """Whether ``row`` waits for the end of the session's :func:`batch` block (it is then written with the rest)."""
    waiting: list[dict[str, Any]] | None = session.info.get(_BATCH)
    if waiting is None:
        return False
    waiting.append(row)
    return True


def _row(name: str, args: dict[str, Any] | None, at: datetime | None, delay_s: float,
         unique_key: str | None) -> dict[str, Any]:
    spec = kind(name)
    now = utcnow()
    return {"kind": name, "args": args or {}, "status": "pending", "run_at": at or now + timedelta(seconds=delay_s),
            "attempts": 0, "max_attempts": spec.max_attempts, "unique_key": unique_key, "created_at": now}


_INSERT_PG = ("INSERT INTO jobs (kind, args, status, run_at, attempts, max_attempts, unique_key, created_at) "
              "VALUES (%(kind)s, %(args)s, %(status)s, %(run_at)s, %(attempts)s, %(max_attempts)s, %(unique_key)s, "
              "%(created_at)s) ON CONFLICT (unique_key) DO NOTHING")


def key(name: str, ident: str) -> str:
    """The ``unique_key`` of the job of kind ``name`` about one thing (``ident``): what :func:`cancel` is given
    when a change makes that job pointless."""
    return f"{name}:{ident}"


def enqueue_on(session: Session, cursor: Any, name: str, args: dict[str, Any] | None = None, *,
               at: datetime | None = None, unique_key: str | None = None) -> None:
    """:func:`enqueue` through ``cursor``, a psycopg cursor of the session's own PostgreSQL connection: for a hot
    path that sends its statements in one pipeline (``inventory.reservations``). The same row, in the same
    transaction, and the same wake-up after the commit; inside :func:`batch` it waits for the block like any
    other."""
    from psycopg.types.json import Jsonb

    row = _row(name, args, at, 0.0, unique_key)
    if _batched(session, row):
        return
    cursor.execute(_INSERT_PG, {**row, "args": Jsonb(row["args"])})
    _wake_if_due(session, [row])


_CANCEL = delete(Job).where(Job.unique_key.in_(bindparam("keys", expanding=True)), Job.status == "pending")


def cancel(session: Session, keys: list[str]) -> None:
    """Delete the pending jobs enqueued under these unique keys (:func:`key`), in the caller's transaction: work
    that the change being committed made pointless (a checkout's recovery once it has its answer) is not left for a
    worker to claim only to find nothing to do. A job a worker is running already is left to finish."""
    if keys:
        session.execute(_CANCEL, {"keys": keys}, execution_options={"synchronize_session": False})


_INSERTS: dict[tuple[str, bool], Any] = {}  # (dialect, with a unique key?): the INSERT, built once


def _insert(session: Session, rows: list[dict[str, Any]]) -> None:
    unique = any(r["unique_key"] is not None for r in rows)
    key = (session.get_bind().dialect.name, unique)
    stmt = _INSERTS.get(key)
    if stmt is None:
        stmt = dialect_insert(session, Job.__table__)
        if unique:
            stmt = stmt.on_conflict_do_nothing(index_elements=["unique_key"])
        _INSERTS[key] = stmt
    # the rows as parameters (one INSERT of them all on PostgreSQL, "insertmanyvalues"): one compiled statement
    # whatever their number, where .values(rows) compiled anew for each
    session.execute(stmt, rows)
    _wake_if_due(session, rows)


def _wake_if_due(session: Session, rows: list[dict[str, Any]]) -> None:
    """Nudge the in-process workers after the commit when a job is due now; work due later is found by their poll
    (a checkout schedules three jobs minutes ahead: waking for them was a claim transaction for nothing)."""
    now = utcnow()
    if any(r["run_at"] <= now for r in rows):
        after_commit(session, _wake)


@contextmanager
def batch(session: Session) -> Iterator[None]:
    """Jobs enqueued inside the block are written together when it ends, in one ``INSERT`` (a checkout schedules
    three): the same rows, in the same transaction, one round trip. Nested blocks write with the outermost; a block
    that raises writes nothing (its transaction rolls back)."""
    if session.info.get(_BATCH) is not None:
        yield
        return
    rows: list[dict[str, Any]] = []
    session.info[_BATCH] = rows
    try:
        yield
    finally:
        session.info.pop(_BATCH, None)
    if rows:
        _insert(session, rows)


def after_commit(session: Session, fn: Callable[[], None]) -> None:
    """Run ``fn()`` once the session's current transaction has committed (never if it rolls back)."""
    pending: list[Callable[[], None]] = session.info.setdefault(_AFTER_COMMIT, [])
    if fn not in pending:
        pending.append(fn)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for fn in session.info.pop(_AFTER_COMMIT, []):
        fn()


@event.listens_for(Session, "after_rollback")
def _forget_after_commit(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT, None)


def on_enqueue(fn: Callable[[], None]) -> Callable[[], None]:
    """Call ``fn()`` after any transaction of this process that enqueued a job commits (an embedded worker's
    wake-up); returns a function that unregisters it."""
    _wakers.append(fn)
    return lambda: _wakers.remove(fn) if fn in _wakers else None


def _wake() -> None:
    for fn in list(_wakers):
        fn()


@handler("jobs.noop")
def noop(session: Session, args: dict[str, Any]) -> None:
    """A job that does nothing: smoke tests of a deployment's workers and benchmarks of the mechanism itself
    (``bench/jobs.py``). Registered here so that every worker, whatever it imports, runs it."""


# ---------------------------------------------------------------- what a worker does

@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    kind: str
    args: dict[str, Any]
    attempts: int
    max_attempts: int


_CLAIM = """UPDATE jobs SET status = 'running', locked_by = :worker, locked_at = :now, attempts = attempts + 1
WHERE id IN (SELECT id FROM jobs WHERE status = 'pending' AND run_at <= :now ORDER BY run_at, id LIMIT :limit{skip})
RETURNING id, kind, args, attempts, max_attempts"""


def claim(session: Session, worker: str, limit: int) -> list[Claimed]:
    """Mark up to ``limit`` due jobs as running for ``worker`` (oldest due first); the caller commits."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    c = Job.__table__.c
    stmt = (text(_CLAIM.format(skip=" FOR UPDATE SKIP LOCKED" if postgresql else ""))
            .bindparams(bindparam("now", type_=c.run_at.type))
            .columns(c.id, c.kind, c.args, c.attempts, c.max_attempts))
    rows = session.execute(stmt, {"worker": worker, "now": utcnow(), "limit": limit}).all()
    return [Claimed(*r) for r in sorted(rows)]


def relax_durability(session: Session) -> None:
    """PostgreSQL: this job's commit does not wait for the disk flush (``synchronous_commit = off``), about a third of
    a small job's time. Safe for at-least-once work: a crash can lose only the last moments of commits, and with
    each the job's own deletion, so the job runs again; nothing can be half done."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit = off"))


class LeaseLost(Exception):
    """The job was given to another worker while this one ran it (its lease lapsed): this run is rolled back."""


# built once, on the table (an ORM DELETE through the session also works out which loaded objects it removes)
_FINISH = delete(Job.__table__).where(Job.__table__.c.id == bindparam("id"),
                                      Job.__table__.c.locked_by == bindparam("worker"),
                                      Job.__table__.c.status == "running")


def finish(session: Session, job: Claimed, worker: str) -> None:
    """Delete the job in the handler's transaction; raises :class:`LeaseLost` if it is no longer ours."""
    gone = session.execute(_FINISH, {"id": job.id, "worker": worker})
    if gone.rowcount != 1:
        raise LeaseLost(f"job {job.id} is no longer held by {worker}")


@dataclass(slots=True)
class Running:
    """An external job while its handler runs: whether the handler completed it in a transaction of its own."""

    job: Claimed
    worker: str
    completed: list[bool] = field(default_factory=list)  # [True] once that transaction committed


_running: ContextVar[Running | None] = ContextVar("omni_running_job", default=None)
_COMPLETING = "omni_completing_job"  # session.info: the job this session's transaction deletes


@contextmanager
def running(job: Claimed, worker: str) -> Iterator[Running]:
    """The worker runs an external handler inside this block, so that :func:`complete` finds its job."""
    state = Running(job, worker)
    token = _running.set(state)
    try:
        yield state
    finally:
        _running.reset(token)


def complete(session: Session) -> None:
    """In an external handler's last transaction: delete its job there, so that its effects and the job's end commit
    together and the worker needs no transaction of its own for it (a capture: one commit less). Raises
    :class:`LeaseLost` (rolling the transaction back) if another worker holds the job now. Does nothing outside a
    worker (the handler called directly) or once done."""
    state = _running.get()
    if state is None or state.completed or session.info.get(_COMPLETING) is state:
        return
    finish(session, state.job, state.worker)
    session.info[_COMPLETING] = state
    after_commit(session, lambda: state.completed.append(True))


def backoff(spec: Kind, attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: doubling from ``backoff_s``, capped, with up to 25% jitter."""
    base = min(spec.max_backoff_s, spec.backoff_s * 2 ** max(0, attempts - 1))
    return base * (1 + random.random() / 4)  # spreads retries out


def fail(session: Session, job: Claimed, worker: str, error: str) -> str:
    """Record a failed attempt: back to ``pending`` after a backoff, or ``failed`` when attempts are used up."""
    spec = _kinds.get(job.kind)
    final = spec is None or job.attempts >= job.max_attempts
    now = utcnow()
    session.execute(update(Job).where(Job.id == job.id, Job.locked_by == worker).values(
        status="failed" if final else "pending", locked_by=None, locked_at=None, last_error=error[-8000:],
        run_at=now if final else now + timedelta(seconds=backoff(spec, job.attempts))))  # type: ignore[arg-type]
    return "failed" if final else "pending"


def heartbeat(session: Session, worker: str) -> None:
    """Keep ``worker``'s running jobs leased."""
    session.execute(update(Job).where(Job.locked_by == worker, Job.status == "running").values(locked_at=utcnow()))


def reclaim(session: Session, lease_s: float) -> int:
    """Give back jobs whose worker stopped renewing its lease (it died): they run again, unless their attempts are
    used up (a job that kills its worker every time ends ``failed`` for an operator instead of looping)."""
    cutoff = utcnow() - timedelta(seconds=lease_s)
    status = case((Job.attempts >= Job.max_attempts, "failed"), else_="pending")
    result = session.execute(update(Job).where(Job.status == "running", Job.locked_at < cutoff).values(
        status=status, locked_by=None, locked_at=None, last_error="the worker running it stopped"))
    return result.rowcount or 0


# ---------------------------------------------------------------- what an operator sees and does

@dataclass(frozen=True, slots=True)
class Summary:
    kind: str
    status: str
    count: int
    next_run_at: datetime | None


def summary(session: Session) -> list[Summary]:
    """Jobs per kind and status, with the earliest due time."""
    rows = session.execute(select(Job.kind, Job.status, func.count(), func.min(Job.run_at))
                           .group_by(Job.kind, Job.status).order_by(Job.kind, Job.status)).all()
    return [Summary(*r) for r in rows]


def list_jobs(session: Session, *, status: str | None = None, kind_name: str | None = None,
              limit: int = 50) -> list[Job]:
    """Jobs, failed and running first, then by due time."""
    if status is not None and status not in ("pending", "running", "failed"):
        raise Invalid(f"status must be pending, running or failed, not {status!r}", field="status")
    q = select(Job)
    if status is not None:
        q = q.where(Job.status == status)
    if kind_name is not None:
        q = q.where(Job.kind == kind_name)
    # what needs an operator first: behind a backlog of due work, failed jobs would fall past the limit
    first = case((Job.status == "failed", 0), (Job.status == "running", 1), else_=2)
    return list(session.scalars(q.order_by(first, Job.run_at, Job.id).limit(limit)))


def retry(session: Session, job_id: int) -> Job:
    """Run a failed job again now, with a fresh count of attempts."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}", field="id")
    if job.status != "failed":
        raise Conflict(f"job {job_id} is {job.status}, not failed", field="id", code="job_not_failed")
    job.status, job.run_at, job.attempts = "pending", utcnow(), 0
    session.flush()
    after_commit(session, _wake)
    return job


def discard(session: Session, job_id: int) -> None:
    """Drop a job that is not running (a failed one an operator gave up on, or pending work no longer wanted)."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}", field="id")
    if job.status == "running":
        raise Conflict(f"job {job_id} is running", field="id", code="job_running")
    session.delete(job)
    session.flush()
