"""The checkout storm over real HTTP on PostgreSQL: many shoppers, each with a cart of their own, check out a hot
SKU's last units from a warehouse and three stores at once through ``omni serve`` running as a process of its own
(its embedded job worker on, the test provider's state in the test's directory). One storm is plain: more shoppers
than units, exactly the units there are get sold. The other kills the server with SIGKILL in the middle and starts
it again on the same database while the shoppers retry with their Idempotency-Keys; afterwards the recovery,
reconcile, capture and expiry jobs run (their delays shortened through ``OMNI_ORDERS__...`` and
``OMNI_PAYMENTS__RECONCILE_AFTER_S``), and the checker (``orders.audit``, with the inventory's) verifies that every
acknowledged order has its payment and its units, no payment holds money without an order, no Idempotency-Key was
charged twice at the provider, and no unit is negative, leaked or unaccounted for in the ledger.

PostgreSQL only: SQLite serialises every write transaction, so nothing interleaves there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from omnijourney.db import Database
from omnijourney.orders import audit
from omnijourney.payments.simulator import TestProvider
from tests.conftest import make_key
from tests.factories_inventory import network, priced, stock_up
from tests.support.browser import free_port

pytestmark = pytest.mark.slow

HOT = "TEE-M"
CARD = {"method": "card", "provider": "test", "payment_method": "pm_card_visa"}
BERLIN = {"city": "Berlin", "latitude": 52.52, "longitude": 13.40}
# jobs the storm leaves behind; the idempotency-key pruning (an hour later) is not one of them
SETTLING = ("orders.finish_checkout", "payments.reconcile", "payments.capture", "payments.void",
            "inventory.expire_reservation", "orders.follow_payment", "orders.settle_cancelled")

# the recovery job 2 s after a checkout began (not a minute), its units back after 6 s (not 15 min), payments
# without their order voided after 8 s (not 15 min), a killed worker's jobs taken over after 5 s (not 60 s)
QUICK = {"OMNI_ORDERS__FINISH_AFTER_S": "2", "OMNI_ORDERS__RESERVE_TTL_S": "6", "OMNI_PAYMENTS__RECONCILE_AFTER_S": "8",
         "OMNI_JOBS__LEASE_S": "5"}


@pytest.fixture(autouse=True)
def _postgresql_only(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite serialises every write transaction: no two checkouts interleave, nothing to storm")


class Server:
    """``omni serve`` on the test's database as a process of its own, which the test may kill and start again."""

    def __init__(self, db: Database, tmp_path: Path, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp_path = tmp_path
        self.provider_path = tmp_path / "test-provider.db"
        self.env = {**os.environ, "OMNI_DATABASE_URL": db.url, "OMNI_PUBLIC_URL": self.url,
                    "OMNI_PAYMENTS__TEST_PROVIDER_PATH": str(self.provider_path), "OMNI_JOBS__EMBEDDED": "true",
                    "OMNI_JOBS__POLL_S": "0.2", **settings}
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.tmp_path / f"server-{self.starts}.log", "wb")  # noqa: SIM115  (the process keeps it)
        self.proc = subprocess.Popen([sys.executable, "-m", "omnijourney.cli", "serve", "--port", str(self.port)],
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"omni serve did not start:\n{self.log_tail()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no finally, no flush; requests in flight are cut off."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for n in range(1, self.starts + 1):
            path = self.tmp_path / f"server-{n}.log"
            if path.exists():
                out.append(f"--- server run {n} ---")
                out += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out)

    def errors(self) -> list[str]:
        """Tracebacks the server logged (a request or a job that failed)."""
        found = []
        for n in range(1, self.starts + 1):
            path = self.tmp_path / f"server-{n}.log"
            if path.exists() and "Traceback" in (text_ := path.read_text(errors="replace")):
                found.append(text_[text_.index("Traceback"):][:3000])
        return found


@pytest.fixture
def server_factory(db: Database, tmp_path: Path):
    started: list[Server] = []

    def make(**settings: str) -> Server:
        s = Server(db, tmp_path, **settings)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()
        print(s.log_tail())  # shown when the test failed


@dataclass
class Shopper:
    """One client: its channel, fulfilment, cart and Idempotency-Key, and every answer it got."""

    n: int
    channel: str
    fulfilment: dict[str, Any]
    abandons: bool = False  # a lost answer is not asked again (until the test asks, at the end)
    double_click: bool = False  # sends the checkout twice at once with the same key
    cart_id: str = ""
    total: str = ""
    key: str = ""
    answers: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    cut_off: int = 0  # requests that ended in a connection error

    @property
    def final(self) -> tuple[int, dict[str, Any]] | None:
        return self.answers[-1] if self.answers else None


def open_cart(http: httpx.Client, s: Shopper) -> None:
    got = http.post("/api/v1/carts", json={"channel": s.channel, "anonymous_id": f"storm-{s.n}"})
    assert got.status_code in (200, 201), got.text
    s.cart_id = got.json()["id"]
    added = http.post(f"/api/v1/carts/{s.cart_id}/lines", json={"sku": HOT, "quantity": 1, "channel": s.channel})
    assert added.status_code in (200, 201), added.text
    s.total, s.key = added.json()["total"], f"checkout-{s.n}"


def body_of(s: Shopper) -> dict[str, Any]:
    body: dict[str, Any] = {"channel": s.channel, "fulfilment": s.fulfilment, "payments": [CARD]}
    if s.fulfilment["mode"] == "ship":
        body["expected_total"] = s.total  # the cart's quote is for delivery: what the shopper saw
    return body


def check_out(http: httpx.Client, s: Shopper, lock: threading.Lock, deadline: float) -> None:
    """POST the checkout until it is answered: the same request with the same key after a connection error (the
    server died, or is starting again) and after 409 ``checkout_in_progress`` (a twin of it is still running)."""
    while time.monotonic() < deadline:
        try:
            got = http.post(f"/api/v1/carts/{s.cart_id}/checkout", json=body_of(s),
                            headers={"Idempotency-Key": s.key})
        except httpx.TransportError:
            with lock:
                s.cut_off += 1
            if s.abandons:
                return
            time.sleep(0.2)
            continue
        answer = (got.status_code, got.json() if got.headers.get("content-type", "").startswith("application/json")
                  else {"text": got.text[:300]})
        with lock:
            s.answers.append(answer)
        if got.status_code == 409 and answer[1].get("code") == "checkout_in_progress":
            time.sleep(0.2)
            continue
        return


def storm(base_url: str, headers: dict[str, str], shoppers: list[Shopper], *, seconds: float = 40.0,
          during: Any = None, stagger_s: float = 0.0) -> None:
    """Every shopper opens its cart (one after the other), then all check out at the same moment, each thread with
    its own connection (two for a double click), the n-th ``n * stagger_s`` later; ``during(shoppers)`` runs on
    this thread meanwhile (the crash)."""
    lock = threading.Lock()
    threads_n = sum(2 if s.double_click else 1 for s in shoppers)
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []
    deadline = time.monotonic() + seconds

    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
        for s in shoppers:  # one after the other: the carts are not what storms
            open_cart(http, s)

    def run(s: Shopper, twin: bool) -> None:
        try:
            with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
                barrier.wait(60)
                time.sleep(s.n * stagger_s + (0.005 if twin else 0))  # a twin is the second click
                check_out(http, s, lock, deadline)
        except BaseException as exc:  # handed to the test
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(s, twin), daemon=True)
               for s in shoppers for twin in ((False, True) if s.double_click else (False,))]
    for t in threads:
        t.start()
    if during is not None:
        during(shoppers)
    for t in threads:
        t.join(seconds + 60)
    assert not any(t.is_alive() for t in threads), "a shopper is still waiting"
    if errors:
        raise errors[0]


def settle(db: Database, timeout_s: float = 45.0) -> None:
    """Wait until the server's worker ran every job the storm left (none due later than two minutes from now)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with db.transaction(write=False) as s:
            left = s.execute(text(
                "SELECT kind, status, run_at, last_error FROM jobs WHERE kind IN :kinds "
                "AND (status <> 'pending' OR run_at < now() + interval '2 minutes') ORDER BY id")
                .bindparams(_expanding("kinds")), {"kinds": list(SETTLING)}).all()
        failed = [r for r in left if r.status == "failed"]
        assert not failed, f"{failed[0].kind} failed: {failed[0].last_error}"
        if not left:
            return
        assert time.monotonic() < deadline, f"jobs still waiting: {[(r.kind, r.status, r.run_at) for r in left]}"
        time.sleep(0.5)


def db_rows(db: Database, sql: str) -> list[Any]:
    with db.transaction(write=False) as s:
        return list(s.execute(text(sql)))


def _expanding(name: str):  # type: ignore[no-untyped-def]
    from sqlalchemy import bindparam

    return bindparam(name, expanding=True)


def checked(db: Database, server: Server, acknowledged: dict[str, dict[str, Any]]) -> audit.OrderAudit:
    provider = TestProvider(server.provider_path, webhook_secret="unused")
    intents, refunds = provider.intents(), provider.refunds()
    with db.transaction(write=False) as s:
        found = audit.audit(s, acknowledged=acknowledged, intents=intents, refunds=refunds, settled=True)
    assert found.ok, str(found)
    return found


def assert_out_of_stock_with_alternatives(body: dict[str, Any]) -> None:
    assert body["code"] == "out_of_stock", body
    alts = body.get("details", {}).get("alternatives")
    assert alts is not None, f"an out-of-stock checkout offers no alternatives: {body}"
    assert {"locations", "stores", "modes"} <= set(alts), alts


def test_more_shoppers_than_units_exactly_the_units_there_are_are_sold(db, server_factory, tmp_path):
    """Sixteen web and app shoppers want the last five units that can be shipped (three in the warehouse, two in
    the Berlin store that ships); Potsdam's two are on a shelf that does not ship. Five orders, eleven refusals that
    offer collecting in Potsdam instead."""
    network(db)
    priced(db)
    stock_up(db, {(HOT, "WH"): 3, (HOT, "S01"): 2, (HOT, "S02"): 2})
    headers = {"Authorization": f"Bearer {make_key(db, 'admin')}"}
    server = server_factory(**QUICK)
    server.start()
    shoppers = [Shopper(n, ("web", "app")[n % 2], {"mode": "ship", "ship_to": BERLIN}) for n in range(16)]
    storm(server.url, headers, shoppers)
    finals = [s.final for s in shoppers]
    assert all(f is not None for f in finals), [s.n for s in shoppers if s.final is None]
    sold = [f for f in finals if f[0] == 201]
    refused = [f for f in finals if f[0] != 201]
    assert len(sold) == 5, [(f[0], f[1].get("code"), f[1].get("message")) for f in refused]
    assert all(st == 409 for st, _ in refused), [(st, b) for st, b in refused if st != 409]
    for _, body in refused:
        assert_out_of_stock_with_alternatives(body)
        modes = {m["mode"]: m["location"] for m in body["details"]["alternatives"]["modes"]}
        assert modes.get("pickup") == "S02" and "ship" not in modes, modes
    assert sorted(loc for _, b in sold for loc in (sh["location"] for sh in b["shipments"])) == \
        ["S01", "S01", "WH", "WH", "WH"]
    settle(db)
    found = checked(db, server, {b["id"]: b for _, b in sold})
    assert found.units_ordered == 5 and found.inventory.units_reserved == 5
    assert server.errors() == []


def test_a_server_killed_in_the_middle_of_the_storm_loses_no_order_no_payment_no_unit(db, server_factory, tmp_path):
    """Forty shoppers in five channels (home delivery, click and collect, two tills) want fourteen units. The server
    is killed with SIGKILL once the first orders are answered, while the others are between their steps, and started
    again on the same database. Shoppers retry with the same key; every fifth abandons after its connection is cut
    (the recovery job finishes its checkout, and it asks again at the end); some click twice."""
    network(db)
    priced(db)
    units = {(HOT, "WH"): 6, (HOT, "S01"): 3, (HOT, "S02"): 3, (HOT, "S03"): 2}
    stock_up(db, units)
    headers = {"Authorization": f"Bearer {make_key(db, 'admin')}"}
    # units held 4 s and the recovery job after 5 s: the checkouts that began longest before the kill find their
    # units gone when they are finished after the restart (their payment is voided); the newer ones complete
    # the provider answers in 300 ms, as a remote one may: the kill finds checkouts between their steps (with an
    # answer in microseconds, a checkout is between them for a few milliseconds only)
    server = server_factory(**{**QUICK, "OMNI_ORDERS__RESERVE_TTL_S": "4", "OMNI_ORDERS__FINISH_AFTER_S": "5",
                               "OMNI_PAYMENTS__TEST_PROVIDER_LATENCY_S": "0.3"})
    server.start()
    plans = ([("web", {"mode": "ship", "ship_to": BERLIN}), ("app", {"mode": "ship", "ship_to": BERLIN})] * 10
             + [("web", {"mode": "pickup", "location": "S02"}), ("app", {"mode": "pickup", "location": "S02"})] * 4
             + [("S01", {"mode": "in_store"})] * 6 + [("S03", {"mode": "in_store"})] * 6)
    shoppers = [Shopper(n, ch, ful, abandons=n % 5 == 0, double_click=n % 10 == 3) for n, (ch, ful) in
                enumerate(plans)]
    crash: dict[str, Any] = {}

    def between_steps() -> list[str]:
        with db.transaction(write=False) as s:
            return list(s.scalars(text("SELECT id FROM checkouts WHERE status IN ('reserved', 'paying')")))

    def kill_in_the_middle(shoppers: list[Shopper]) -> None:
        # once the first orders are answered and checkouts are between their steps (reserved, not yet completed)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (sum(1 for s in shoppers if s.answers) < 3 or len(between_steps()) < 3):
            time.sleep(0.01)
        server.kill()
        down = time.monotonic()
        crash["answered_before"] = sum(1 for s in shoppers if s.answers)
        crash["between_steps"] = between_steps()
        time.sleep(1.5)
        server.start()
        crash["down_s"] = round(time.monotonic() - down, 1)

    storm(server.url, headers, shoppers, during=kill_in_the_middle, stagger_s=0.05)
    assert "down_s" in crash, "the server was not started again"
    assert crash["between_steps"], "the kill caught no checkout between its steps"
    assert sum(s.cut_off for s in shoppers) > 0, "the kill cut no request off: nothing was in flight"
    settle(db)
    # nobody asked for the abandoned checkouts again: the recovery job answered them
    answered = {cid: (status, st) for cid, status, st in db_rows(
        db, "SELECT id, status, answer_status FROM checkouts")}
    assert all(answered[cid][1] is not None for cid in crash["between_steps"]), answered
    # the shoppers who gave up ask again with their key: the answer the recovery job stored
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        lock = threading.Lock()
        for s in shoppers:
            if s.final is None:
                s.abandons = False
                check_out(http, s, lock, time.monotonic() + 30)
    summary = [(s.n, s.channel, s.fulfilment["mode"], s.cut_off, [(st, b.get("code")) for st, b in s.answers])
               for s in shoppers]
    for s in shoppers:
        assert s.final is not None, f"shopper {s.n} never got an answer: {summary}"
        status, body = s.final
        assert status in (201, 409), (s.n, status, body)
        if status == 409:
            assert body.get("code") in ("out_of_stock", "reservation_expired"), (s.n, body)
            if body["code"] == "out_of_stock":
                assert_out_of_stock_with_alternatives(body)
        # one order per key whatever was asked: every 201 a shopper got names the same order
        orders = {b["id"] for st, b in s.answers if st == 201}
        assert len(orders) <= 1, (s.n, s.answers)
        assert all(st in (201, 409) for st, _ in s.answers), (s.n, s.answers)
    acknowledged = {s.final[1]["id"]: s.final[1] for s in shoppers if s.final and s.final[0] == 201}
    print(f"crash: {crash}\nshoppers (n, channel, mode, connections cut, answers): {summary}")
    assert acknowledged, summary
    found = checked(db, server, acknowledged)
    # every order placed was told to its shopper, and no more units were sold than there were
    assert found.orders == len(acknowledged)
    assert found.units_ordered == len(acknowledged) <= sum(units.values())
    with db.transaction(write=False) as s:
        captured = s.execute(text("SELECT COUNT(*), COALESCE(SUM(captured_minor), 0) FROM payments "
                                  "WHERE status = 'captured'")).one()
        sold = s.execute(text("SELECT COALESCE(SUM(total), 0) FROM orders")).scalar()
    assert captured[0] == len(acknowledged)
    assert Decimal(captured[1]) / 100 == Decimal(sold)
    assert server.errors() == [], server.errors()[0]
