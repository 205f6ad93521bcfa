"""A benchmark's own database, made anew for each run."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, make_url, text

from omnijourney.db import Database
from omnijourney.migrate import upgrade


def fresh_database(url: str) -> Database:
    """``url``'s PostgreSQL database dropped, created again and migrated."""
    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    admin.dispose()
    db = Database(url)
    upgrade(db.engine)
    return db


def fresh_sqlite_or_postgresql(kind: str, folder: Path, pg_url: str) -> Database:
    """A migrated SQLite file in ``folder`` (``kind`` sqlite) or ``pg_url`` made anew."""
    if kind != "sqlite":
        return fresh_database(pg_url)
    db = Database(f"sqlite:///{folder / 'bench.db'}")
    upgrade(db.engine)
    return db
