"""Attribution (per channel and per campaign) and CLV (per segment and per customer, with the holdout check) on the
platform's own data: below the API on every backend, then through /api/v1/analytics and `omni analytics`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from omnijourney.analytics import journeys
from omnijourney.analytics.schemas import Period
from omnijourney.analytics.store import close_store
from omnijourney.api.app import create_app
from omnijourney.cli import app as cli
from omnijourney.config import JobSettings, Settings
from omnijourney.core.errors import Invalid
from omnijourney.db import Database
from tests.analytics.conftest import AnalyticsDB
from tests.analytics.shop import Shop, order, report_shop
from tests.conftest import make_key
from tests.factories import msg, send

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::RuntimeWarning")
CALIBRATION_END, HOLDOUT_END = date(2026, 4, 15), date(2026, 5, 11)  # report_shop's orders: 1 March to 11 May


def campaign_shop(db: Database) -> Shop:
    """Four people, campaigns named the three ways a campaign arrives:

    * c1 comes from the "spring-sale" ad (context.campaign.name) and buys on the web (20);
    * c2 clicks the "newsletter" email (property campaign_name), then the spring-sale ad, and buys in the store (40);
    * c3 comes with no campaign at all and buys on the web (60): the touch "(none)";
    * c4 taps the "weekend" push notification (property campaign) and does not buy; c5's blank utm name is no
      campaign."""
    shop = Shop(db)
    web, store, email = shop.sources["web"], shop.sources["store"], shop.sources["email"]

    def touch(src: Any, user: str, minutes: float, event: str, props: dict[str, Any] | None = None,
              campaign: str | None = None) -> Any:
        context = {"campaign": {"name": campaign, "source": "google"}} if campaign is not None else {}
        return msg(src, user_id=user, anonymous_id=f"anon-{user}", event=event, minutes=minutes,
                   properties=props or {}, context=context)

    send(db, touch(web, "c1", 0, "Product Viewed", {"sku": "TEE"}, campaign="spring-sale"),
         touch(web, "c1", 10, "Order Completed", order("k1", 20)),
         touch(email, "c2", 0, "Email Link Clicked", {"campaign_name": "newsletter"}),
         touch(web, "c2", 60, "Product Viewed", {"sku": "CAP"}, campaign="spring-sale"),
         touch(store, "c2", 120, "Order Completed", order("k2", 40)),
         touch(web, "c3", 0, "Product Viewed", {"sku": "BAG"}),
         touch(web, "c3", 5, "Order Completed", order("k3", 60)),
         touch(shop.sources["app"], "c4", 0, "Push Notification Tapped", {"campaign": "weekend"}),
         touch(web, "c5", 0, "Product Viewed", {"sku": "TEE"}, campaign="  "))
    return shop


def credit(result: dict[str, Any], model: str, key: str = "channels") -> dict[str, tuple[float, float]]:
    """(conversions, value) per channel or campaign that a model credited with anything."""
    return {k: (v["conversions"], v["value"]) for k, v in result["models"][model][key].items()
            if v["conversions"] or v["value"]}


def test_attribution_per_campaign_and_per_channel(adb: AnalyticsDB) -> None:
    campaign_shop(adb.db)
    with adb.tables() as t:
        by_campaign = journeys.attribution(t, Period(), by="campaign")
        by_channel = journeys.attribution(t, Period())
        paths = journeys.paths_table(journeys.touches(t, Period(), by="campaign")).set_index("path")
    assert by_campaign["by"] == "campaign" and by_campaign["attributed"]["conversions"] == 3
    assert by_campaign["attributed"]["value"] == 120
    assert credit(by_campaign, "last_touch", "campaigns") == {"spring-sale": (2, 60), "(none)": (1, 60)}
    assert credit(by_campaign, "first_touch", "campaigns") == {"spring-sale": (1, 20), "newsletter": (1, 40),
                                                               "(none)": (1, 60)}
    assert credit(by_campaign, "linear", "campaigns") == {"spring-sale": (1.5, 40), "newsletter": (0.5, 20),
                                                          "(none)": (1, 60)}
    markov = credit(by_campaign, "markov", "campaigns")  # the weekend push led nowhere: no credit
    assert set(markov) == {"spring-sale", "newsletter", "(none)"}
    assert sum(c for c, _ in markov.values()) == pytest.approx(3)
    assert sum(v for _, v in markov.values()) == pytest.approx(120)
    # the journeys behind it: the SMS click did not convert; c5's blank utm name is no campaign (a "(none)" null)
    assert paths.loc["newsletter > spring-sale", "conversions"] == 1
    assert paths.loc["weekend", "nulls"] == 1 and paths.loc["(none)", "nulls"] == 1
    # per channel, every event is a touch: c2's journey is email > web > store
    assert credit(by_channel, "last_touch") == {"web": (2, 80), "store": (1, 40)}
    assert credit(by_channel, "first_touch") == {"web": (2, 80), "email": (1, 40)}


def test_a_bad_attribution_question_names_the_field(adb: AnalyticsDB) -> None:
    if adb.backend == "spark":
        pytest.skip("checked before any query: the same on every backend")
    campaign_shop(adb.db)
    with adb.tables() as t:
        for kw, field in (({"by": "medium"}, "by"), ({"lookback_days": 0}, "lookback_days"), ({"order": 5}, "order")):
            with pytest.raises(Invalid) as err:
                journeys.attribution(t, Period(), **kw)
            assert err.value.field == field


def holdout_truth(orders: pd.DataFrame) -> tuple[int, int, dict[str, int]]:
    """Counted by hand from the orders: customers acquired by the calibration end, their purchase days in the
    holdout, and each one's repeat purchase days in the calibration period."""
    days = orders.drop_duplicates(["customer_id", "day"])
    first = days.groupby("customer_id")["day"].min()
    known = set(first[first <= CALIBRATION_END].index)
    cal = days[days.customer_id.isin(known) & (days.day <= CALIBRATION_END)]
    hold = days[days.customer_id.isin(known) & (days.day > CALIBRATION_END) & (days.day <= HOLDOUT_END)]
    return len(known), len(hold), (cal.groupby("customer_id").size() - 1).to_dict()


def test_clv_per_segment_and_per_customer_with_the_holdout_check(adb: AnalyticsDB) -> None:
    report_shop(adb.db)
    kw = {"calibration_end": CALIBRATION_END, "holdout_end": HOLDOUT_END}
    with adb.tables() as t:
        orders = journeys.orders(t, Period())
        report = journeys.clv(t, Period(), **kw)
        customers = journeys.clv_customers(t, Period(), **kw)
        web = journeys.clv_customers(t, Period(), segment="web", limit=3, **kw)
    known, held, repeats = holdout_truth(orders)
    assert (report["customers"], report["holdout"]["actual"]) == (known, held)
    assert report["orders"] == len(orders) and report["calibration_end"] == "2026-04-15"
    assert sum(s["customers"] for s in report["segments"]) == known
    assert sum(s["clv_total"] for s in report["segments"]) == pytest.approx(report["prediction"]["clv_total"],
                                                                             abs=0.05)
    assert len(customers) == known and customers["holdout_purchases"].sum() == held
    assert dict(zip(customers.customer_id, customers.frequency, strict=True)) == repeats
    assert customers["clv"].is_monotonic_decreasing
    assert customers["clv"].sum() == pytest.approx(report["prediction"]["clv_total"], abs=0.05)
    web_size = next(s["customers"] for s in report["segments"] if s["segment"] == "web")
    assert len(web) == min(3, web_size) and set(web.segment) == {"web"}
    assert web.customer_id.tolist() == customers[customers.segment == "web"].customer_id.head(3).tolist()


# -- over HTTP (the API serves DuckDB or PostgreSQL) ---------------------------------------------------------------


@pytest.fixture
def api(adb: AnalyticsDB) -> Iterator[tuple[TestClient, dict[str, str]]]:
    if adb.backend == "spark":
        pytest.skip("the API serves the DuckDB store or PostgreSQL; Spark is tested below the API")
    campaign_shop(adb.db)
    report_shop(adb.db)
    settings = Settings(database_url=adb.db.url, jobs=JobSettings(embedded=False), analytics=adb.settings)
    with TestClient(create_app(adb.db, settings)) as client:
        if adb.backend == "duckdb":
            admin = {"Authorization": f"Bearer {make_key(adb.db, 'analytics:write')}"}
            assert client.post("/api/v1/analytics/sync", headers=admin).status_code == 200
        yield client, {"Authorization": f"Bearer {make_key(adb.db, 'analytics:read')}"}


def test_attribution_and_clv_over_http(api: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = api
    got = client.get("/api/v1/analytics/attribution?by=campaign&lookback_days=7&order=2", headers=headers)
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["by"] == "campaign" and body["lookback_days"] == 7
    assert body["models"]["last_touch"]["campaigns"]["spring-sale"]["conversions"] == 2
    assert body["models"]["markov"]["order"] == 2
    by_channel = client.get("/api/v1/analytics/attribution", headers=headers).json()
    assert by_channel["by"] == "channel" and "web" in by_channel["models"]["shapley"]["channels"]
    q = "calibration_end=2026-04-15&holdout_end=2026-05-11"
    report = client.get(f"/api/v1/analytics/clv?{q}&horizon=26&annual_discount_rate=0.05", headers=headers)
    assert report.status_code == 200, report.text
    r = report.json()
    assert r["prediction"]["horizon"] == 26 and r["holdout"]["by_frequency"]
    assert {s["segment"] for s in r["segments"]} >= {"web", "store"}
    rows = client.get(f"/api/v1/analytics/clv/customers?{q}&horizon=26&annual_discount_rate=0.05&limit=5",
                      headers=headers).json()["rows"]
    assert len(rows) == 5 and [x["clv"] for x in rows] == sorted((x["clv"] for x in rows), reverse=True)
    assert set(rows[0]) >= {"customer_id", "segment", "frequency", "recency", "T", "monetary", "holdout_purchases",
                            "expected_purchases", "p_alive", "expected_spend", "clv"}


BAD_QUESTIONS = [
    ("/attribution?by=medium", "by"),
    ("/attribution?lookback_days=0", "lookback_days"),
    ("/attribution?order=9", "order"),
    ("/clv", "calibration_end"),
    ("/clv?calibration_end=2020-01-01", "calibration_end"),
    ("/clv?calibration_end=2026-04-15&holdout_end=2026-04-01", "holdout_end"),
    ("/clv?calibration_end=2026-04-15&horizon=0", "horizon"),
    ("/clv?calibration_end=2026-04-15&unit=months", "unit"),
    ("/clv?calibration_end=2026-04-15&annual_discount_rate=-2", "annual_discount_rate"),
    ("/clv/customers?calibration_end=2026-04-15&segment=moon", "segment"),
    ("/clv/customers?calibration_end=2026-04-15&limit=0", "limit"),
    ("/clv/customers?calibration_end=not-a-day", "calibration_end"),
]


def test_bad_model_questions_are_422_naming_the_field(api: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = api  # one shop for every question: each is answered before or instead of a result
    for path, field in BAD_QUESTIONS:
        r = client.get(f"/api/v1/analytics{path}", headers=headers)
        assert (r.status_code, r.json().get("field")) == (422, field), (path, r.text)


# -- `omni analytics attribution` and `omni analytics clv` without a file: the platform's own data -----------------


@pytest.fixture
def own(cli_database: Database, tmp_path: Path) -> Iterator[CliRunner]:
    campaign_shop(cli_database)
    report_shop(cli_database)
    runner = CliRunner()
    assert runner.invoke(cli, ["analytics", "sync", "--quiet"]).exit_code == 0
    yield runner
    close_store(str(tmp_path / "cli-analytics.duckdb"))


def test_the_model_commands_on_the_platforms_own_data(own: CliRunner, tmp_path: Path) -> None:
    r = own.invoke(cli, ["analytics", "attribution", "--by", "campaign", "--since", "2026-03-01"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["models"]["last_touch"]["campaigns"]["spring-sale"]["conversions"] == 2
    out = tmp_path / "customers.csv"
    r = own.invoke(cli, ["analytics", "clv", "--calibration-end", "2026-04-15", "--holdout-end", "2026-05-11",
                         "--out", str(out)])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["holdout"]["actual"] > 0 and report["predictions_file"] == str(out)
    per_customer = pd.read_csv(out)
    assert len(per_customer) == report["customers"] and per_customer["clv"].is_monotonic_decreasing


@pytest.mark.parametrize(("args", "says"), [
    (["attribution", "--paths", "x.csv", "--since", "2026-03-01"], "--since: only for the platform's own data"),
    (["attribution", "--lookback-days", "0"], "--lookback-days must be more than 0"),
    (["clv", "--calibration-end", "2020-01-01"], "--calibration-end: calibration_end must fall within the orders"),
    (["clv", "--calibration-end", "2026-04-15", "--until", "2020-01-01"], "no event at all"),
])
def test_bad_own_data_options_are_one_line(own: CliRunner, args: list[str], says: str) -> None:
    r = own.invoke(cli, ["analytics", *args])
    assert r.exit_code == 1, r.output
    assert says in r.output and "Traceback" not in r.output
