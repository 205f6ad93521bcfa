"""/api/v1/analytics on both backends: answers, scopes, and a 422 naming the field for every bad question."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from omnijourney.api.app import create_app
from omnijourney.config import JobSettings, Settings
from tests.analytics.conftest import AnalyticsDB
from tests.analytics.shop import funnel_shop
from tests.conftest import make_key

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
STEPS = [{"event": "Product Viewed"}, {"event": "Product Added"}, {"event": "Order Completed"}]


@pytest.fixture
def api(adb: AnalyticsDB) -> Iterator[tuple[TestClient, dict[str, str]]]:
    if adb.backend == "spark":
        pytest.skip("the API serves the DuckDB store or PostgreSQL; Spark is tested below the API")
    funnel_shop(adb.db)
    settings = Settings(database_url=adb.db.url, jobs=JobSettings(embedded=False), analytics=adb.settings)
    with TestClient(create_app(adb.db, settings)) as client:
        headers = {"Authorization": f"Bearer {make_key(adb.db, 'analytics:write')}"}
        if adb.backend == "duckdb":
            synced = client.post("/api/v1/analytics/sync", headers=headers)
            assert synced.status_code == 200
            assert synced.json()["copied"]["events"] == 18  # 16 touchpoints, 2 identify calls
            assert synced.json()["backlog"] == 0
        yield client, {"Authorization": f"Bearer {make_key(adb.db, 'analytics:read')}"}


def test_a_funnel_and_the_other_questions_over_http(api: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = api
    r = client.post("/api/v1/analytics/funnels", headers=headers, json={"steps": STEPS, "window": 1,
                                                                       "breakdown": "channel"})
    assert r.status_code == 200
    web = [row["people"] for row in r.json()["rows"] if row["breakdown"] == "web"]
    assert web == [6, 5, 4]
    assert client.post("/api/v1/analytics/funnels/people?step=0", headers=headers,
                       json={"steps": STEPS, "window": 1}).json()["rows"][0]["breakdown"] == "all"
    hist = client.post("/api/v1/analytics/funnels/time-to-convert?bins=2", headers=headers,
                       json={"steps": STEPS, "window": 1}).json()["rows"]
    assert sum(b["people"] for b in hist) == 4
    for path in ("journey-map", "lifecycle", "stickiness", "paths", "retention", "repeat-purchase", "kpis",
                 "attribution"):
        got = client.get(f"/api/v1/analytics/{path}", headers=headers)
        assert got.status_code == 200, (path, got.text)
    kpis = {row["kpi"]: row for row in client.get("/api/v1/analytics/kpis", headers=headers).json()["rows"]}
    assert kpis["orders"]["value"] == 5 and kpis["nps"]["status"] == "no data" and kpis["nps"]["reason"]


def test_scopes(api: tuple[TestClient, dict[str, str]], adb: AnalyticsDB) -> None:
    client, headers = api
    assert client.get("/api/v1/analytics/kpis").status_code == 401
    other = {"Authorization": f"Bearer {make_key(adb.db, 'customers:read')}"}
    assert client.get("/api/v1/analytics/kpis", headers=other).status_code == 403
    assert client.post("/api/v1/analytics/sync", headers=headers).status_code == 403  # read may not force a sync


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("post", "/funnels", {"steps": [STEPS[0], {"event": "Prodcut Added"}]}, "steps[1].event"),
    ("post", "/funnels", {"steps": STEPS, "window": 0}, "window"),
    ("post", "/funnels", {"steps": STEPS, "window_unit": "fortnight"}, "window_unit"),
    ("post", "/funnels", {"steps": STEPS, "since": "2026-03-05T00:00:00Z", "until": "2026-03-01T00:00:00Z"},
     "until"),
    ("post", "/funnels", {"steps": STEPS, "since": "2024-01-01T00:00:00Z", "until": "2024-02-01T00:00:00Z"},
     "since"),
    ("post", "/funnels", {"steps": STEPS, "exclusions": [{"event": "Order Completed", "from_step": 2}]},
     "exclusions[0].from_step"),
    ("post", "/funnels/people?step=7", {"steps": STEPS}, "step"),
    ("get", "/kpis?kpi=happiness", None, "kpis[0]"),
    ("get", "/kpis?since=yesterday", None, "since"),
    ("get", "/paths?kind=event&start=Nothing", None, "start"),
    ("get", "/lifecycle?interval=year", None, "interval"),
    ("get", "/clv?calibration_end=2020-01-01", None, "calibration_end"),
])
def test_bad_questions_are_422_naming_the_field(api: tuple[TestClient, dict[str, str]], method: str, path: str,
                                                body: Any, field: str) -> None:
    client, headers = api
    r = client.request(method.upper(), f"/api/v1/analytics{path}", headers=headers, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


def test_no_store_to_sync_on_the_application_database(api: tuple[TestClient, dict[str, str]], adb: AnalyticsDB) -> None:
    if adb.backend == "duckdb":
        pytest.skip("the DuckDB store is there to sync")
    client, headers = api
    r = client.get("/api/v1/analytics/sync", headers=headers)
    assert (r.status_code, r.json()["code"]) == (409, "no_analytics_store")
