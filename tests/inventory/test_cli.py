"""``omni inventory``: importing a stock export, checking the ledger, showing levels, as an operator does."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from omnijourney.cli import app
from omnijourney.db import Database
from omnijourney.inventory import importing, reservations, stock
from omnijourney.inventory.models import StockMovement
from tests.factories_inventory import network, stock_up


@pytest.fixture
def shop(cli_database: Database) -> Database:
    network(cli_database)
    return cli_database


def _csv(tmp_path: Path, body: str, name: str = "stock.csv") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def _run(*args: str):
    return CliRunner().invoke(app, ["inventory", *args])


def _on_hand(db: Database) -> dict[tuple[str, str], tuple[int, int]]:
    with db.transaction(write=False) as s:
        return {(lv.sku, lv.location_code): (lv.on_hand, lv.reserved) for lv in stock.levels(s)}


def _movements(db: Database) -> int:
    with db.transaction(write=False) as s:
        return s.scalar(select(func.count()).select_from(StockMovement))


def test_import_applies_receipts_and_counts_in_file_order_and_the_ledger_agrees(shop, tmp_path):
    stock_up(shop, {("TEE-M", "S01"): 5})
    path = _csv(tmp_path, "sku,location,quantity,kind\n"
                          "TEE-M,WH,10,receipt\n"
                          "TEE-M,WH,7,count\n"       # 10 arrived, 7 found: 3 missing
                          "TEE-M,WH,2,receipt\n"     # then 2 more arrived
                          "TEE-M,S01,4,count\n"      # 5 on hand, 4 found
                          "\n"                       # a blank line is nothing
                          "JEANS-32,S02,3,receipt\n")
    result = _run("import", str(path))
    assert result.exit_code == 0, result.output
    assert "imported 5 rows (3 receipts, 2 counts) into 3 stock levels" in result.output
    assert "+15 units received, counts +0 / -4 units" in result.output
    assert "rows/s" in result.output
    assert _on_hand(shop) == {("TEE-M", "WH"): (9, 0), ("TEE-M", "S01"): (4, 0), ("JEANS-32", "S02"): (3, 0)}
    ref = result.output.split("ledger reference ")[1].split()[0]
    with shop.transaction(write=False) as s:
        kinds = [(m.kind, m.on_hand_delta, m.counted) for m in reversed(stock.movements(s, ref=ref))]
    assert kinds == [("receipt", 10, None), ("count", -3, 7), ("receipt", 2, None), ("count", -1, 4),
                     ("receipt", 3, None)]
    checked = _run("check")
    assert checked.exit_code == 0 and "ledger and stock agree for 3 levels" in checked.output


def test_every_bad_row_is_named_and_nothing_is_imported(shop, tmp_path):
    stock_up(shop, {("TEE-S", "S01"): 5})
    with shop.transaction() as s:
        reservations.reserve(s, channel_code="S01", lines=[("TEE-S", "S01", 4)], ttl_s=None)
        from omnijourney.inventory import locations
        locations.update_location(s, code="S03", changes={"active": False})
    before = _movements(shop)
    path = _csv(tmp_path, "sku,location,quantity,kind\n"
                          "TEE-M,WH,10,receipt\n"        # good
                          "NOPE,WH,1,receipt\n"           # 3: unknown SKU
                          "TEE-M,MOON,1,receipt\n"        # 4: unknown location
                          "TEE-M,S03,1,receipt\n"         # 5: inactive location
                          "TEE-M,WH,1.5,receipt\n"        # 6: not a whole number
                          "TEE-M,WH,-2,count\n"           # 7: negative
                          "TEE-S,S01,3,count\n"           # 8: below the 4 reserved
                          "TEE-M,WH,1,sold\n"             # 9: unknown kind
                          "TEE-M,S02,1,count\n"           # good
                          "TEE-M,S02,2,count\n"           # 11: a second count
                          "TEE-M,WH,1\n"                  # 12: a field short
                          "TEE-M,WH,0,receipt\n")         # 13: a receipt of nothing
    result = _run("import", str(path))
    assert result.exit_code == 1, result.output
    out = result.output
    assert "10 bad row(s)" in out
    for expected in ["line 3: sku: unknown SKU 'NOPE'", "line 4: location: unknown location 'MOON'",
                     "line 5: location: location S03 is not active", "line 6: quantity: not a whole number ('1.5')",
                     "line 7: quantity: negative (-2)", "line 8: quantity: counted 3 but 4 are reserved there",
                     "line 9: kind: unknown kind 'sold'",
                     "line 11: quantity: a second count of TEE-M at S02 in this file (first on line 10)",
                     "line 12: row: 3 fields where the header has 4", "line 13: quantity: a receipt of 0 units"]:
        assert expected in out, (expected, out)
    assert "line 2:" not in out and "line 10:" not in out
    assert "nothing imported" in out
    assert _movements(shop) == before
    assert _on_hand(shop) == {("TEE-S", "S01"): (5, 4)}


def test_skip_bad_imports_the_good_rows_and_still_lists_the_bad(shop, tmp_path):
    path = _csv(tmp_path, "kind,quantity,location,sku\n"   # any column order
                          "receipt,10,WH,TEE-M\n"
                          "receipt,ten,WH,TEE-M\n"
                          "count,4,S01,TEE-S\n")
    result = _run("import", str(path), "--skip-bad")
    assert result.exit_code == 1, result.output
    assert "line 3: quantity: not a whole number ('ten')" in result.output
    assert "imported 2 rows (1 receipt, 1 count)" in result.output
    assert _on_hand(shop) == {("TEE-M", "WH"): (10, 0), ("TEE-S", "S01"): (4, 0)}


@pytest.mark.parametrize(("header", "said"), [
    ("sku,location,quantity,kind,note", "unexpected 'note'"),
    ("sku,location,quantity", "missing kind"),
    ("sku,location,quantity,kind,kind", "a column named twice"),
])
def test_a_header_without_exactly_the_four_columns_is_refused(shop, tmp_path, header, said):
    path = _csv(tmp_path, f"{header}\nTEE-M,WH,1,receipt,x\n")
    result = _run("import", str(path))
    assert result.exit_code == 2
    assert "must name exactly the columns sku, location, quantity, kind" in result.output and said in result.output
    assert _movements(shop) == 0


def test_a_file_that_is_not_text_or_empty_is_refused_in_one_line(shop, tmp_path):
    binary = tmp_path / "x.csv"
    binary.write_bytes(b"sku,location,quantity,kind\n\xff\xfe,WH,1,receipt\n")
    result = _run("import", str(binary))
    assert result.exit_code == 2 and "is not UTF-8 text" in result.output
    result = _run("import", str(_csv(tmp_path, "", name="empty.csv")))
    assert result.exit_code == 2 and "is empty" in result.output


def test_small_chunks_import_the_same(shop, tmp_path):
    lines = ["sku,location,quantity,kind"]
    lines += [f"{sku},{loc},{n},receipt" for n, (sku, loc) in enumerate(
        [(s, loc) for s in ("TEE-S", "TEE-M", "JEANS-32") for loc in ("WH", "S01", "S02")], 1)]
    lines += ["TEE-M,WH,1,count", "TEE-M,WH,3,receipt"]
    result = _run("import", str(_csv(tmp_path, "\n".join(lines) + "\n")), "--chunk", "2")
    assert result.exit_code == 0, result.output
    levels = _on_hand(shop)
    assert levels[("TEE-M", "WH")] == (4, 0) and levels[("JEANS-32", "S02")] == (9, 0)
    assert _run("check").exit_code == 0


def test_check_lists_the_levels_the_ledger_does_not_explain(shop):
    stock_up(shop, {("TEE-S", "WH"): 8, ("TEE-M", "S01"): 3})
    with shop.transaction() as s:
        s.execute(text("UPDATE stock_levels SET on_hand = 9 WHERE sku = 'TEE-S' AND location_code = 'WH'"))
    result = _run("check")
    assert result.exit_code == 1
    assert "1 of 2 levels differ from their ledger" in result.output
    assert "TEE-S" in result.output and "9" in result.output and "8" in result.output


def test_levels_shows_what_is_free(shop):
    stock_up(shop, {("TEE-M", "WH"): 8, ("TEE-M", "S01"): 3})
    with shop.transaction() as s:
        reservations.reserve(s, channel_code="web", lines=[("TEE-M", "WH", 2)])
    result = _run("levels", "--sku", "TEE-M")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "WH" in line)
    assert [c for c in row.replace("│", " ").split()] == ["TEE-M", "WH", "8", "2", "0", "6"]
    assert _run("levels").exit_code == 2


def test_a_count_below_a_reservation_made_after_the_check_is_not_applied(db):
    """The count is checked again under its row's lock: a reservation that came in between wins."""
    network(db)
    stock_up(db, {("TEE-M", "WH"): 10})
    rows, bad = importing.read_csv_text("sku,location,quantity,kind\nTEE-M,WH,3,count\nTEE-S,WH,2,receipt\n")
    with db.transaction(write=False) as s:
        assert bad == [] and importing.validate(s, rows) == []
    with db.transaction() as s:  # meanwhile, a checkout holds 5
        reservations.reserve(s, channel_code="web", lines=[("TEE-M", "WH", 5)])
    outcome = importing.write(db, rows, ref="import-test")
    assert [str(b) for b in outcome.late] == [
        "line 2: quantity: counted 3 but 5 were reserved there by the time it was written: not applied"]
    assert (outcome.rows, outcome.receipts, outcome.counts) == (1, 1, 0)
    with db.transaction(write=False) as s:
        assert stock.level(s, "TEE-M", "WH").on_hand == 10
        assert stock.level(s, "TEE-S", "WH").on_hand == 2
        assert stock.check(s) == []


def test_apply_many_sums_per_level_and_refuses_all_when_a_guard_fails(db):
    network(db)
    stock_up(db, {("TEE-M", "WH"): 2})
    with db.transaction() as s:
        changed = stock.apply_many(s, [stock.Change("TEE-M", "WH", "receipt", on_hand=3),
                                       stock.Change("TEE-M", "WH", "adjustment", on_hand=-4, reason="lost"),
                                       stock.Change("TEE-S", "S01", "receipt", on_hand=6)])
    assert changed == 2
    with pytest.raises(stock.Conflict) as refused, db.transaction() as s:
        stock.apply_many(s, [stock.Change("TEE-S", "S01", "adjustment", on_hand=-1, reason="lost"),
                             stock.Change("TEE-M", "WH", "adjustment", on_hand=-2, reason="lost", field="x")])
    assert refused.value.code == "negative_stock" and "TEE-M at WH" in refused.value.message
    with db.transaction(write=False) as s:
        assert (stock.level(s, "TEE-M", "WH").on_hand, stock.level(s, "TEE-S", "S01").on_hand) == (1, 6)
        assert stock.check(s) == []


def test_an_import_never_deadlocks_with_a_checkout_holding_two_of_its_levels(db):
    """A checkout holds TEE-M (it updates its lines in key order) and is about to take TEE-S; an import chunk receives
    TEE-M and counts TEE-S. The import must wait for TEE-M before it holds TEE-S, or each would wait on the other."""
    import threading

    if db.dialect != "postgresql":
        pytest.skip("SQLite serialises writers: nothing to interleave")
    network(db)
    stock_up(db, {("TEE-M", "WH"): 5, ("TEE-S", "WH"): 5})
    rows, _ = importing.read_csv_text("sku,location,quantity,kind\nTEE-M,WH,2,receipt\nTEE-S,WH,9,count\n")
    checkout = db.begin()
    stock.apply(checkout, [stock.Change("TEE-M", "WH", "reservation", reserved=1, ref="c-1")])  # holds TEE-M
    done: list[object] = []
    importer = threading.Thread(target=lambda: done.append(importing.write(db, rows, ref="import-x")), daemon=True)
    importer.start()
    importer.join(0.5)
    assert importer.is_alive()  # waiting for TEE-M, holding nothing
    stock.apply(checkout, [stock.Change("TEE-S", "WH", "reservation", reserved=1, ref="c-1")])  # not blocked
    checkout.commit()
    checkout.close()
    importer.join(10)
    assert done and not importer.is_alive()
    with db.transaction(write=False) as s:
        assert (stock.level(s, "TEE-M", "WH").on_hand, stock.level(s, "TEE-S", "WH").on_hand) == (7, 9)
        assert stock.check(s) == []


def test_an_import_that_stops_says_which_rows_are_in(shop, tmp_path, monkeypatch):
    """Receipts add up: after a failure the operator must know which rows to send again, and which not."""
    real = importing.write_chunk
    calls = []

    def failing(session, rows, **kwargs):
        calls.append(len(rows))
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        return real(session, rows, **kwargs)

    monkeypatch.setattr(importing, "write_chunk", failing)
    path = _csv(tmp_path, "sku,location,quantity,kind\n" + "".join(f"TEE-M,WH,{n},receipt\n" for n in range(1, 6)))
    result = _run("import", str(path), "--chunk", "2")
    assert result.exit_code == 1
    assert "the import stopped: the first 2 rows (to line 3) were imported (ledger reference import-" in result.output
    assert "import the rest from line 4 on" in result.output
    assert "error: RuntimeError: the database went away" in result.output
    assert _on_hand(shop) == {("TEE-M", "WH"): (3, 0)}
