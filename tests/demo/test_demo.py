"""The demo retailer: deterministic for a seed (ids included, in any process), journeys that cross channels."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from omnijourney.db import Database
from omnijourney.demo.build import STEPS, DemoContext, default_now
from omnijourney.migrate import upgrade


def build(path: str, seed: int) -> dict[str, object]:
    db = Database(f"sqlite:///{path}")
    upgrade(db.engine)
    ctx = DemoContext(db=db, seed=seed, people=150, now=default_now(), rng=random.Random(seed))
    for _, _, run in STEPS:
        run(ctx, lambda n: None)
    with db.engine.connect() as c:
        facts = {
            "events": c.execute(text("SELECT count(*) FROM events")).scalar(),
            "profiles": c.execute(text("SELECT count(*) FROM customers WHERE merged_into IS NULL")).scalar(),
            "merges": c.execute(text("SELECT count(*) FROM merges")).scalar(),
            "identities": sorted(c.execute(text("SELECT type, value FROM identities")).all()),
            "cross_channel": c.execute(text(
                "SELECT count(*) FROM (SELECT customer_id FROM events GROUP BY customer_id "
                "HAVING count(DISTINCT channel) > 1) x")).scalar(),
        }
    db.dispose()
    return facts


def test_same_seed_same_retailer(tmp_path) -> None:
    a = build(str(tmp_path / "a.db"), seed=3)
    b = build(str(tmp_path / "b.db"), seed=3)
    c = build(str(tmp_path / "c.db"), seed=4)
    assert a == b
    assert a != c
    assert a["merges"] > 0  # anonymous visitors and channels that turned out to be one person
    assert a["cross_channel"] > 0.1 * a["profiles"]


# Columns that must differ on every build: they are secrets, or derived from them.
SECRETS = {"sources": {"write_key"}, "api_keys": {"key_hash", "prefix"},
           # staff logins are issued when the demo is served, like a secret: compared by email, name, role, stores
           "staff": {"id", "password_hash", "password_changed_at", "created_at", "updated_at", "last_login_at"}}


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``omni demo`` three times, each in a process of its own, as a user would run it: seed 3 twice with
    different hash seeds (so set and dict iteration orders differ between the two), and seed 4."""
    root = tmp_path_factory.mktemp("demos")
    runs = {"a": (3, "1"), "b": (3, "2"), "c": (4, "1")}
    procs = {name: subprocess.Popen(
        [sys.executable, "-m", "omnijourney.cli", "demo", "--path", str(root / f"{name}.db"), "--seed", str(seed),
         "--people", "150", "--no-serve"],
        env={**os.environ, "PYTHONHASHSEED": hash_seed}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name, (seed, hash_seed) in runs.items()}
    for proc in procs.values():  # all three run at once: the test takes one build's time on two cores
        output, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, output
    return {name: root / f"{name}.db" for name in runs}


def ids(path: Path) -> dict[str, Any]:
    """The ids a user meets in the API and the timeline, keyed by what they stand for."""
    with closing(sqlite3.connect(path)) as con:
        def q(sql: str) -> list[tuple[Any, ...]]:
            return con.execute(sql).fetchall()

        return {
            "customer of each email": dict(q("SELECT value, customer_id FROM identities WHERE type = 'email'")),
            "customer of each identifier": sorted(q("SELECT type, value, customer_id FROM identities")),
            "profiles": sorted(q("SELECT id, merged_into FROM customers")),
            "merges": q("SELECT id, survivor_id, merged_id FROM merges ORDER BY id"),
            "product of each handle": dict(q("SELECT handle, id FROM products")),
            "carts": sorted(q("SELECT id, customer_id, anonymous_id, status, merged_into FROM carts")),
            "source of each name": dict(q("SELECT name, id FROM sources")),
            "api key": q("SELECT id FROM api_keys"),
            "events": q("SELECT id, source_id, message_id, customer_id FROM events ORDER BY id"),
        }


def everything_but_secrets(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (timestamps, traits, prices, ...), secret columns left out."""
    with closing(sqlite3.connect(path)) as con:
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        out = {}
        for table in tables:
            cols = [c for _, c, *_ in con.execute(f"PRAGMA table_info({table})")
                    if c not in SECRETS.get(table, set())]
            listed = ", ".join(cols)
            out[table] = con.execute(f"SELECT {listed} FROM {table} ORDER BY {listed}").fetchall()
        return out


def test_same_seed_same_ids_in_every_process(demos: dict[str, Path]) -> None:
    a, b = ids(demos["a"]), ids(demos["b"])
    # the small demo still exercises what makes ids: profiles created and merged, carts, domain events
    assert a["merges"] and a["carts"] and len(a["customer of each email"]) > 50
    for what in a:
        assert a[what] == b[what], what
    assert everything_but_secrets(demos["a"]) == everything_but_secrets(demos["b"])


def test_another_seed_other_ids(demos: dict[str, Path]) -> None:
    a, c = ids(demos["a"]), ids(demos["c"])
    sources_a, sources_c = a["source of each name"], c["source of each name"]
    assert sources_a.keys() == sources_c.keys()
    assert all(sources_a[name] != sources_c[name] for name in sources_a)
    for what in ("product of each handle", "customer of each email"):
        assert set(a[what].values()).isdisjoint(c[what].values()), what
    assert {row[0] for row in a["carts"]}.isdisjoint(row[0] for row in c["carts"])


def test_keys_stay_secret_on_every_build(demos: dict[str, Path]) -> None:
    # the same seed must not hand out the same admin key or write keys: anyone could read them in the docs
    with closing(sqlite3.connect(demos["a"])) as a, closing(sqlite3.connect(demos["b"])) as b:
        for sql in ("SELECT name, write_key FROM sources", "SELECT name, key_hash FROM api_keys"):
            secrets_a, secrets_b = dict(a.execute(sql).fetchall()), dict(b.execute(sql).fetchall())
            assert secrets_a.keys() == secrets_b.keys()
            assert all(secrets_a[name] != secrets_b[name] for name in secrets_a)
