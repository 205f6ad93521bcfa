"""Funnels on both backends, with answers known by construction (tests/analytics/shop.py)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from omnijourney.analytics import funnels
from omnijourney.analytics.schemas import FunnelQuery
from omnijourney.core.errors import Invalid
from tests.analytics.conftest import AnalyticsDB
from tests.analytics.shop import funnel_shop
from tests.factories import msg, send, source

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def q(*steps: Any, **kw: Any) -> FunnelQuery:
    return FunnelQuery(steps=[s if isinstance(s, dict) else {"event": s} for s in steps], **kw)


def counts(df: Any, breakdown: str = "all") -> list[int]:
    return df[df.breakdown == breakdown].sort_values("step")["people"].tolist()


VIEW, ADD, BUY = "Product Viewed", "Product Added", "Order Completed"


def test_three_of_five_convert_in_a_day_and_a_merged_person_counts_once(adb: AnalyticsDB) -> None:
    funnel_shop(adb.db)
    with adb.tables() as t:
        day = funnels.funnel(t, q(VIEW, ADD, BUY, window=1, window_unit="day"))
        week = funnels.funnel(t, q(VIEW, ADD, BUY, window=7, window_unit="day"))
        hour = funnels.funnel(t, q(VIEW, ADD, BUY, window=1, window_unit="hour"))
    assert counts(day) == [6, 5, 4]  # u1, u2, u3 and the merged u6 (u4 bought after two days)
    assert counts(week) == [6, 5, 5]
    assert counts(hour) == [6, 5, 3]  # the window is inclusive: u3's add at 60 min counts; u3 bought at 3 h
    row = day[day.step == 2].iloc[0]
    assert row.conversion == pytest.approx(4 / 6, abs=1e-6)
    assert row.dropped == 1


def test_breakdowns_first_touch_last_touch_step_and_channel_mix(adb: AnalyticsDB) -> None:
    funnel_shop(adb.db)
    with adb.tables() as t:
        first = funnels.funnel(t, q(VIEW, ADD, BUY, window=1, breakdown="channel"))
        last = funnels.funnel(t, q(VIEW, ADD, BUY, window=1, breakdown="channel", attribution="last_touch"))
        step1 = funnels.funnel(t, q(VIEW, ADD, BUY, window=1, breakdown="channel", attribution="step",
                                    attribution_step=1))
        mix = funnels.funnel(t, q(VIEW, ADD, BUY, window=1, breakdown="channel_mix"))
        sku = funnels.funnel(t, q(VIEW, ADD, BUY, window=1, breakdown="property:sku"))
    assert counts(first, "web") == [6, 5, 4]
    assert counts(last, "web") == [4, 3, 2] and counts(last, "store") == [2, 2, 2]  # u3 and u6 ended in the store
    assert counts(step1, "app") == [1, 1, 1] and counts(step1, "store") == [1, 1, 1]
    assert counts(mix, "web only") == [3, 2, 1]  # u1 converted; u4 (late) and u5 did not
    assert counts(mix, "web > app > web") == [1, 1, 1]
    assert counts(mix, "web > store") == [2, 2, 2]  # u3 bought in the store, u6 added and bought there
    assert counts(sku, "TEE") == [4, 3, 2] and counts(sku, "BAG") == [1, 1, 1]


def test_strict_unordered_optional_and_previous_step_reference(adb: AnalyticsDB) -> None:
    funnel_shop(adb.db)
    with adb.tables() as t:
        strict = funnels.funnel(t, q(VIEW, BUY, window=1, order="strict"))
        ordered = funnels.funnel(t, q(VIEW, BUY, window=1))
        unordered = funnels.funnel(t, q(BUY, VIEW, window=1, order="unordered"))
        optional = funnels.funnel(t, q(VIEW, {"event": ADD, "channels": ["app"], "optional": True}, BUY, window=1))
        previous = funnels.funnel(t, q(VIEW, ADD, BUY, window=1, reference="previous"))
    assert counts(strict) == [6, 0]  # an add always comes between the view and the order
    assert counts(ordered) == [6, 4]
    assert counts(unordered) == [6, 4]  # everyone did one of them; four did both within a day
    assert counts(optional) == [6, 1, 4]  # only u2 added in the app; skipping it still converts
    assert previous[previous.step == 2].iloc[0].conversion == pytest.approx(4 / 5, abs=1e-6)


def test_property_filters_and_channels_on_steps(adb: AnalyticsDB) -> None:
    funnel_shop(adb.db)
    with adb.tables() as t:
        tee = funnels.funnel(t, q({"event": VIEW, "filters": [{"key": "sku", "value": "TEE"}]}, BUY, window=7))
        big = funnels.funnel(t, q(VIEW, {"event": BUY, "filters": [{"key": "total", "op": "gte", "value": 60}]},
                                  window=7))
        store = funnels.funnel(t, q(VIEW, {"event": BUY, "channels": ["store"]}, window=1))
    assert counts(tee) == [4, 3]  # u1, u2, u4 (within a week); u5 never bought
    assert counts(big) == [6, 3]  # o3 (60), o4 (80), o6 (100)
    assert counts(store) == [6, 2]


def test_exclusions_drop_the_person_from_the_whole_funnel(adb: AnalyticsDB) -> None:
    funnel_shop(adb.db)
    with adb.tables() as t:
        df = funnels.funnel(t, q(VIEW, BUY, window=1, exclusions=[{"event": ADD, "filters": [
            {"key": "channel", "value": "app"}]}]))
    assert counts(df) == [5, 3]  # u2 added in the app between the view and the order


def test_time_to_convert_and_the_people_who_dropped_off(adb: AnalyticsDB) -> None:
    funnel_shop(adb.db)
    with adb.tables() as t:
        hist = funnels.time_to_convert(t, q(VIEW, ADD, BUY, window=1), bins=3)
        dropped = funnels.people(t, q(VIEW, ADD, BUY, window=1), step=1)
        at_start = funnels.people(t, q(VIEW, ADD, BUY, window=1), step=0)
    # conversions took 10 min (u1), 60 min (u2), 180 min (u3), 30 min (u6): bins of (180-10)/3 min
    assert hist["people"].tolist() == [3, 0, 1]
    assert hist["from_seconds"].iloc[0] == 600
    assert len(dropped) == 1  # u4 added but bought too late
    assert len(at_start) == 1  # u5 only viewed


@pytest.mark.parametrize(("body", "field"), [
    ({"steps": [{"event": VIEW}]}, "steps"),
    ({"steps": [{"event": VIEW}, {"event": "Prodcut Added"}]}, "steps[1].event"),
    ({"steps": [{"event": VIEW}, {"event": BUY}], "window": 0}, "window"),
    ({"steps": [{"event": VIEW}, {"event": BUY}], "since": "2026-03-02T00:00:00Z",
      "until": "2026-03-01T00:00:00Z"}, "until"),
    ({"steps": [{"event": VIEW}, {"event": BUY}], "since": "2025-01-01T00:00:00Z",
      "until": "2025-02-01T00:00:00Z"}, "since"),
    ({"steps": [{"event": VIEW, "optional": True}, {"event": BUY}]}, "steps[0].optional"),
    ({"steps": [{"event": VIEW}, {"event": BUY}], "breakdown": "colour"}, "breakdown"),
    ({"steps": [{"event": VIEW}, {"event": BUY}], "attribution": "step"}, "attribution_step"),
])
def test_bad_questions_name_the_field(adb: AnalyticsDB, body: dict[str, Any], field: str) -> None:
    funnel_shop(adb.db)
    with adb.tables() as t, pytest.raises(Invalid) as err:
        funnels.funnel(t, FunnelQuery(**body))
    assert err.value.field == field


def test_ordered_funnel_agrees_with_walking_each_persons_events(adb: AnalyticsDB) -> None:
    """Random journeys with ties in time and steps exactly a window apart: every channel's counts are those of the
    plain rule (from each entry, the next step's first event strictly later, until the window closes; the entry that
    got furthest, the earliest among equals, gives the channel)."""
    rng = random.Random(15)
    sources = {c: source(adb.db, c) for c in ("web", "app")}
    journeys: dict[str, list[tuple[int, str, str]]] = {}
    for n in range(40):
        # entries at distinct hours (between two entries at the same second the event id decides); adds and orders
        # on the hour, often at the hour of an entry or of each other (ties, which do not count: a step comes
        # strictly later), exactly a window (a day) after an entry (which counts), or within 40 hours of the first
        hours = rng.sample(range(72), rng.randint(0, 3))
        base = min(hours, default=rng.randrange(72))
        later: list[int] = []
        for _ in range(rng.randint(1, 6)):
            later.append(rng.choice([*hours, *later, *(h + 24 for h in hours), *[base + rng.randrange(40)] * 2]))
        touches = [(h * 60, VIEW, rng.choice(["web", "app"])) for h in hours]
        touches += [(h * 60, rng.choice([ADD, BUY]), rng.choice(["web", "app"])) for h in later]
        journeys[f"r{n}"] = touches
        send(adb.db, *[msg(sources[ch], user_id=f"r{n}", event=ev, minutes=m) for m, ev, ch in touches])
    expected: dict[str, list[int]] = {}
    for touches in journeys.values():
        best, channel = 0, None
        for start, ev, ch in sorted(touches):
            if ev != VIEW:
                continue
            last, reached = start, 1
            for m, ev2, _ in sorted(touches):
                if m > start + 24 * 60:  # the window (a day) is inclusive
                    break
                if reached < 3 and ev2 == (VIEW, ADD, BUY)[reached] and m > last:
                    last, reached = m, reached + 1
            if reached > best:
                best, channel = reached, ch
        if best:
            counts_ = expected.setdefault(channel, [0, 0, 0])
            for k in range(best):
                counts_[k] += 1
    with adb.tables() as t:
        df = funnels.funnel(t, q(VIEW, ADD, BUY, window=1, breakdown="channel"))
    assert {c: counts(df, c) for c in set(df.breakdown)} == expected
    assert sum(v[0] for v in expected.values()) > 10 and sum(v[2] for v in expected.values()) > 2  # a real funnel
