"""Journey map, lifecycle, stickiness, paths, retention, repeat purchases and KPIs on both backends, with answers
known by construction (tests/analytics/shop.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from omnijourney.analytics import kpis, queries
from omnijourney.analytics.schemas import Period
from omnijourney.core.errors import Invalid
from tests.analytics.conftest import AnalyticsDB
from tests.analytics.shop import DAY, Shop, funnel_shop, order

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
MARCH = Period(since=datetime(2026, 3, 1, tzinfo=UTC), until=datetime(2026, 4, 1, tzinfo=UTC))


def richer_shop(adb: AnalyticsDB) -> Shop:
    """The funnel shop, plus: u2 returns o2 (refunded 40) three days later; NPS answers 10, 9, 7, 3; u1 buys again."""
    shop = funnel_shop(adb.db)
    shop.person("u2", [(3 * DAY, "store", "Order Returned", {"order_id": "o2", "return_id": "r1"}),
                       (3 * DAY + 1, "store", "Order Refunded", {"order_id": "o2", "return_id": "r1",
                                                                  "refund": "40.00"})])
    for i, score in enumerate([10, 9, 7, 3]):
        shop.person(f"u{i + 1}", [(4 * DAY, "email", "Survey Answered", {"survey": "nps", "score": score})])
    shop.person("u1", [(5 * DAY, "web", "Order Completed", order("o7", 30))])
    return shop


def test_journey_map_stages_and_touchpoints(adb: AnalyticsDB) -> None:
    richer_shop(adb)
    with adb.tables() as t:
        stages, touch = queries.journey_map(t, MARCH)
        store_people, _ = queries.journey_map(t, MARCH, channel="store")
    by = stages.set_index("stage")
    assert by.loc["before", "people"] == 6 and by.loc["during", "people"] == 5
    assert by.loc["after", "people"] == 4  # u2's return; the survey answers of u1..u4
    assert by.loc["before", "to_next_stage"] == 5
    assert by.loc["before", "conversion_to_next"] == pytest.approx(5 / 6, abs=1e-6)
    assert by.loc["during", "channels"].split(", ")[0] == "web"
    views = touch[(touch.name == "Product Viewed") & (touch.channel == "web")].iloc[0]
    assert (views.stage, views.events, views.people) == ("before", 6, 6)
    assert store_people.set_index("stage").loc["before", "people"] == 3  # u2 (return), u3, u6 used the store


def test_lifecycle_and_stickiness(adb: AnalyticsDB) -> None:
    funnel_shop(adb.db)
    with adb.tables() as t:
        life = queries.lifecycle(t, MARCH, interval="day")
        sticky = queries.stickiness(t, MARCH, interval="day")
    got = {(r.bucket, r.status): r.people for r in life.itertuples()}
    assert got == {("2026-03-01", "new"): 6, ("2026-03-02", "dormant"): -6, ("2026-03-03", "resurrecting"): 1,
                   ("2026-03-04", "dormant"): -1}
    s = {(r.channel, r.active_days): r.people for r in sticky.itertuples()}
    assert s == {("web", 1): 5, ("web", 2): 1, ("store", 1): 2, ("app", 1): 1}


def test_paths_between_channels_and_events(adb: AnalyticsDB) -> None:
    funnel_shop(adb.db)
    with adb.tables() as t:
        channels = queries.paths(t, MARCH)
        from_add = queries.paths(t, MARCH, kind="event", start="Product Added")
    got = {(r.level, r.source, r.target): r.people for r in channels.itertuples()}
    assert got == {(1, "web", "store"): 2, (1, "web", "app"): 1, (2, "app", "web"): 1}
    assert {(r.level, r.source, r.target): r.people for r in from_add.itertuples()} == {
        (1, "Product Added", "Order Completed"): 5}


def test_retention_and_repeat_purchases(adb: AnalyticsDB) -> None:
    richer_shop(adb)
    with adb.tables() as t:
        monthly = queries.retention(t, MARCH, cohort="month")
        weekly = queries.retention(t, MARCH, cohort="week")
        repeat = queries.repeat_purchase(t, MARCH)
    assert monthly.to_dict("records") == [{"cohort": "2026-03-01", "cohort_size": 5, "period": 0, "people": 5,
                                           "rate": 1.0}]
    # 2026-03-01 is a Sunday: the week of 23 Feb holds everyone's first order but u4's (3 March)
    assert weekly[["cohort", "cohort_size", "period", "people"]].values.tolist() == [
        ["2026-02-23", 4, 0, 4], ["2026-02-23", 4, 1, 1], ["2026-03-02", 1, 0, 1]]
    r = repeat.set_index("channel")
    assert (r.loc["all", "buyers"], r.loc["all", "repeat_buyers"]) == (5, 1)
    assert r.loc["web", "rate"] == pytest.approx(1 / 3, abs=1e-6)


def test_kpis_are_defined_numbers_or_say_why_not(adb: AnalyticsDB) -> None:
    richer_shop(adb)
    with adb.tables() as t:
        k = kpis.kpis(t, MARCH)
        per_channel = kpis.kpis(t, MARCH, names=["orders", "revenue"], by_channel=True)
        weekly = kpis.kpis(t, MARCH, names=["orders"], interval="week")
    v = {r.kpi: r.value for r in k.itertuples()}
    assert v["orders"] == 6 and v["revenue"] == 330 and v["aov"] == 55
    assert v["conversion_rate"] == pytest.approx(5 / 6, abs=1e-6)
    assert v["cart_abandonment"] == 0  # five carts, five of them ordered
    assert v["cross_channel_share"] == pytest.approx(5 / 6, abs=1e-6)  # all but u5 (the survey came by email)
    assert v["return_rate"] == pytest.approx(1 / 6, abs=1e-6)
    assert v["nps"] == pytest.approx(25.0, abs=1e-6)  # 2 promoters, 1 detractor of 4
    assert v["touchpoints_per_purchase"] == pytest.approx((2 * 5 + 1) / 6, abs=1e-6)  # u1's second order: the survey
    status = {r.kpi: (r.status, r.reason) for r in k.itertuples()}
    for name in ("csat", "first_response_time", "resolution_time", "loyalty_participation"):
        assert status[name][0] == "no data" and status[name][1]
    o = {(r.kpi, r.channel): r.value for r in per_channel.itertuples()}
    assert o[("orders", "web")] == 4 and o[("orders", "store")] == 2 and o[("revenue", "store")] == 160
    assert weekly.set_index("bucket")["value"].to_dict() == {"2026-02-23": 4, "2026-03-02": 2}


def test_kpis_of_several_views_in_one_query_are_each_views_own(adb: AnalyticsDB) -> None:
    """The dashboard asks for the period's totals and the weekly trends at once: the same tables as asked apart (a
    view's people, carts or channels never leak into another's), and the same question again is not compiled
    again."""
    richer_shop(adb)
    views = [("period", False), ("week", True), ("day", False), ("month", True)]
    with adb.tables() as t:
        together = kpis.kpi_views(t, MARCH, views)
        for (interval, by_channel), got in zip(views, together, strict=True):
            alone = kpis.kpis(t, MARCH, interval=interval, by_channel=by_channel)
            pd.testing.assert_frame_equal(got, alone)
        assert together[0].set_index("kpi").loc["orders", "value"] == 6
        web = together[1][(together[1].kpi == "cross_channel_share") & (together[1].channel == "web")]
        assert web["value"].between(0, 1).all() and len(web) == 2  # two weeks with web touchpoints

        def compile_again(*args: object, **kwargs: object) -> None:
            raise AssertionError("the same question was compiled again")

        t.con.compile = compile_again
        pd.testing.assert_frame_equal(kpis.kpi_views(t, MARCH, views)[1], together[1])


@pytest.mark.parametrize(("call", "field"), [
    (lambda t: queries.lifecycle(t, MARCH, interval="year"), "interval"),
    (lambda t: queries.paths(t, MARCH, kind="event", start="Nothing Happened"), "start"),
    (lambda t: queries.retention(t, MARCH, cohort="day"), "cohort"),
    (lambda t: kpis.kpis(t, MARCH, names=["happiness"]), "kpis[0]"),
    (lambda t: kpis.kpis(t, Period(since=datetime(2025, 1, 1, tzinfo=UTC), until=datetime(2025, 2, 1, tzinfo=UTC))),
     "since"),
    (lambda t: queries.journey_map(t, Period(since=MARCH.until, until=MARCH.since)), "until"),
])
def test_bad_questions_name_the_field(adb: AnalyticsDB, call, field: str) -> None:
    funnel_shop(adb.db)
    with adb.tables() as t, pytest.raises(Invalid) as err:
        call(t)
    assert err.value.field == field


def test_journeys_for_attribution_and_orders_for_clv(adb: AnalyticsDB) -> None:
    from omnijourney.analytics import journeys

    richer_shop(adb)
    with adb.tables() as t:
        touches = journeys.touches(t, MARCH)
        paths = journeys.paths_table(touches).set_index("path")
        result = journeys.attribution(t, MARCH, lookback_days=30)
        orders = journeys.orders(t, MARCH)
    # converted: u1 web (o1); u2 web > app > web (o2); u3 web > store; u4 web; u6 web > store; u1 again: email > web
    assert paths.loc["web > store", "conversions"] == 2 and paths.loc["web > app > web", "value"] == 40
    assert paths.loc["email > web", "conversions"] == 1
    # not (yet) converted: u5 viewed; u2's return and survey (store > email); u3's and u4's surveys
    assert paths["nulls"].sum() == 4 and paths.loc["web", "nulls"] == 1
    assert result["attributed"]["conversions"] == 6 and result["attributed"]["value"] == 330
    assert result["models"]["last_touch"]["channels"]["store"]["conversions"] == 2
    assert len(orders) == 6 and orders["amount"].sum() == 330
    assert set(orders["channel"]) == {"web", "store"}
