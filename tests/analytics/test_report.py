"""``omni analytics report``: one self-contained HTML file with every chart and the table behind it, whose numbers
are the analysis functions' answers; and a chart without data says so in words (``analytics.charts``)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from omnijourney.analytics import charts, clv, journeys, kpis, queries
from omnijourney.analytics.schemas import FunnelQuery, Period
from omnijourney.analytics.settings import AnalyticsSettings
from omnijourney.analytics.store import close_store
from omnijourney.analytics.tables import open_tables
from omnijourney.cli import app as cli
from omnijourney.db import Database
from tests.analytics.conftest import AnalyticsDB
from tests.analytics.shop import funnel_shop, report_shop

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
CHARTS = ("kpis", "journey_map", "funnel", "paths", "retention", "attribution", "clv")


class Page(HTMLParser):
    """What a test reads of the report: each table by id (header and rows as text), the sections that say a chart
    is missing, Plotly's chart divs, and every external reference (src or href to http(s))."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, list[Any]]] = {}
        self.missing: dict[str, str] = {}
        self.chart_divs: list[str] = []
        self.external: list[str] = []
        self.script_src: list[str] = []
        self._table: dict[str, list[Any]] | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._missing: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("src", "href"):
            if (a.get(key) or "").startswith(("http:", "https:", "//")):
                self.external.append(f"<{tag} {key}={a[key]}>")
        if tag == "script" and "src" in a:
            self.script_src.append(a["src"] or "")
        if tag == "div" and "plotly-graph-div" in (a.get("class") or ""):
            self.chart_divs.append(a.get("id") or "")
        if tag == "p" and a.get("data-missing"):
            self._missing = a["data-missing"]
            self.missing[self._missing] = ""
        if tag == "table" and a.get("id"):
            self._table = self.tables[a["id"]] = {"header": [], "rows": []}
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            if self._table["header"]:
                self._table["rows"].append(self._row)
            else:  # the first row is the head's
                self._table["header"] = self._row
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "p":
            self._missing = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._missing is not None:
            self.missing[self._missing] += data


def assert_table(page: Page, table_id: str, expected: pd.DataFrame) -> None:
    """The HTML table ``table_id`` holds ``expected`` row by row: the same columns, numbers equal to 1e-6 (shown
    with thousands grouped), a missing value shown as "—"."""
    got = page.tables[table_id]
    assert got["header"] == [str(c).replace("_", " ") for c in expected.columns], table_id
    assert len(got["rows"]) == len(expected), (table_id, len(got["rows"]), len(expected))
    for i, (row, want) in enumerate(zip(got["rows"], expected.itertuples(index=False), strict=True)):
        for col, text, value in zip(expected.columns, row, want, strict=True):
            where = f"{table_id} row {i} {col}"
            if value is None or (isinstance(value, float) and math.isnan(value)):
                assert text == "—", where
            elif isinstance(value, bool):
                assert text == ("yes" if value else "no"), where
            elif isinstance(value, int | float):
                assert float(text.replace(",", "")) == pytest.approx(float(value), abs=1e-6), (where, text, value)
            else:
                assert text == str(value), where


@pytest.fixture
def built(cli_database: Database, tmp_path: Path) -> tuple[Database, Path, str]:
    """The report shop, synced, and the report written by the command: (database, report file, its output)."""
    report_shop(cli_database)
    runner = CliRunner()
    assert runner.invoke(cli, ["analytics", "sync", "--quiet"]).exit_code == 0
    out = tmp_path / "report.html"
    done = runner.invoke(cli, ["analytics", "report", "--out", str(out)])
    assert done.exit_code == 0, done.output
    yield cli_database, out, done.output
    close_store(str(tmp_path / "cli-analytics.duckdb"))


def test_the_report_is_one_self_contained_file_with_each_chart_and_the_numbers_behind_it(
        built: tuple[Database, Path, str]) -> None:
    db, out, output = built
    assert f"{out}: 7 of 7 charts" in output
    html = out.read_text(encoding="utf-8")
    page = Page(html)
    # self-contained: no script, style or image fetched from anywhere; Plotly's bundle is inside
    assert page.script_src == [] and page.external == [] and "<link" not in html
    import plotly.offline

    assert plotly.offline.get_plotlyjs()[:2000] in html
    # each chart drawn (a Plotly div with its data) with its tables below it
    assert sorted(page.chart_divs) == sorted(f"{key}-chart" for key in CHARTS)
    assert page.missing == {}
    for key in CHARTS:
        section = html[html.index(f'<section id="{key}"'):]
        section = section[:section.index("</section>")]
        div = section.index(f'id="{key}-chart"')
        assert re.search(r'Plotly\.newPlot\(\s*"' + key + r'-chart",\s*\[\{', section), key  # traces, not empty
        assert section.index('<table id="') > div, key  # the table just below the chart

    # the numbers are the analyses' own answers
    everything = Period()
    with open_tables(db, AnalyticsSettings()) as t:
        stages, touch = queries.journey_map(t, everything)
        assert_table(page, "journey_map-stages", stages)
        assert_table(page, "journey_map-touchpoints", touch)
        steps = FunnelQuery(steps=[{"event": e} for e in charts.DEFAULT_STEPS], window=14)
        from omnijourney.analytics import funnels

        assert_table(page, "funnel-steps", funnels.funnel(t, steps))
        assert_table(page, "paths-moves", queries.paths(t, everything, max_steps=4))
        assert_table(page, "retention-cohorts", queries.retention(t, everything, cohort="month", periods=6))
        assert_table(page, "kpis-summary", kpis.kpis(t, everything, interval="period"))
        trends = page.tables["kpis-trends"]  # one KPI's trend of the thirteen: the same function, cheaper
        page.tables["orders"] = {"header": trends["header"], "rows": [r for r in trends["rows"] if r[0] == "orders"]}
        assert_table(page, "orders", kpis.kpis(t, everything, names=["orders"], interval="week"))
        credit = journeys.attribution(t, everything, lookback_days=30)
        orders = journeys.orders(t, everything)
    rows = [{"model": m, "channel": ch, "conversions": c["conversions"], "value": c["value"]}
            for m, model in credit["models"].items() for ch, c in model["channels"].items()]
    assert_table(page, "attribution-credit", pd.DataFrame(rows))
    with np.errstate(all="ignore"):  # the optimiser probes beyond the edge on so few customers
        fit = journeys.fit_orders(orders).report(horizon=round(clv.DAYS_PER_YEAR / 7, 4))
    model = page.tables["clv-model"]["rows"]
    assert [r[1] for r in model[:4]] == ["r", "alpha", "a", "b"]
    for r in model:
        section = "bgnbd" if r[0] == "BG/NBD" else "gamma_gamma"
        assert float(r[2].replace(",", "")) == pytest.approx(fit[section][r[1]], rel=1e-9)
    assert_table(page, "clv-segments", pd.DataFrame(fit["segments"]))
    distribution = page.tables["clv-distribution"]["rows"]
    assert sum(int(r[2]) for r in distribution) == fit["customers"]  # every customer in one bin
    # the KPI cards say the period's values as people read them
    summary = {r[0]: r for r in page.tables["kpis-summary"]["rows"]}
    assert re.search(r'id="kpi-orders">\s*<h3>Orders</h3>\s*<p class="value">' + summary["orders"][3] + "</p>", html)
    assert 'id="kpi-csat">' in html and "No data" in html[html.index('id="kpi-csat">'):][:400]


def test_a_report_without_data_says_so_for_every_chart(cli_database: Database, tmp_path: Path) -> None:
    out = tmp_path / "empty.html"
    done = CliRunner().invoke(cli, ["analytics", "report", "--out", str(out), "--quiet"])
    close_store(str(tmp_path / "cli-analytics.duckdb"))
    assert done.exit_code == 0, done.output
    assert "0 of 7 charts" in done.output
    page = Page(out.read_text(encoding="utf-8"))
    assert page.chart_divs == []  # no empty chart anywhere
    assert sorted(page.missing) == sorted(CHARTS)
    for key, said in page.missing.items():
        assert "there are no events yet" in said, (key, said)


def test_a_misspelt_step_or_option_is_one_line(cli_database: Database, tmp_path: Path) -> None:
    funnel_shop(cli_database)
    runner = CliRunner()
    out = tmp_path / "r.html"
    try:
        r = runner.invoke(cli, ["analytics", "report", "--out", str(out), "--step", "Product Viewed", "--step",
                                "Prodcut Added"])
        assert r.exit_code == 1 and "step 1: unknown event 'Prodcut Added'" in r.output, r.output
        r = runner.invoke(cli, ["analytics", "report", "--out", str(out), "--unit", "fortnight"])
        assert r.exit_code == 1 and "--unit" in r.output and "Traceback" not in r.output, r.output
        r = runner.invoke(cli, ["analytics", "report", "--out", str(out), "--since", "2026-04-01", "--until",
                                "2026-03-01"])
        assert r.exit_code == 1 and "--until: until must be after since" in r.output, r.output
        assert not out.exists()
    finally:
        close_store(str(tmp_path / "cli-analytics.duckdb"))


def test_a_chart_without_its_data_says_why(adb: AnalyticsDB) -> None:
    funnel_shop(adb.db)  # orders, but nobody bought twice, no survey, no checkout step
    march = Period(since=datetime(2026, 2, 1, tzinfo=UTC), until=datetime(2026, 4, 1, tzinfo=UTC))
    with adb.tables() as t:
        k = charts.kpi_trends(t, march, names=["orders", "nps"])
        value = charts.customer_value(t, march)
        nobody = charts.funnel(t, FunnelQuery(steps=[{"event": "Checkout Started"}, {"event": "Order Completed"}],
                                              since=march.since, until=march.until))
        before = charts.journey_map(t, Period(until=datetime(2026, 1, 1, tzinfo=UTC)))
    assert k.figure is not None and k.missing is None
    assert k.notes == ["NPS: no data (no NPS survey answers yet (Survey Answered events with survey=nps and a "
                       "score))."]
    assert value.figure is None and "no customer made a repeat purchase" in value.missing
    assert nobody.figure is None and nobody.missing == "nobody did the first step (Checkout Started) in the period"
    assert nobody.table("steps").frame.empty
    assert before.figure is None and before.missing == "no event at all falls between since and until"
    assert before.tables == []
