"""Pools: a hot level's reservations spread over several rows, and still every unit is sold once and only once."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from omnijourney.config import get_settings
from omnijourney.inventory import reservations, stock
from omnijourney.inventory.audit import audit
from omnijourney.inventory.models import StockPool
from tests.factories_inventory import network, stock_up


@pytest.fixture
def pg(db):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time: nothing to spread, so it has no pools")
    return db


@pytest.fixture
def small_pools(monkeypatch):
    """Pools that form on a few dozen units, so that a test can sell a level out."""
    conf = get_settings().inventory
    monkeypatch.setattr(conf, "pool_slots", 4)
    monkeypatch.setattr(conf, "pool_block", 8)
    monkeypatch.setattr(conf, "pool_share", 1)
    return conf


def _pooled(db) -> dict[tuple[str, str], int]:
    with db.transaction(write=False) as s:
        rows = s.execute(text("SELECT sku, location_code, SUM(units) FROM stock_pools GROUP BY 1, 2")).all()
    return {(sku, loc): int(units) for sku, loc, units in rows}


def _reserve(db, channel: str, sku: str, location: str, quantity: int = 1) -> str:
    with db.transaction() as s:
        return reservations.reserve(s, channel_code=channel, lines=[(sku, location, quantity)]).id


def test_a_hot_level_sets_units_aside_in_its_pool_and_every_reader_still_counts_them_free(pg, client,
                                                                                          admin_headers):
    network(pg)
    stock_up(pg, {("TEE-M", "WH"): 10_000})
    first = _reserve(pg, "web", "TEE-M", "WH")  # from the level, which then hands its pool a block of 32
    assert _pooled(pg) == {("TEE-M", "WH"): 32}
    second = _reserve(pg, "app", "TEE-M", "WH")  # from the pool: the level's row is not touched
    assert _pooled(pg) == {("TEE-M", "WH"): 31}
    with pg.transaction(write=False) as s:
        lv = stock.level(s, "TEE-M", "WH")
        assert (lv.on_hand, lv.reserved, lv.pooled, lv.held, lv.free) == (10_000, 33, 31, 2, 9_998)
        kinds = s.execute(text("SELECT kind, reserved_delta, ref FROM stock_movements WHERE kind <> 'receipt' "
                               "ORDER BY id")).all()
        assert sorted(tuple(k) for k in kinds) == sorted([("reservation", 1, first), ("pool", 32, first),
                                                          ("reservation", 1, second), ("pool", -1, second)])
        assert stock.check(s) == []  # the ledger rebuilds reserved, pool rows included
        found = audit(s, acknowledged={first: 1, second: 1})
        assert found.ok, found.problems
        assert found.units_reserved == 2
    level = client.get("/api/v1/inventory/levels", params={"sku": "TEE-M", "location": "WH"},
                       headers=admin_headers).json()[0]
    assert (level["reserved"], level["available"]) == (2, 9_998)
    got = client.get("/api/v1/inventory/availability", params={"sku": "TEE-M", "channel": "web"},
                     headers=admin_headers).json()["items"][0]
    assert got["available"] == 9_998
    with pg.transaction() as s:  # units taken from a pool go back to the level like any others
        reservations.release(s, reservation_id=second)
    with pg.transaction(write=False) as s:
        lv = stock.level(s, "TEE-M", "WH")
        assert (lv.held, lv.free) == (1, 9_999)
        assert audit(s).ok


def test_a_level_reserved_one_at_a_time_keeps_one_pool_row_and_rows_grow_with_contention(pg):
    network(pg)
    stock_up(pg, {("TEE-S", "WH"): 100_000})
    for _ in range(40):
        _reserve(pg, "web", "TEE-S", "WH")
    with pg.transaction(write=False) as s:
        assert s.query(StockPool).count() == 1  # nobody met anybody: one row was always free
    with pg.engine.connect() as held:  # another checkout holds that row mid-transaction
        held.execute(text("SELECT 1 FROM stock_pools WHERE sku = 'TEE-S' FOR UPDATE"))
        _reserve(pg, "web", "TEE-S", "WH")  # skips it, reserves at the level, which grows its pool
        held.rollback()
    with pg.transaction(write=False) as s:
        assert s.query(StockPool).count() == 2
        assert audit(s).ok


def test_pooled_units_are_sold_to_the_last_one_and_never_twice_when_many_reserve_at_once(pg, small_pools):
    network(pg)
    stock_up(pg, {("TEE-M", "WH"): 60})
    won: list[str] = []
    refused: list[str] = []
    failed: list[BaseException] = []

    def client() -> None:
        while True:
            try:
                won.append(_reserve(pg, "web", "TEE-M", "WH"))
            except stock.OutOfStock:
                refused.append("out")
                return
            except BaseException as error:  # a deadlock or anything else fails the test below
                failed.append(error)
                return

    threads = [threading.Thread(target=client) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failed == []
    assert len(won) == 60 and len(refused) == 12  # each client stopped at its first out-of-stock answer
    assert _pooled(pg) == {("TEE-M", "WH"): 0}  # the pool gave its last units back to be sold
    with pg.transaction(write=False) as s:
        lv = stock.level(s, "TEE-M", "WH")
        assert (lv.on_hand, lv.reserved, lv.held) == (60, 60, 60)
        found = audit(s, acknowledged=dict.fromkeys(won, 1))
        assert found.ok, found.problems
        moves = s.execute(text("SELECT COUNT(*) FROM stock_movements WHERE kind = 'pool'")).scalar()
        assert moves > 10  # the pool really carried the sales


def test_a_count_a_till_sale_and_a_write_off_reach_the_units_a_pool_set_aside(pg, small_pools):
    network(pg)
    stock_up(pg, {("TEE-M", "S01"): 40, ("TEE-S", "S01"): 40, ("JEANS-32", "S01"): 40})
    for sku in ("TEE-M", "TEE-S", "JEANS-32"):
        _reserve(pg, "web", sku, "S01")
    assert all(units > 0 for units in _pooled(pg).values())
    with pg.transaction() as s:  # a count down to what reservations hold: the pool's units go back first
        stock.count(s, sku="TEE-M", location="S01", counted=1)
    with pg.transaction() as s:  # the till sells every free unit, pooled ones included
        reservations.sell(s, channel_code="S01", lines=[("TEE-S", "S01", 39)], ref="till-1")
    with pg.transaction() as s:  # a write-off of everything nobody holds
        stock.adjust(s, sku="JEANS-32", location="S01", delta=-39, reason="flooded")
    with pytest.raises(stock.OutOfStock), pg.transaction() as s:
        reservations.sell(s, channel_code="S01", lines=[("TEE-S", "S01", 1)], ref="till-2")
    with pytest.raises(stock.Conflict) as refused, pg.transaction() as s:
        stock.count(s, sku="TEE-M", location="S01", counted=0)
    assert refused.value.code == "count_below_reserved"
    assert _pooled(pg) == {("TEE-M", "S01"): 0, ("TEE-S", "S01"): 0, ("JEANS-32", "S01"): 0}
    with pg.transaction(write=False) as s:
        for sku in ("TEE-M", "TEE-S", "JEANS-32"):
            lv = stock.level(s, sku, "S01")
            assert (lv.on_hand, lv.reserved) == (1, 1)
        assert stock.check(s) == []
        found = audit(s)
        assert found.ok, found.problems


def test_a_store_floor_and_safety_stock_are_never_pooled(pg, small_pools):
    network(pg, online_floor=10)
    stock_up(pg, {("TEE-M", "S02"): 30})
    with pg.transaction() as s:
        stock.set_safety_stock(s, sku="TEE-M", location="S02", safety_stock=5)
    _reserve(pg, "web", "TEE-M", "S02")
    # what may be pooled: 30 - 1 reserved - 5 safety - 10 floor = 14, shared by up to 4 rows: a block of 3
    assert _pooled(pg) == {("TEE-M", "S02"): 3}
    with pg.transaction(write=False) as s:
        lv = stock.level(s, "TEE-M", "S02")
        assert lv.on_hand - lv.reserved - lv.safety_stock >= 10  # the floor stays for the store's own till


def test_an_imported_count_compares_with_what_reservations_hold_not_with_the_pool(pg, small_pools):
    from omnijourney.inventory import importing

    network(pg)
    stock_up(pg, {("TEE-M", "WH"): 50, ("TEE-S", "WH"): 50})
    _reserve(pg, "web", "TEE-M", "WH", 2)
    assert _pooled(pg)[("TEE-M", "WH")] > 0
    rows, bad = importing.read_csv_text("sku,location,quantity,kind\nTEE-M,WH,2,count\nTEE-S,WH,45,count\n"
                                        "TEE-M,S01,3,receipt\n")
    assert bad == []
    with pg.transaction(write=False) as s:
        assert importing.validate(s, rows) == []  # 2 counted, 2 held: fine, whatever the pool set aside
    outcome = importing.write(pg, rows, ref="nightly")
    assert (outcome.counts, outcome.late) == (2, [])
    with pg.transaction(write=False) as s:
        lv = stock.level(s, "TEE-M", "WH")
        assert (lv.on_hand, lv.reserved, lv.pooled) == (2, 2, 0)
        assert stock.check(s) == [] and audit(s).ok
