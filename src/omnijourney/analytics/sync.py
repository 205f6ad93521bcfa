"""Copy the timeline into the DuckDB store, incrementally, through the event feed (``tracking.feed``).

Each run reads feed pages from where the store's cursor says, and writes up to ``batch_pages`` of them to DuckDB in
one transaction together with the new cursor: a crash before that commit copies the same events again next time,
and after it never (nothing skipped, nothing twice; events committed out of id order come late in the feed and are
copied then). No full reload ever happens.

Profile merges: the application re-points a merged profile's events to the survivor, but the feed hands an event out
once, under the profile it had then. So the merge log (``merges``, append-only, written under the identity lock and
therefore in id order) is copied too, as ``people`` (merged -> survivor, chains followed), and every analysis reads a
person as ``coalesce(survivor, customer_id)`` (``analytics.tables``).

Orders, their lines and returns reach the store as the order events of the same feed ("Order Completed" carries the
order's id, totals, channel and products; "Order Returned" its items; "Order Refunded" the money): one cursor, the
same exactly-once guarantee, merges resolved the same way, and orders that a channel only reports by tracking (a
POS's own "Order Completed") count as well. Polling ``orders.updated_at`` would need a second watermark with the very
problem the feed solves (a transaction that commits late with an older ``updated_at`` would be skipped).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
from sqlalchemy import func, select

from omnijourney.analytics.store import Store
from omnijourney.core.cursors import decode_cursor
from omnijourney.customers.models import Merge
from omnijourney.db import Database
from omnijourney.tracking import feed
from omnijourney.tracking.models import Event
from omnijourney.tracking.spec import canonical_event_name

FEED_CURSOR = "feed_cursor"
MERGES_AFTER = "merges_after"
SYNCED_AT = "synced_at"
PAGE = feed.MAX_LIMIT
# the merge log is re-read from a little before the watermark: upserts are idempotent, and this keeps a merge whose
# transaction committed a little out of id order (none should: they are written under the identity lock)
MERGE_OVERLAP = 1000

_SCHEMA = pa.schema([
    ("id", pa.int64()), ("type", pa.string()), ("event", pa.string()), ("name", pa.string()),
    ("customer_id", pa.string()), ("anonymous_id", pa.string()), ("user_id", pa.string()), ("channel", pa.string()),
    ("store_code", pa.string()), ("ts", pa.timestamp("us", tz="UTC")), ("received_at", pa.timestamp("us", tz="UTC")),
    ("properties", pa.string()), ("campaign", pa.string()),
])
_COLUMNS = [f.name for f in _SCHEMA]


@dataclass(slots=True)
class SyncResult:
    """What one run did."""

    events: int = 0
    merges: int = 0
    transactions: int = 0
    caught_up: bool = False  # the feed had nothing more when the run stopped
    cursor: str | None = None


def event_name(kind: str, name: str | None) -> str | None:
    """The name analyses use: the spec's spelling of a track call's event; "Page Viewed" / "Screen Viewed" for page
    and screen calls (their name is the page's); None for identify, group and alias (not touchpoints)."""
    if kind == "track":
        return canonical_event_name(name) if name else None
    if kind == "page":
        return "Page Viewed"
    if kind == "screen":
        return "Screen Viewed"
    return None


def _arrow(events: list[dict[str, Any]]) -> pa.Table:
    cols: dict[str, list[Any]] = {c: [] for c in _COLUMNS}
    for e in events:
        cols["id"].append(e["id"])
        cols["type"].append(e["type"])
        cols["event"].append(e["event"])
        cols["name"].append(event_name(e["type"], e["event"]))
        cols["customer_id"].append(e["customer_id"])
        cols["anonymous_id"].append(e["anonymous_id"])
        cols["user_id"].append(e["user_id"])
        cols["channel"].append(e["channel"])
        cols["store_code"].append(e["store_code"])
        cols["ts"].append(e["timestamp"])
        cols["received_at"].append(e["received_at"])
        cols["properties"].append(orjson.dumps(e["properties"] or {}).decode())
        cols["campaign"].append(context_campaign(e.get("context")))
    return pa.table(cols, schema=_SCHEMA)


def context_campaign(context: dict[str, Any] | None) -> str | None:
    """The campaign's name in a message's context (Segment's ``context.campaign.name``, which analytics.js fills
    from ``utm_campaign``), as text; None without one."""
    campaign = (context or {}).get("campaign")
    name = campaign.get("name") if isinstance(campaign, dict) else None
    if name is None or isinstance(name, dict | list):
        return None
    text = str(name).strip()
    return text or None


def _watermark(cursor: str | None) -> int:
    return 0 if cursor is None else int(decode_cursor(cursor, 3)[1])


def backlog(db: Database, store: Store) -> int:
    """Events above the store's watermark in the application database: about what a sync has left to copy (late
    commits below the watermark come on top, a handful)."""
    with store.cursor() as cur:
        after = _watermark(store.state(cur, FEED_CURSOR))
    with db.transaction(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(Event).where(Event.id > after)) or 0)


def _read_merges(db: Database, after: int) -> list[tuple[int, str, str]]:
    with db.transaction(write=False) as session:
        return [tuple(r) for r in session.execute(
            select(Merge.id, Merge.merged_id, Merge.survivor_id).where(Merge.id > after - MERGE_OVERLAP)
            .order_by(Merge.id).limit(50_000)).all()]


def _write(store: Store, events: list[dict[str, Any]], merges: list[tuple[int, str, str]], cursor: str,
           merges_after: int) -> None:
    """One DuckDB transaction: the events, the merges (chains followed) and the positions they bring us to."""
    with store.cursor() as cur:
        cur.execute("BEGIN TRANSACTION")
        try:
            if events:
                cur.register("batch", _arrow(events))  # scanned in place, no copy
                cur.execute("INSERT INTO events BY NAME SELECT * REPLACE (CAST(properties AS JSON) AS properties) "
                            "FROM batch")
                cur.unregister("batch")
            if merges:
                pairs = pa.table({"merged_id": [m[1] for m in merges], "survivor_id": [m[2] for m in merges]})
                cur.register("pairs", pairs)
                # a profile merged twice (it cannot be: merged profiles are gone) would keep the later survivor
                cur.execute("INSERT OR REPLACE INTO people SELECT merged_id, last(survivor_id) FROM pairs "
                            "GROUP BY merged_id")
                cur.unregister("pairs")
                # follow chains: A -> B and B -> C make A -> C (merge logs are short chains; bounded anyway)
                for _ in range(64):
                    changed = cur.execute(
                        "UPDATE people SET survivor_id = p2.survivor_id FROM people p2 "
                        "WHERE people.survivor_id = p2.merged_id AND p2.survivor_id <> people.merged_id").fetchone()
                    if not changed or not changed[0]:
                        break
                Store.set_state(cur, MERGES_AFTER, str(merges_after))
            Store.set_state(cur, FEED_CURSOR, cursor)
            Store.set_state(cur, SYNCED_AT, datetime.now(UTC).isoformat())
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise


def sync(db: Database, store: Store, *, budget_s: float | None = None, batch_pages: int = 20,
         progress: Callable[[int], None] | None = None) -> SyncResult:
    """Copy what the feed has since the store's cursor, and the merge log's new rows, until caught up (or until
    ``budget_s`` seconds have passed: the next run goes on). ``progress(n)`` after each transaction of n events."""
    result = SyncResult()
    deadline = None if budget_s is None else time.monotonic() + budget_s
    with store.write_lock:  # one writer per process; other processes cannot open the file at all
        with store.cursor() as cur:
            cursor = store.state(cur, FEED_CURSOR)
            merges_after = int(store.state(cur, MERGES_AFTER) or 0)
        while True:
            events: list[dict[str, Any]] = []
            more = False
            for _ in range(batch_pages):
                with db.transaction(write=False) as session:
                    page = feed.read(session, cursor=cursor, limit=PAGE)
                events.extend(page.events)
                cursor, more = page.cursor, page.more
                if not more:
                    break
            merges = _read_merges(db, merges_after)
            new_after = max([merges_after, *(m[0] for m in merges)])
            _write(store, events, merges, cursor, new_after)  # type: ignore[arg-type]
            result.events += len(events)
            result.merges += sum(1 for m in merges if m[0] > merges_after)
            result.transactions += 1
            merges_after = new_after
            if progress is not None:
                progress(len(events))
            if not more:
                result.caught_up = True
                break
            if deadline is not None and time.monotonic() > deadline:
                break
    result.cursor = cursor
    return result


def status(store: Store) -> dict[str, Any]:
    """Where the store is: events held, the feed position, the last sync's time, the newest event's time."""
    with store.cursor() as cur:
        n, newest = cur.execute("SELECT count(*), max(received_at) FROM events").fetchone()  # type: ignore[misc]
        people = cur.execute("SELECT count(*) FROM people").fetchone()[0]  # type: ignore[index]
        return {"path": store.path, "events": n, "merged_profiles": people,
                "watermark": _watermark(store.state(cur, FEED_CURSOR)),
                "synced_at": store.state(cur, SYNCED_AT), "newest_event_received_at": newest}
