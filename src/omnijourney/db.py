"""Engine, sessions and the one transaction pattern.

A transaction begins where a request or a job begins (``Database.transaction``) and ends there:
commit if the block finished, roll back if it raised. Services only ``flush``.

SQLite runs in WAL mode. Write transactions start with ``BEGIN IMMEDIATE`` so two writers queue on
the database lock instead of failing when one upgrades a read lock; reads stay concurrent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event, exc, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql import Insert

from omnijourney.core.types import JSONType  # noqa: F401  (re-exported for models)

_WRITE = "omni_write"


class Base(DeclarativeBase):
    """Declarative base of every table."""


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        # SQLite's default page cache is 2 MB: indexes of a few hundred thousand profiles no longer fit and
        # every insert reads pages back. 64 MB per connection, and reads through a memory map.
        cur.execute("PRAGMA cache_size=-65536")
        cur.execute("PRAGMA mmap_size=268435456")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


# A pooled PostgreSQL connection is pinged before use only after it sat idle this long. A ping on every checkout (the
# pool's pre_ping) was a round trip per transaction, a tenth of a small request's CPU; a connection in steady use
# has just proved itself, and one that breaks anyway (the server restarted under load) fails its statement once,
# which makes SQLAlchemy invalidate it and every older connection of the pool.
IDLE_PING_S = 10.0


def _ping_after_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < IDLE_PING_S:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as error:
            # the pool invalidates this connection and checks out another (up to three tries)
            raise exc.DisconnectionError(f"connection lost while idle: {error}") from error


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with the settings each dialect needs."""
    parsed = make_url(url)
    # orjson for every JSON column: profiles and events are read and written in bulk
    json = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            parsed, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8, max_overflow=16, **json
        )
        _sqlite_setup(engine)
        return engine
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    # JIT compilation costs tens of milliseconds and pays off only for long analytical queries; a misjudged
    # row estimate would otherwise make a millisecond look-up compile itself
    engine = create_engine(parsed, pool_size=10, max_overflow=20, connect_args={"options": "-c jit=off"}, **json)
    _ping_after_idle(engine)
    return engine


class Database:
    """One database: its engine and the transaction boundary."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        self.sessions = sessionmaker(self.engine, expire_on_commit=False, autoflush=True)
        # PostgreSQL only: SQLite stays out of SQLAlchemy's AUTOCOMMIT, whose reset afterwards would hand the driver
        # back its own transaction handling (which _sqlite_setup turns off)
        self._autocommit = (self.engine.execution_options(isolation_level="AUTOCOMMIT")
                            if self.dialect == "postgresql" else None)

    def begin(self, *, write: bool = True) -> Session:
        """A session with its transaction begun, which the caller ends (commit or rollback, then close).

        Prefer :meth:`transaction`; this is for a unit of work whose steps run as separate tasks
        (bulk import), where no single ``with`` block can hold it.
        """
        session = self.sessions()
        if write:
            session.connection(execution_options={_WRITE: True})
        return session

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Session]:
        """The unit of work: commit when the block ends, roll back when it raises."""
        with self.begin(write=write) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads that need no snapshot of their own (an availability answer): on PostgreSQL every
        statement commits by itself, as READ COMMITTED gives each statement its own snapshot in a transaction too,
        so no ``BEGIN`` and ``COMMIT`` round trips; on SQLite a read transaction (one snapshot, in-process). Never
        write through it."""
        if self._autocommit is None:
            with self.transaction(write=False) as session:
                yield session
            return
        with self.sessions(bind=self._autocommit) as session:
            yield session

    def lone_row(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        """The first row of one read statement that needs no transaction of its own (an API key's look-up on every
        request), sent through the driver itself: on PostgreSQL in autocommit, the statement alone (no ``BEGIN``
        and ``COMMIT`` round trips); SQLite's connections run statements outside a transaction already. ``sql``
        with ``%s`` placeholders; values come back as the driver gives them (JSON: text on SQLite)."""
        fairy = self.engine.raw_connection()
        raw = fairy.driver_connection
        try:
            if self.dialect == "postgresql":
                raw.autocommit = True
                try:
                    return raw.execute(sql, params).fetchone()
                finally:
                    if not raw.closed:
                        raw.autocommit = False
            cur = raw.execute(sql.replace("%s", "?"), params)
            try:
                return cur.fetchone()
            finally:
                cur.close()
        except self.engine.dialect.loaded_dbapi.Error as error:
            if self.engine.dialect.is_disconnect(error, raw, None):
                fairy.invalidate(error)  # as SQLAlchemy does for its own statements: not back into the pool
            raise
        finally:
            fairy.close()

    def dispose(self) -> None:
        self.engine.dispose()


def dialect_insert(session: Session, table: Any) -> Insert:
    """``INSERT`` with the dialect's ``ON CONFLICT`` support."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def advisory_lock(session: Session, key: int) -> None:
    """Serialise a critical section across processes for the rest of the transaction.

    PostgreSQL: a transaction-level advisory lock. SQLite: write transactions already hold the
    database lock from ``BEGIN IMMEDIATE``.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _converter(column: Any, dialect: str) -> Any:
    """How one column's Python value is written by :func:`encode` (bypassing SQLAlchemy's per-row work)."""
    from sqlalchemy import JSON

    from omnijourney.core.types import UTCDateTime

    ctype = column.type
    if isinstance(ctype, UTCDateTime):
        return sqlite_time if dialect == "sqlite" else None
    if isinstance(ctype, JSON) or isinstance(getattr(ctype, "impl", None), JSON):
        return json_text
    return None


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def json_text(value: Any) -> str | None:
    return None if value is None else _json_dumps(value)


def sqlite_time(value: datetime | None) -> str | None:
    """The text SQLAlchemy's SQLite DateTime reads back."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def encode_rows(table: Any, rows: Sequence[dict[str, Any]], dialect: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and driver-ready tuples for :func:`encode` (JSON serialised, datetimes in the
    dialect's format). Pure work, so callers can do it before they take a lock."""
    if not rows:
        return [], []
    names = list(rows[0])
    convert = [_converter(table.c[n], dialect) for n in names]
    if not any(convert):
        return names, [tuple(r.values()) for r in rows]
    return names, [tuple(v if f is None else f(v) for v, f in zip(r.values(), convert, strict=True)) for r in rows]


def _sqlite_insert(session: Session, table: Any, names: Sequence[str], data: Sequence[tuple[Any, ...]]) -> None:
    """SQLite: one ``INSERT ... SELECT FROM json_each(?)`` for all rows. ``executemany`` releases the GIL around
    every row's step and must take it back for the next one, which next to a busy thread (a bulk import's
    resolver) cost 30 us a row; this is a single step in C. Values must be JSON-able: text, numbers, NULL."""
    cols = ", ".join(f'"{n}"' for n in names)
    values = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(names)))
    cur = session.connection().connection.dbapi_connection.cursor()
    try:
        cur.execute(f'INSERT INTO "{table.name}" ({cols}) SELECT {values} FROM json_each(?)',
                    (orjson.dumps(data).decode(),))
    finally:
        cur.close()


@dataclass(slots=True)
class EncodedRows:
    """Rows ready for the driver, encoded before any lock is taken: COPY text on PostgreSQL, tuples on SQLite."""

    table: Any
    names: list[str]
    data: str | list[tuple[Any, ...]]
    count: int | None = None  # rows in ``data``, where the encoding does not show it cheaply


def encode(table: Any, rows: Sequence[dict[str, Any]], dialect: str) -> EncodedRows:
    """Encode rows (all naming the columns of the first) for :func:`insert_encoded` / :func:`update_encoded`."""
    names, data = encode_rows(table, rows, dialect)
    if dialect == "postgresql":
        return EncodedRows(table, names, "".join([copy_row(r) + "\n" for r in data]))
    return EncodedRows(table, names, data)


def insert_encoded(session: Session, rows: EncodedRows) -> None:
    """COPY (PostgreSQL) or one statement (SQLite). No ``ON CONFLICT``: callers remove duplicates."""
    if not rows.data:
        return
    if isinstance(rows.data, str):
        copy_lines(session, rows.table, rows.names, rows.data)
    else:
        _sqlite_insert(session, rows.table, rows.names, rows.data)


def encode_update(table: Any, rows: Sequence[dict[str, Any]], dialect: str) -> EncodedRows:
    """Encode rows for :func:`update_encoded`: on PostgreSQL one JSON array of objects, on SQLite tuples."""
    if dialect == "postgresql":
        return EncodedRows(table, list(rows[0]) if rows else [], orjson.dumps(rows).decode(), len(rows))
    names, data = encode_rows(table, rows, dialect)
    return EncodedRows(table, names, data)


_PG_TYPES = {"JSON": "jsonb", "JSONB": "jsonb", "INTEGER": "integer", "BIGINT": "bigint", "BOOLEAN": "boolean"}


def _pg_type(column: Any) -> str:
    from omnijourney.core.types import UTCDateTime

    if isinstance(column.type, UTCDateTime):
        return "timestamptz"
    kind = column.type.dialect_impl(postgresql.dialect()).__visit_name__.upper()
    return _PG_TYPES.get(kind, "text")


# Few rows are best found through an index, whatever the (possibly stale) statistics say; for the rest of
# the transaction the planner is itself again. Simple statements without parameters: one round trip each.
_PROBE_ROWS = 10_000
_INDEX_ONLY = "SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"
_PLANNER_DEFAULTS = ("SET LOCAL enable_seqscan TO DEFAULT; SET LOCAL enable_hashjoin TO DEFAULT; "
                     "SET LOCAL enable_mergejoin TO DEFAULT")


def update_encoded(session: Session, rows: EncodedRows, key: str) -> None:
    """``UPDATE ... WHERE key = ...`` for every row of :func:`encode_update`, in one statement.

    PostgreSQL reads the rows with ``json_to_recordset`` (one round trip). Up to ``_PROBE_ROWS`` rows are
    found through the key's index whatever the statistics say: with stale ones (a table grown since its last
    ANALYZE, or autovacuum off, as on our benchmark machine) the planner believed ``customers`` small and
    hash-joined a few changed profiles against a scan of all of them, 40 ms a transaction at 270,000
    profiles and growing with the table. SQLite reads the rows with ``json_each``.
    """
    if not rows.data:
        return
    table, names = rows.table, rows.names
    cols = [n for n in names if n != key]
    raw = session.connection().connection.dbapi_connection
    if isinstance(rows.data, str):
        record = ", ".join(f'"{n}" {_pg_type(table.c[n])}' for n in names)
        sets = ", ".join(f'"{n}" = u."{n}"' for n in cols)
        probe = rows.count is not None and rows.count <= _PROBE_ROWS
        with raw.cursor() as cur:
            if probe:
                cur.execute(_INDEX_ONLY)
            cur.execute(f'UPDATE "{table.name}" t SET {sets} FROM json_to_recordset(%s::json) AS u({record}) '
                        f'WHERE t."{key}" = u."{key}"', (rows.data,))
            if probe:
                cur.execute(_PLANNER_DEFAULTS)
        return
    # SQLite: one statement over a JSON array of rows (one step in C: see _sqlite_insert)
    sets = ", ".join(f'"{n}" = json_extract(u.value, \'$[{names.index(n)}]\')' for n in cols)
    cur = raw.cursor()
    try:
        cur.execute(f'UPDATE "{table.name}" SET {sets} FROM json_each(?) AS u '
                    f'WHERE "{table.name}"."{key}" = json_extract(u.value, \'$[{names.index(key)}]\')',
                    (orjson.dumps(rows.data).decode(),))
    finally:
        cur.close()


_JSON_PAIRS = 10_000  # see select_pairs


def select_pairs(session: Session, sql: str, pairs: Sequence[tuple[Any, Any]]) -> list[tuple[Any, ...]]:
    """Run ``sql`` for many (a, b) pairs in one round trip per few thousand pairs.

    ``sql`` names the pairs as a table ``p(a, b)``, e.g.
    ``SELECT i.customer_id FROM identities i JOIN p ON i.type = p.a AND i.value = p.b``.
    SQLite gets them as a ``VALUES`` list. PostgreSQL gets up to ``_JSON_PAIRS`` as two text arrays (the least
    work for the server, and the planner knows the count: live ingestion, where the server's CPU is scarce);
    more as one JSON array, which orjson writes in C where psycopg adapts array elements one by one in
    Python (bulk imports, where the Python thread is the limit). From JSON the planner guesses a hundred
    pairs whatever the count: write joins so that no guess can turn them into a table scan (LATERAL).
    """
    if not pairs:
        return []
    raw = session.connection().connection.dbapi_connection
    out: list[tuple[Any, ...]] = []
    if session.get_bind().dialect.name == "postgresql":
        with raw.cursor() as cur:
            if len(pairs) < _JSON_PAIRS:
                cur.execute(f"WITH p(a, b) AS (SELECT * FROM unnest(%s::text[], %s::text[])) {sql}",
                            ([a for a, _ in pairs], [b for _, b in pairs]))
            else:
                cur.execute(f"WITH p(a, b) AS (SELECT x->>0, x->>1 FROM json_array_elements(%s::json) x) {sql}",
                            (orjson.dumps(pairs).decode(),))
            out.extend(cur.fetchall())
        return out
    cur = raw.cursor()
    try:
        for i in range(0, len(pairs), 10000):
            part = pairs[i:i + 10000]
            values = ", ".join("(?, ?)" for _ in part)
            flat = [x for pair in part for x in pair]
            cur.execute(f"WITH p(a, b) AS (VALUES {values}) {sql}", flat)
            out.extend(cur.fetchall())
    finally:
        cur.close()
    return out


def remap(session: Session, table: Any, column: str, mapping: dict[str, str]) -> None:
    """``UPDATE table SET column = mapping[column]`` where ``column`` is one of the mapping's keys.

    Written to use the column's index whatever the planner's statistics say (a join against a list of
    unknown size can turn into a scan of the whole table): PostgreSQL matches ``= ANY(keys)``, SQLite
    ``IN (keys)``, and both look the new value up in a JSON object.
    """
    if not mapping:
        return
    raw = session.connection().connection.dbapi_connection
    if session.get_bind().dialect.name == "postgresql":
        with raw.cursor() as cur:
            cur.execute(f'UPDATE "{table.name}" SET "{column}" = %s::jsonb ->> "{column}" '
                        f'WHERE "{column}" = ANY(%s)', (orjson.dumps(mapping).decode(), list(mapping)))
        return
    # one statement (one step in C: see _sqlite_insert); the mapping is a JSON object read with json_each
    mapping_json = orjson.dumps(mapping).decode()
    cur = raw.cursor()
    try:
        cur.execute(f'UPDATE "{table.name}" SET "{column}" = json_extract(?, \'$.\' || json_quote("{column}")) '
                    f'WHERE "{column}" IN (SELECT key FROM json_each(?))', (mapping_json, mapping_json))
    finally:
        cur.close()


def copy_escape(value: str) -> str:
    """A text value as COPY text needs it (backslash, tab and line breaks escaped)."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:  # rare: replace only then
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


_COPY_FORMAT: dict[type, Any] = {
    str: copy_escape, datetime: datetime.isoformat, int: str, float: repr, bool: lambda v: "t" if v else "f",
    type(None): lambda v: "\\N",
}


def copy_row(values: Sequence[Any]) -> str:
    """A row's fields, tab-separated, without the line end."""
    fmt = _COPY_FORMAT
    return "\t".join([fmt[type(v)](v) for v in values])


def copy_lines(session: Session, table: Any, names: Sequence[str], text: str) -> None:
    """``COPY`` rows already formatted as text lines (see :func:`copy_row`): formatting can then happen
    before a lock is taken, and the copy itself is one write."""
    if not text:
        return
    raw = session.connection().connection.dbapi_connection
    cols = ", ".join(f'"{n}"' for n in names)
    with raw.cursor() as cur, cur.copy(f'COPY "{table.name}" ({cols}) FROM STDIN') as copy:
        copy.write(text)
