"""The console's analytics pages, over HTTP and in Chromium, on the seeded shop plus three months of journeys
(tests/analytics/shop.py's report shop) synced into the DuckDB store: each page draws its chart (a Plotly div with
data) from the figures ``analytics.charts`` built, shows the tables behind it, and its CSV export downloads the same
rows as the analysis functions answer for the question in the address; a question with a mistake shows the error
next to its control; a page without data says so. The dashboard's screenshot goes to docs/screenshots/ when missing
there (``OMNI_SCREENSHOTS=1`` takes it again).
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from omnijourney.analytics import funnels, journeys, kpis, queries
from omnijourney.analytics.schemas import FunnelQuery, Period
from omnijourney.analytics.settings import AnalyticsSettings
from omnijourney.analytics.store import close_store, default_path, open_store
from omnijourney.analytics.sync import sync
from omnijourney.analytics.tables import open_tables
from omnijourney.api.app import create_app
from omnijourney.config import JobSettings, Settings
from omnijourney.db import Database
from tests.analytics.shop import report_shop
from tests.console.seed import World
from tests.console.test_browser import DESKTOP, SHOTS, Tab
from tests.factories_staff import login

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::RuntimeWarning")

SPRING = {"since": "2026-02-23", "until": "2026-06-30"}  # the report shop's three months ("until" is included)
# the dashboard's question in every test: built once a minute (the pages keep their charts), the KPIs are the slowest
DASHBOARD = {**SPRING, "interval": "month", "by": "channel"}
SPRING_PERIOD = Period(since=datetime(2026, 2, 23, tzinfo=UTC), until=datetime(2026, 7, 1, tzinfo=UTC))
PAGES = {"": "kpis", "/journey-map": "journey_map", "/funnel": "funnel", "/paths": "paths",
         "/retention": "retention", "/attribution": "attribution", "/clv": "clv"}


@pytest.fixture(scope="module")
def synced(world: World) -> Iterator[World]:
    """The seeded shop plus the report shop's journeys, copied into the DuckDB store the app reads."""
    report_shop(world.db)
    path = default_path(world.db.url, AnalyticsSettings())
    sync(world.db, open_store(path))
    yield world
    close_store(path)


@pytest.fixture(scope="module")
def analyst(synced: World) -> Iterator[tuple[TestClient, dict[str, str]]]:
    client = TestClient(synced.app)
    yield client, login(client, synced.accounts["analyst"]).headers


def expected_csv(df: Any) -> list[list[str]]:
    return list(csv.reader(io.StringIO(df.to_csv(index=False))))


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_each_page_draws_its_chart_with_the_tables_behind_it(analyst: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = analyst
    for path, key in PAGES.items():
        r = client.get(f"/console/analytics{path}?{urlencode(DASHBOARD if key == 'kpis' else SPRING)}",
                       headers=headers)
        assert r.status_code == 200, (path, r.text[:500])
        page = r.text
        assert f'data-figure="figure-{key}"' in page, path
        block = re.search(rf'<script type="application/json" id="figure-{key}">(.*?)</script>', page, re.S)
        assert block and '"data":[{' in block.group(1), path  # a figure with traces, never an empty one
        assert f'<table id="{key}-' in page and "Download" in page, path
        assert "No chart" not in page, path


def test_the_csv_export_holds_the_rows_the_analyses_answer(analyst: tuple[TestClient, dict[str, str]],
                                                            synced: World) -> None:
    client, headers = analyst
    funnel_q = {**SPRING, "step1": "Product Viewed", "step2": "Product Added", "step3": "Order Completed",
                "window": "7", "unit": "day", "breakdown": "channel"}

    def export(path: str, params: dict[str, str], table: str) -> list[list[str]]:
        r = client.get(f"/console/analytics/{path}.csv?{urlencode({**params, 'table': table})}", headers=headers)
        assert r.status_code == 200, (path, table, r.text[:300])
        assert r.headers["content-type"].startswith("text/csv")
        assert r.headers["content-disposition"] == f'attachment; filename="omnijourney-{path}-{table}.csv"'
        return rows_of(r.text)

    got = {
        "funnel": export("funnel", funnel_q, "steps"),
        "stages": export("journey-map", SPRING, "stages"),
        "moves": export("paths", {**SPRING, "max_steps": "3"}, "moves"),
        "cohorts": export("retention", {**SPRING, "cohort": "week", "periods": "4"}, "cohorts"),
        "summary": export("dashboard", DASHBOARD, "summary"),
        "trends": export("dashboard", DASHBOARD, "trends"),
        "credit": export("attribution", {**SPRING, "lookback_days": "14"}, "credit"),
    }
    with open_tables(synced.db, AnalyticsSettings()) as t:
        q = FunnelQuery(steps=[{"event": e} for e in ("Product Viewed", "Product Added", "Order Completed")],
                        window=7, breakdown="channel", breakdown_limit=10, since=SPRING_PERIOD.since,
                        until=SPRING_PERIOD.until)
        assert got["funnel"] == expected_csv(funnels.funnel(t, q))
        assert got["stages"] == expected_csv(queries.journey_map(t, SPRING_PERIOD)[0])
        assert got["moves"] == expected_csv(queries.paths(t, SPRING_PERIOD, max_steps=3))
        assert got["cohorts"] == expected_csv(queries.retention(t, SPRING_PERIOD, cohort="week", periods=4))
        assert got["summary"] == expected_csv(kpis.kpis(t, SPRING_PERIOD, interval="period"))
        assert got["trends"] == expected_csv(kpis.kpis(t, SPRING_PERIOD, interval="month", by_channel=True))
        credit = journeys.attribution(t, SPRING_PERIOD, lookback_days=14)
    assert got["credit"][1:] == [[m, ch, f"{c['conversions']}", f"{c['value']}"]
                                 for m, model in credit["models"].items() for ch, c in model["channels"].items()]
    # the period's "until" is its last day, included: the same day as since and until is that day's events
    one_day = export("journey-map", {"since": "2026-03-01", "until": "2026-03-01"}, "stages")
    with open_tables(synced.db, AnalyticsSettings()) as t:
        day = Period(since=datetime(2026, 3, 1, tzinfo=UTC), until=datetime(2026, 3, 2, tzinfo=UTC))
        assert one_day == expected_csv(queries.journey_map(t, day)[0])


@pytest.mark.parametrize(("path", "field", "says"), [
    ("/funnel?step1=Product+Viewed&step2=Prodcut+Added", "step2", "unknown event 'Prodcut Added'"),
    ("/funnel?step1=Product+Viewed", "step2", "at least two steps"),
    ("/funnel?step1=Product+Viewed&step2=Product+Added&window=0", "window", "a number from"),
    ("?since=2026-05-01&until=2026-04-01", "until", "until must be after since"),
    ("/retention?since=yesterday", "since", "is not a date"),
    ("/paths?max_steps=99", "max_steps", "a number from 1 to 10"),
    ("/attribution?markov_order=9", "markov_order", "one of 1, 2, 3"),
    ("/clv?calibration_end=2020-01-01", "calibration_end", "calibration_end must fall within the orders"),
])
def test_a_question_with_a_mistake_is_told_next_to_its_control(analyst: tuple[TestClient, dict[str, str]],
                                                                path: str, field: str, says: str) -> None:
    client, headers = analyst
    r = client.get(f"/console/analytics{path}", headers=headers)
    assert r.status_code == 422, r.text[:300]
    found = re.search(rf'id="{field}-error"[^>]*>([^<]*)<', r.text)
    assert found and says in found.group(1).replace("&#39;", "'"), (path, found and found.group(1))
    assert 'data-figure="' not in r.text


def test_an_unknown_table_or_page_is_refused_with_a_page(analyst: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = analyst
    r = client.get("/console/analytics/funnel.csv?table=people", headers=headers)
    assert r.status_code == 422 and "no table &#39;people&#39; on this page: one of steps" in r.text
    assert client.get("/console/analytics/everything.csv?table=x", headers=headers).status_code == 404


def test_pages_without_data_say_so(sqlite_template: Path, tmp_path: Path, cheap: None) -> None:
    from tests.factories_staff import staff

    path = tmp_path / "empty.db"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite:///{path}")
    try:
        client = TestClient(create_app(db, Settings(database_url=db.url, jobs=JobSettings(embedded=False))))
        headers = login(client, staff(db, "marketer")).headers
        for page, key in PAGES.items():
            r = client.get(f"/console/analytics{page}", headers=headers)
            assert r.status_code == 200, (page, r.text[:300])
            assert re.search(rf'data-missing="{key}">No chart: there are no events yet', r.text), page
            assert 'data-figure="' not in r.text
        r = client.get("/console/analytics/funnel.csv?table=steps", headers=headers)
        assert r.status_code == 404 and "nothing to export: there are no events yet" in r.text
    finally:
        close_store(default_path(db.url, AnalyticsSettings()))
        db.dispose()


# ---------------------------------------------------------------- in Chromium

def drawn(page: Any) -> dict[str, int]:
    """Per chart box on the page: how many traces Plotly drew in it (after waiting for its SVG)."""
    for box in page.locator("[data-figure]").all():
        box.locator(".main-svg").first.wait_for()
    return page.evaluate("() => Object.fromEntries(Array.from(document.querySelectorAll('[data-figure]'))"
                         ".map((d) => [d.id, d.data ? d.data.length : 0]))")


@pytest.fixture(scope="module")
def nils(browser: Any, served: str, synced: World) -> Iterator[Tab]:
    tab = Tab(browser, served, synced, "analyst")
    yield tab
    tab.close()


def test_an_analyst_walks_the_analytics_pages_in_the_browser(nils: Tab) -> None:
    page = nils.open("/console")
    nav = page.get_by_role("navigation", name="Console")
    for label, key in zip(("KPI dashboard", "Journey map", "Funnel", "Channel paths", "Retention", "Attribution",
                           "Customer value"), PAGES.values(), strict=True):
        nav.get_by_role("link", name=label).click()
        page.wait_for_load_state("load")
        assert nav.get_by_role("link", name=label).get_attribute("aria-current") == "page"
        assert drawn(page)[f"chart-{key}"] > 0, label
        assert page.locator(f'table[id^="{key}-"] tbody tr').count() > 0, label
        nils.check(label)


def test_the_funnel_builder_and_its_csv_download(nils: Tab, synced: World) -> None:
    page = nils.open("/console/analytics/funnel")
    page.get_by_label("From").fill(SPRING["since"])
    page.get_by_label("To").fill(SPRING["until"])
    page.get_by_label("Step 2").select_option("Order Completed")
    page.get_by_label("Step 3").select_option("")
    page.get_by_label("Conversion window").fill("3")
    page.get_by_label("Breakdown").select_option("channel")
    page.get_by_role("button", name="Show").click()
    page.wait_for_load_state("load")
    traces = drawn(page)["chart-funnel"]
    q = FunnelQuery(steps=[{"event": "Product Viewed"}, {"event": "Order Completed"}], window=3, breakdown="channel",
                    breakdown_limit=10, since=SPRING_PERIOD.since, until=SPRING_PERIOD.until)
    with open_tables(synced.db, AnalyticsSettings()) as t:
        expected = funnels.funnel(t, q)
    assert traces == expected["breakdown"].nunique()  # one funnel per channel
    shown = page.locator("#funnel-steps tbody tr")
    assert shown.count() == len(expected)
    people = [int(r.replace(",", "")) for r in page.locator("#funnel-steps tbody td:nth-child(6)").all_inner_texts()]
    assert people == expected["people"].tolist()
    nils.check("funnel with a breakdown")
    with page.expect_download() as started:
        page.get_by_role("link", name="Download steps (CSV)").click()
    download = started.value
    assert download.suggested_filename == "omnijourney-funnel-steps.csv"
    assert rows_of(Path(download.path()).read_text()) == expected_csv(expected)


def test_the_dashboard_at_a_glance(nils: Tab) -> None:
    page = nils.open(f"/console/analytics?{urlencode(DASHBOARD)}")
    assert drawn(page)["chart-kpis"] > 9  # a panel per KPI with data, a line per channel in it
    names = page.evaluate("() => document.getElementById('chart-kpis').data.map((t) => t.name)")
    assert set(names) == {"web", "app", "store", "email"}  # the report shop's channels in spring
    # the card says the period's value of the table below (whose rows the CSV test compares with the KPIs')
    orders = page.locator("#kpis-summary tbody tr", has_text="orders").first.locator("td:nth-child(4)")
    assert page.locator("#kpi-orders .kpi-value").inner_text() == orders.inner_text()
    assert page.locator("#kpi-csat .kpi-value").inner_text() == "No data"
    assert "no CSAT survey answers yet" in page.locator("#kpi-csat .kpi-why").inner_text()
    nils.check("dashboard")
    shot = SHOTS / "analytics-dashboard.png"
    if not shot.exists() or os.environ.get("OMNI_SCREENSHOTS"):  # spring's KPIs, and their weekly trends below
        page = nils.open(f"/console/analytics?{urlencode(SPRING)}")
        page.set_viewport_size({"width": 1280, "height": 1400})
        drawn(page)
        page.screenshot(path=str(shot))
        page.set_viewport_size(DESKTOP)
