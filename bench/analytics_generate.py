"""Generate a realistic analytics store of N events (default 10,000,000): the demo's journey generator at scale.

People come from ``omnijourney.demo.people.journeys`` (web and app browsing, searches, logins, carts, orders, store
visits with loyalty cards, calls, WhatsApp), and on top of it the channels the demo's journeys do not visit: email
and SMS campaigns, social ads, web chat, Messenger and marketplace orders, so that every channel is there. Events are
written straight into a DuckDB store of the sync's schema (``omnijourney.analytics.store``), in Arrow batches; the
person of each event is the generator's person (what identity resolution would find), so no application database is
needed.

    .venv/bin/python bench/analytics_generate.py --events 10000000 --out bench-analytics.duckdb
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa

from omnijourney.analytics.store import SCHEMA
from omnijourney.analytics.sync import _SCHEMA, event_name
from omnijourney.demo.people import Channels, journeys

CHANNELS = Channels(web=("src-web", "Web shop"), app=("src-app", "App"), call_center=("src-cc", "Call center"),
                    whatsapp=("src-wa", "WhatsApp"),
                    stores=tuple((f"src-s{n}", f"Store {n}", f"S0{n}") for n in range(1, 6)))
EXTRA = [  # channel, event, properties: campaigns and channels the demo's journeys do not visit
    ("email", "Email Opened", {"campaign": "spring-sale"}),
    ("email", "Email Link Clicked", {"campaign": "spring-sale"}),
    ("sms", "SMS Link Clicked", {"campaign": "weekend"}), ("social", "Promotion Clicked", {"network": "instagram"}),
    ("chat", "Chat Started", {"topic": "sizing"}), ("messenger", "Message Received", {"text": "Is it in stock?"}),
]


def generate(events: int, out: Path, seed: int, batch: int = 250_000) -> int:
    """Write about ``events`` events to a fresh store at ``out``; returns the number written."""
    if out.exists():
        out.unlink()
    con = duckdb.connect(str(out))
    for ddl in SCHEMA:
        con.execute(ddl)
    rng = random.Random(seed + 1)
    people = max(1, events // 4)  # the demo's journeys average fewer than 6 messages a person: enough people
    start = datetime(2026, 1, 1, tzinfo=UTC)
    cols: dict[str, list] = {f.name: [] for f in _SCHEMA}
    written = 0
    last_person = -1
    dumps = orjson.dumps

    def flush() -> None:
        nonlocal cols
        if cols["id"]:
            con.register("batch", pa.table(cols, schema=_SCHEMA))
            con.execute("INSERT INTO events BY NAME SELECT * REPLACE (CAST(properties AS JSON) AS properties) "
                        "FROM batch")
            con.unregister("batch")
            cols = {f.name: [] for f in _SCHEMA}

    def add(person: int, kind: str, event: str | None, channel: str, store: str | None, ts: datetime,
            anonymous_id: str | None, user_id: str | None, props: dict) -> None:
        nonlocal written
        written += 1
        cols["id"].append(written)
        cols["type"].append(kind)
        cols["event"].append(event)
        cols["name"].append(event_name(kind, event))
        cols["customer_id"].append(f"p{person}")
        cols["anonymous_id"].append(anonymous_id)
        cols["user_id"].append(user_id)
        cols["channel"].append(channel)
        cols["store_code"].append(store)
        cols["ts"].append(ts)
        cols["received_at"].append(ts)
        cols["properties"].append(dumps(props).decode())
        cols["campaign"].append(None)  # the campaigns here are a property (the email and SMS events')

    t0 = time.monotonic()
    for m in journeys(people=people, seed=seed, channels=CHANNELS, start=start, days=90):
        person = int(m.message_id.split("-")[1])
        if written >= events:
            break
        if person != last_person:  # campaigns and the other channels, before the person's first touch
            last_person = person
            if rng.random() < 0.35:
                channel, event, props = rng.choice(EXTRA)
                add(person, "track", event, channel, None, m.timestamp - timedelta(hours=rng.uniform(1, 48)),
                    f"x-{person}", None, props)
            if rng.random() < 0.05:
                add(person, "track", "Order Completed", "marketplace", None,
                    m.timestamp + timedelta(days=rng.uniform(1, 30)), None, f"user-{person}",
                    {"order_id": f"mp-{person}", "revenue": f"{rng.uniform(10, 200):.2f}", "currency": "EUR"})
        props = m.properties
        if m.event == "Order Completed" and "revenue" not in props:
            props = {**props, "revenue": f"{rng.uniform(15, 250):.2f}"}
        if written < events:
            add(person, m.type, m.event, m.channel, m.store_code, m.timestamp, m.anonymous_id, m.user_id, props)
        if len(cols["id"]) >= batch:
            flush()
    flush()
    con.close()
    print(f"{written:,} events of {last_person + 1:,} people in {time.monotonic() - t0:.1f} s -> {out}")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--out", type=Path, default=Path("bench-analytics.duckdb"))
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    generate(args.events, args.out, args.seed)


if __name__ == "__main__":
    main()
