"""The no-oversell storm over real HTTP: the web, the app and three stores' tills, several clients each, reserving
and selling a hot SKU's last units at once through a live uvicorn on PostgreSQL. Afterwards the checker
(``inventory.audit``) verifies that no level is negative, that every unit a client was told it got is in the
ledger and held or sold, and that the ledger rebuilds every counter.

PostgreSQL only: SQLite serialises every write transaction, so nothing interleaves there."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from omnijourney.db import Database
from omnijourney.inventory import audit, stock
from tests.factories import run_jobs
from tests.factories_inventory import network, stock_up

pytestmark = pytest.mark.slow

HOT = "TEE-M"
CHANNELS = ("web", "app", "S01", "S02", "S03")
ONLINE = ("web", "app")


@pytest.fixture(autouse=True)
def _postgresql_only(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite serialises every write transaction: no two checkouts interleave, nothing to storm")


@dataclass
class Tally:
    """What the clients were told, shared by their threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    reserved: dict[str, tuple[str, str, int, float]] = field(default_factory=dict)  # id -> channel, loc, units, t
    sold: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # ref -> channel, location, units
    refusals: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # channel, location, body
    other: list[str] = field(default_factory=list)  # any other answer: must stay empty

    def granted(self) -> dict[str, int]:
        """Units granted per location (reservations and sales)."""
        out: dict[str, int] = {}
        for _, loc, units, _ in self.reserved.values():
            out[loc] = out.get(loc, 0) + units
        for _, loc, units in self.sold.values():
            out[loc] = out.get(loc, 0) + units
        return out


def take(http: httpx.Client, tally: Tally, channel: str, location: str, *, sale: bool, ref: str,
         ttl_s: int = 900) -> dict[str, Any] | None:
    """One unit for ``channel`` at ``location``: a counter sale or a reservation. Returns the 409's body (None when
    granted); any other answer is recorded in ``tally.other``."""
    line = [{"sku": HOT, "location": location, "quantity": 1}]
    if sale:
        got = http.post("/api/v1/inventory/sales", json={"channel": channel, "lines": line, "ref": ref})
    else:
        got = http.post("/api/v1/inventory/reservations", json={"channel": channel, "lines": line, "ttl_s": ttl_s})
    with tally.lock:
        if got.status_code == 201:
            if sale:
                tally.sold[ref] = (channel, location, 1)
            else:
                tally.reserved[got.json()["id"]] = (channel, location, 1, time.monotonic())
            return None
        if got.status_code == 409 and got.json().get("code") == "out_of_stock":
            tally.refusals.append((channel, location, got.json()))
            return got.json()
        tally.other.append(f"{channel} at {location}: {got.status_code} {got.text[:300]}")
        return {}


def storm(base_url: str, headers: dict[str, str], clients_per_channel: int,
          work: Callable[[httpx.Client, str, int, threading.Barrier], None]) -> None:
    """``work(http, channel, n, barrier)`` in ``clients_per_channel`` threads per channel, each with its own HTTP
    connection; they wait at the barrier so that they start at the same moment."""
    barrier = threading.Barrier(len(CHANNELS) * clients_per_channel)
    errors: list[BaseException] = []

    def run(channel: str, n: int) -> None:
        try:
            with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
                work(http, channel, n, barrier)
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c, n), daemon=True)
               for c in CHANNELS for n in range(clients_per_channel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a client is still running"
    if errors:
        raise errors[0]


def audited(db: Database, tally: Tally, **kwargs: Any) -> audit.Audit:
    with db.transaction(write=False) as s:
        found = audit.audit(s, acknowledged={rid: units for rid, (_, _, units, _) in tally.reserved.items()},
                            sales={ref: units for ref, (_, _, units) in tally.sold.items()}, **kwargs)
    assert found.ok, str(found)
    return found


def test_the_last_unit_goes_to_exactly_one_of_twenty_clients_in_five_channels(db, live_server, admin_headers):
    network(db)
    stock_up(db, {(HOT, "WH"): 1, (HOT, "S02"): 2})  # the warehouse's last unit; the Potsdam shelf has two
    tally = Tally()

    def work(http: httpx.Client, channel: str, n: int, barrier: threading.Barrier) -> None:
        barrier.wait()
        take(http, tally, channel, "WH", sale=channel not in ONLINE, ref=f"{channel}-{n}")

    storm(live_server, admin_headers, 4, work)
    assert tally.other == []
    assert len(tally.reserved) + len(tally.sold) == 1, tally.granted()
    assert len(tally.refusals) == 19
    for channel, _, body in tally.refusals:
        assert body["field"] == "lines[0].quantity" and body["details"]["location"] == "WH"
        alts = body["details"]["alternatives"]
        # Potsdam has it: a location this channel may take from, or a shelf to walk to
        offered = {a["location"] for a in alts["locations"]} | {a["location"] for a in alts["stores"]}
        assert "S02" in offered, (channel, alts)
        if channel in ONLINE:
            assert {m["mode"] for m in alts["modes"]} >= {"pickup", "reserve_in_store"}
    found = audited(db, tally)
    assert (found.units_on_hand, found.units_reserved) == (3 - len(tally.sold), len(tally.reserved))


def test_every_channel_takes_exactly_what_it_may_and_no_more(db, live_server, admin_headers):
    """Seven units: three in the warehouse (one of them safety stock), two on the Berlin shelf (one of them kept for
    walk-in customers: the online floor), one each in Potsdam and Hamburg (the floor: the tills' alone). Greedy
    clients in every channel take unit after unit, moving to the alternatives each refusal offers, until none is
    left for them: exactly the six units that may be promised go, each to a channel allowed to take it."""
    network(db, online_floor=1)
    stock_up(db, {(HOT, "WH"): 3, (HOT, "S01"): 2, (HOT, "S02"): 1, (HOT, "S03"): 1})
    with db.transaction() as s:
        stock.set_safety_stock(s, sku=HOT, location="WH", safety_stock=1)
    tally = Tally()

    def work(http: httpx.Client, channel: str, n: int, barrier: threading.Barrier) -> None:
        target: str | None = "WH" if channel in ONLINE else channel
        barrier.wait()
        for attempt in range(30):
            if target is None:
                return
            refused = take(http, tally, channel, target, sale=channel not in ONLINE, ref=f"{channel}-{n}-{attempt}")
            if refused is not None:  # follow the first alternative this channel may take from, if any
                alts = refused.get("details", {}).get("alternatives", {}).get("locations", [])
                target = alts[0]["location"] if alts else None

    storm(live_server, admin_headers, 4, work)
    assert tally.other == []
    assert tally.granted() == {"WH": 2, "S01": 2, "S02": 1, "S03": 1}
    online_at = [loc for ch, loc, _, _ in tally.reserved.values() if ch in ONLINE]
    assert online_at.count("S01") <= 1 and "S02" not in online_at and "S03" not in online_at
    for ref, (channel, location, _) in tally.sold.items():
        assert location in (channel, "WH"), ref  # a till sells its own shelf or, endless aisle, the warehouse's
    assert tally.refusals, "nobody was refused: no storm"
    assert all({"locations", "stores", "modes"} <= body["details"]["alternatives"].keys()
               for _, _, body in tally.refusals)
    found = audited(db, tally)
    assert found.units_on_hand == 7 - len(tally.sold)
    assert found.units_reserved == len(tally.reserved)


def test_expired_reservations_give_their_units_back_during_the_storm_and_none_leak(db, live_server, admin_headers):
    """Online clients reserve for a second and never check out; once every unit is held, each till tries to sell
    one; the expiry jobs run meanwhile. Units come back and go again (to a reservation or a till), a till never sells
    a unit that is held, and once every reservation is past its expiry and the jobs have run, nothing is reserved."""
    units = 5
    network(db)
    stock_up(db, {(HOT, "WH"): units})
    tally = Tally()
    done = threading.Event()
    snapshots: list[audit.Audit] = []

    def jobs() -> None:  # the worker: expiry jobs run as they fall due, and the checker looks in now and then
        while not done.is_set():
            run_jobs(db)
            with audit.snapshot(db) as s:
                snapshots.append(audit.audit(s))
            time.sleep(0.2)

    def work(http: httpx.Client, channel: str, n: int, barrier: threading.Barrier) -> None:
        barrier.wait()
        sold = False
        for attempt in range(400):
            if done.is_set():
                return
            with tally.lock:
                all_held = len(tally.reserved) >= units
            if channel in ONLINE:
                take(http, tally, channel, "WH", sale=False, ref="", ttl_s=1)
            elif n == 0 and all_held and not sold:  # each till sells one unit, once they were all held
                sold = take(http, tally, channel, "WH", sale=True, ref=f"{channel}-{attempt}") is None
            time.sleep(0.05)
            with tally.lock:  # every unit went more than once, and some to a till after a reservation let it go
                if len(tally.reserved) >= 4 * units and tally.sold:
                    done.set()

    worker = threading.Thread(target=jobs, daemon=True)
    worker.start()
    try:
        storm(live_server, admin_headers, 2, work)
    finally:
        done.set()
        worker.join(30)
    assert tally.other == []
    assert len(tally.reserved) >= 4 * units, "units were not granted again after their reservations expired"
    assert 1 <= len(tally.sold) <= 3, "no till sold a unit that an expired reservation gave back"
    assert all(body["details"]["alternatives"] is not None for _, _, body in tally.refusals)
    assert snapshots and all(a.ok for a in snapshots), next(str(a) for a in snapshots if not a.ok)
    # at no moment were more units held or sold than there were
    assert all(a.units_reserved <= a.units_on_hand for a in snapshots)
    time.sleep(1.2)  # every reservation is past its expiry now ...
    run_jobs(db)  # ... and the worker's next round has run
    found = audited(db, tally, overdue_after_s=0)
    assert found.units_reserved == 0
    assert found.units_on_hand == units - len(tally.sold)
