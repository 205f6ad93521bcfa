"""``omni analytics ...`` on an operator's SQLite database and its DuckDB store beside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from omnijourney.analytics.store import close_store
from omnijourney.cli import app as cli
from omnijourney.db import Database
from tests.analytics.shop import funnel_shop

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
STEPS = ["Product Viewed", "Product Added", "Order Completed"]


@pytest.fixture
def synced(cli_database: Database, tmp_path: Path) -> CliRunner:
    funnel_shop(cli_database)
    runner = CliRunner()
    done = runner.invoke(cli, ["analytics", "sync"])
    assert done.exit_code == 0, done.output
    assert "18 events and 1 merges copied" in done.output
    assert (tmp_path / "cli-analytics.duckdb").exists()  # beside cli.db
    yield runner
    close_store(str(tmp_path / "cli-analytics.duckdb"))


def test_sync_then_a_funnel_as_json_and_as_a_table(synced: CliRunner) -> None:
    again = synced.invoke(cli, ["analytics", "sync", "--quiet"])
    assert "0 events and 0 merges copied" in again.output
    out = synced.invoke(cli, ["analytics", "funnel", *STEPS, "--window", "1", "--breakdown", "channel", "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert [r["people"] for r in rows if r["breakdown"] == "web"] == [6, 5, 4]
    table = synced.invoke(cli, ["analytics", "funnel", *STEPS, "--window", "1", "--where", "0:sku=TEE"])
    assert table.exit_code == 0 and "Order Completed" in table.stdout and "0.75" in table.stdout  # 3 of 4 TEE
    for args in (["journey-map"], ["lifecycle", "--interval", "day"], ["paths"], ["retention"], ["kpis"],
                 ["stickiness"], ["repeat"], ["status"]):
        r = synced.invoke(cli, ["analytics", *args])
        assert r.exit_code == 0, (args, r.output)


def test_exports_for_the_model_commands(synced: CliRunner, tmp_path: Path) -> None:
    paths, orders = tmp_path / "paths.csv", tmp_path / "orders.csv"
    assert synced.invoke(cli, ["analytics", "journeys", "--csv", str(paths)]).exit_code == 0
    assert synced.invoke(cli, ["analytics", "orders", "--csv", str(orders)]).exit_code == 0
    assert paths.read_text().splitlines()[0] == "path,conversions,value,nulls"
    assert len(orders.read_text().splitlines()) == 6  # the header and five orders
    attributed = synced.invoke(cli, ["analytics", "attribution", "--paths", str(paths)])
    assert attributed.exit_code == 0, attributed.output


@pytest.mark.parametrize(("args", "says"), [
    (["funnel", "Product Viewed", "Prodcut Added"], "step 1: unknown event 'Prodcut Added'"),
    (["funnel", *STEPS, "--window", "0"], "--window: the conversion window must be longer than zero"),
    (["funnel", *STEPS, "--since", "2026-03-05", "--until", "2026-03-01"], "--until: until must be after since"),
    (["kpis", "--kpi", "happiness"], "--kpis: unknown KPI 'happiness'"),
    (["funnel", *STEPS, "--where", "sku"], "error: --where 'sku': write STEP:KEY=VALUE"),
])
def test_bad_questions_are_one_line(synced: CliRunner, args: list[str], says: str) -> None:
    r = synced.invoke(cli, ["analytics", *args])
    assert r.exit_code == 1
    assert says in r.output
    assert "Traceback" not in r.output
