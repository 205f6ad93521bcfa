"""The one place that takes locks for domain writes.

Two kinds, always taken in this order within a transaction, and each kind in sorted key order, so that no two
transactions can wait on each other in a circle:

1. **Person locks** (:func:`customers`, :func:`anonymous`): a domain write that keys a row by a customer (or by an
   anonymous id) holds a *shared* lock on that person until it commits; the job that makes domains follow a
   profile merge (``customers.follow``) holds the *exclusive* lock on the merged profile while it re-points rows.
   So a row written for a profile at the moment it is merged is either written for the survivor (the merge had
   committed: the lock answers the survivor) or re-pointed by the follow job, which waits for the write to commit.
   Identity resolution never takes them: ingestion never waits for a domain.
2. **Row locks** (:func:`rows`): ``SELECT ... FOR UPDATE`` in primary-key order, with the rows read as the lock
   holder left them. Every check that guards a write runs after this returns.

PostgreSQL: person locks are transaction-level advisory locks (two-key form, its own namespace per kind; a hash
collision only makes two people wait for each other, never wrong). SQLite: a write transaction holds the database
lock from ``BEGIN IMMEDIATE``, so locking is a no-op there, and merged profiles are still followed to survivors.

Domains call these and never ``with_for_update`` themselves (a test holds the source tree to it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import String, Text, bindparam, event, func, inspect, select, text, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql.sqltypes import NullType

from omnijourney.core.errors import NotFound

T = TypeVar("T")

_CUSTOMER_NS = 7_100_002
_ANONYMOUS_NS = 7_100_003
_MANY = 20  # composite keys locked through arrays beyond this many (PostgreSQL)
LOCKED = "omni_locked_customers"  # session.info: the profiles this transaction holds a person lock on


def _advisory(session: Session, namespace: int, keys: list[str], *, exclusive: bool) -> None:
    if not keys or session.get_bind().dialect.name != "postgresql":
        return
    fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    # one round trip; rows are locked in the order of the (sorted) array
    session.execute(text(f"SELECT {fn}(:ns, hashtext(k)) FROM unnest(cast(:keys AS text[])) WITH ORDINALITY "
                         "AS u(k, n) ORDER BY n"), {"ns": namespace, "keys": keys})


def customers(session: Session, ids: Iterable[str], *, exclusive: bool = False,
              missing_ok: bool = False) -> dict[str, str]:
    """Lock people by profile id; returns each id's surviving profile (itself unless it was merged).

    The survivor is read after the lock, so it is the one a concurrent merge committed, and it is locked too.
    ``exclusive`` (the merge-follow job only) locks the given, merged, profiles exclusively and their survivors
    shared. Exclusive locks are only ever taken on merged profiles and survivors are found by following
    ``merged_into``, so every wait points forward along merges and no two transactions can wait in a circle.
    Unknown ids raise :class:`NotFound` (``field="customer_id"``) unless ``missing_ok``.
    """
    from omnijourney.customers.models import Customer

    wanted = sorted(set(ids))
    held: set[str] = session.info.setdefault(LOCKED, set())
    merged_into: dict[str, str | None] = {}
    pending, mode = wanted, exclusive
    while pending:
        _advisory(session, _CUSTOMER_NS, pending if mode else [k for k in pending if k not in held], exclusive=mode)
        held.update(pending)
        mode = False  # survivors are only ever locked shared: exclusive locks are for merged (dead) profiles
        found = dict(session.execute(select(Customer.id, Customer.merged_into).where(Customer.id.in_(pending))).all())
        if not missing_ok and (missing := [k for k in pending if k not in found]):
            raise NotFound(f"no customer {missing[0]!r}", field="customer_id")
        merged_into.update(found)
        # the survivor is locked as well: the write lands on it (merged_into is kept flat: normally one hop)
        pending = sorted({v for v in found.values() if v is not None} - merged_into.keys())
    out: dict[str, str] = {}
    for cid in wanted:
        if cid not in merged_into:
            continue
        target, seen = cid, {cid}
        while (nxt := merged_into.get(target)) is not None and nxt not in seen:
            seen.add(nxt)
            target = nxt
        out[cid] = target
    return out


def customer(session: Session, customer_id: str) -> str:
    """:func:`customers` for one id: the surviving profile id, locked (shared)."""
    return customers(session, [customer_id])[customer_id]


def anonymous(session: Session, anonymous_ids: Iterable[str], *, exclusive: bool = False) -> None:
    """Lock anonymous visitors (shared for a write keyed by the anonymous id; exclusive for the job that hands
    their rows to the profile they turned out to be)."""
    _advisory(session, _ANONYMOUS_NS, sorted(set(anonymous_ids)), exclusive=exclusive)


_BY_KEY: dict[tuple[type, bool], Any] = {}  # (model, one key?): its locking select, built once


def _by_key(model: type, column: Any, one: bool) -> Any:
    """The locking ``SELECT`` of a single-column key, built once per model with a bound parameter: building it
    anew (and hashing it for the compiled cache) was half of a lock's client time, and a checkout with its capture
    takes seven locks."""
    q = _BY_KEY.get((model, one))
    if q is None:
        where = column == bindparam("k") if one else column.in_(bindparam("k", expanding=True))
        q = _BY_KEY[(model, one)] = (select(model).where(where).order_by(column).with_for_update()
                                     .execution_options(populate_existing=True))
    return q


def rows(session: Session, model: type[T], keys: Iterable[Any]) -> dict[Any, T]:
    """``SELECT ... FOR UPDATE`` the rows of ``model`` with these primary keys, in key order; returns them by key
    (missing keys are simply absent). A composite key is given and returned as a tuple in the primary key's
    column order. Read as the lock holder left them, not as this session cached them."""
    pk = inspect(model).primary_key
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    if len(pk) == 1:
        column = pk[0]
        one = len(wanted) == 1
        found = session.scalars(_by_key(model, column, one), {"k": wanted[0] if one else wanted})
        return {getattr(obj, column.key): obj for obj in found}
    if len(wanted) > _MANY and session.get_bind().dialect.name == "postgresql":
        # many composite keys (an import's chunk): one array per column, joined; a list of row values is planned
        # as one index probe each (26 ms of planning for 300 keys, seconds for thousands)
        arrays = [bindparam(f"k{i}", [k[i] for k in wanted], type_=ARRAY(_type(c))) for i, c in enumerate(pk)]
        given = select(func.unnest(*arrays).table_valued(*[f"k{i}" for i in range(len(pk))]).render_derived())
        q = select(model).where(tuple_(*pk).in_(given)).order_by(*pk)
    else:
        q = select(model).where(tuple_(*pk).in_(wanted)).order_by(*pk)
    q = q.with_for_update().execution_options(populate_existing=True)
    return {tuple(getattr(obj, c.key) for c in pk): obj for obj in session.scalars(q)}


def _type(column: Any) -> Any:
    """The column's type for an array of its values (a foreign key column declared without a type has none yet)."""
    return Text() if isinstance(column.type, (NullType, String)) else column.type


def row(session: Session, model: type[T], key: Any, *, field: str = "id") -> T:
    """:func:`rows` for one key; :class:`NotFound` naming ``field`` when there is no such row."""
    found = rows(session, model, [key]).get(key)
    if found is None:
        raise NotFound(f"no {model.__name__.lower()} {key!r}", field=field)
    return found


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _release(session: Session) -> None:
    # transaction-level locks end with the transaction
    session.info.pop(LOCKED, None)
