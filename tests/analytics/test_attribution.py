"""Attribution models against published worked examples, an independent implementation, and their invariants."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnijourney.analytics.attribution import (
    SHAPLEY_MAX_CHANNELS,
    Journeys,
    attribute_all,
    first_touch,
    last_touch,
    linear,
    markov,
    position_based,
    shapley,
    shapley_by_subsets,
    time_decay,
)
from omnijourney.core.errors import Invalid

DATA = Path(__file__).parent / "data"


def credits(result, digits=6):
    return {ch: (round(c, digits), round(v, digits)) for ch, c, v in
            zip(result.channels, result.conversions, result.value, strict=True) if c or v}


# -- published worked examples -----------------------------------------------------------------------------------


def test_markov_bryl_example():
    # S. Bryl, "Marketing Multi-Channel Attribution model with R (part 1: Markov chains concept)", analyzecore.com,
    # 2016: paths C1>C2>C3 (converts), C1 (null), C2>C3 (null); P(conversion) = 1/3, removal effects C1 0.5,
    # C2 1, C3 1, so one conversion splits 0.2 / 0.4 / 0.4.
    j = Journeys.from_paths(["C1 > C2 > C3", "C1", "C2 > C3"], [1, 0, 0], [100, 0, 0], [0, 1, 1])
    m = markov(j)
    assert m.details["conversion_probability"] == pytest.approx(1 / 3)
    assert m.details["removal_effects"] == {"C1": 0.5, "C2": 1.0, "C3": 1.0}
    assert credits(m) == {"C1": (0.2, 20.0), "C2": (0.4, 40.0), "C3": (0.4, 40.0)}


def test_markov_puzyrov_example():
    # S. Puzyrov, "Markov Chain Attribution - Simple Explanation Of Removal Effect", 2019: google ads (2 conv),
    # mailing (1), google ads > mailing (1), google ads (1 null). By hand: P(conv) = 0.8*(0.5 + 0.25) + 0.2 = 0.8;
    # without google ads 0.2 (removal effect 0.75), without mailing 0.4 (0.5); 4 conversions split 2.4 / 1.6.
    j = Journeys.from_paths(["google ads", "mailing", "google ads > mailing", "google ads"], [2, 1, 1, 0],
                            [20, 10, 10, 0], [0, 0, 0, 1])
    m = markov(j)
    assert m.details["conversion_probability"] == pytest.approx(0.8)
    assert m.details["removal_effects"] == {"google ads": 0.75, "mailing": 0.5}
    assert credits(m) == {"google ads": (2.4, 24.0), "mailing": (1.6, 16.0)}
    # Shapley by hand: v({g}) = 2, v({m}) = 1, v({g, m}) = 4: g = (2 + 3) / 2 = 2.5, m = (1 + 2) / 2 = 1.5
    assert credits(shapley(j)) == {"google ads": (2.5, 25.0), "mailing": (1.5, 15.0)}
    assert credits(shapley_by_subsets(j)) == {"google ads": (2.5, 25.0), "mailing": (1.5, 15.0)}


def _synthetic() -> Journeys:
    with open(DATA / "paths_synthetic.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return Journeys.from_paths([r["path"] for r in rows], [float(r["conversions"]) for r in rows],
                               [float(r["value"]) for r in rows], [float(r["nulls"]) for r in rows])


# ChannelAttribution 2.2.5 (Python), markov_model(Data, "path", "total_conversions",
# var_value="total_conversion_value", var_null="total_null", order=k, nsim_start=5e6, max_step=200, seed=1) on
# tests/analytics/data/paths_synthetic.csv (196 paths drawn by us; 793 conversions, 6,538 nulls). It estimates by
# simulating 5 million paths, so its figures carry about 0.5 % of noise; ours are exact. (With its default
# max_step, the longest path in the data, its removal effects come out ~7 % lower: simulated paths are cut short.)
CHANNELATTRIBUTION = {
    1: {"display": (118.44, 5855.3), "email": (172.70, 8652.1), "search": (197.77, 9600.7),
        "social": (189.51, 9158.7), "store": (114.59, 5484.7)},
    2: {"display": (119.62, 5759.6), "email": (188.56, 9518.3), "search": (194.68, 9510.6),
        "social": (183.38, 8768.0), "store": (106.77, 5194.9)},
    3: {"display": (117.15, 5705.8), "email": (201.94, 10082.3), "search": (195.03, 9476.3),
        "social": (178.68, 8503.4), "store": (100.19, 4983.7)},
}
CHANNELATTRIBUTION_REMOVAL = {
    1: {"display": 0.3140, "email": 0.4579, "search": 0.5243, "social": 0.5025, "store": 0.3038},
    2: {"display": 0.3443, "email": 0.5428, "search": 0.5604, "social": 0.5279, "store": 0.3073},
    3: {"display": 0.3602, "email": 0.6209, "search": 0.5996, "social": 0.5494, "store": 0.3080},
}


@pytest.mark.parametrize("order", [1, 2, 3])
def test_markov_matches_channelattribution(order):
    m = markov(_synthetic(), order=order)
    got = credits(m)
    for channel, (conv, value) in CHANNELATTRIBUTION[order].items():
        assert got[channel][0] == pytest.approx(conv, rel=0.015), channel
        assert got[channel][1] == pytest.approx(value, rel=0.015), channel
        assert m.details["removal_effects"][channel] == pytest.approx(
            CHANNELATTRIBUTION_REMOVAL[order][channel], abs=0.006), channel
    assert m.conversions.sum() == pytest.approx(793)


# -- invariants ------------------------------------------------------------------------------------------------


def test_first_order_ignores_repeats_of_a_channel():
    # a self-loop only delays the next step: absorption probabilities, so removal effects, are unchanged
    plain = Journeys.from_paths(["a > b > c", "a", "b > c", "c > a"], [3, 0, 1, 2], [30, 0, 10, 20], [1, 4, 2, 1])
    looped = Journeys.from_paths(["a > b > b > b > c", "a > a", "b > c > c", "c > a"], [3, 0, 1, 2],
                                 [30, 0, 10, 20], [1, 4, 2, 1])
    assert credits(markov(plain)) == credits(markov(looped))


def test_order_as_long_as_the_paths_reproduces_them():
    # with states as long as the longest path the chain is the data itself: removing a channel loses exactly
    # the conversions of the paths that contain it
    j = Journeys.from_paths(["a > b", "b", "a > c > b", "c", "a"], [4, 2, 1, 1, 0], [4, 2, 1, 1, 0], [2, 5, 1, 6, 8])
    m = markov(j, order=3)
    total = 8
    assert m.details["removal_effects"] == pytest.approx({"a": 5 / total, "b": 7 / total, "c": 2 / total})
    assert m.details["conversion_probability"] == pytest.approx(8 / 30)


def test_aggregating_identical_paths_changes_nothing():
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 4, size=400)
    touches = rng.integers(0, 4, size=lengths.sum())
    conv = rng.integers(0, 2, size=400)
    j = Journeys.from_codes(list("wxyz"), lengths, touches, conv, conv * rng.uniform(10, 50, 400), 1 - conv)
    agg = j.aggregated()
    assert len(agg) < len(j)
    for order in (1, 2):
        np.testing.assert_allclose(markov(agg, order).conversions, markov(j, order).conversions)
        np.testing.assert_allclose(markov(agg, order).value, markov(j, order).value)


def test_rule_based_models_by_hand():
    j = Journeys.from_paths(["a > b > c > d", "e > f", "g"], [1, 1, 1], [100, 10, 1], [0, 0, 0],
                            ages=[[21, 14, 7, 0], [3, 0], [5]])
    assert credits(first_touch(j)) == {"a": (1, 100), "e": (1, 10), "g": (1, 1)}
    assert credits(last_touch(j)) == {"d": (1, 100), "f": (1, 10), "g": (1, 1)}
    assert credits(linear(j)) == {"a": (0.25, 25), "b": (0.25, 25), "c": (0.25, 25), "d": (0.25, 25),
                                  "e": (0.5, 5), "f": (0.5, 5), "g": (1, 1)}
    assert credits(position_based(j)) == {"a": (0.4, 40), "b": (0.1, 10), "c": (0.1, 10), "d": (0.4, 40),
                                          "e": (0.5, 5), "f": (0.5, 5), "g": (1, 1)}
    assert credits(position_based(j, first=0.3, last=0.6))["e"] == (pytest.approx(1 / 3), pytest.approx(10 / 3))
    # half-life 7 days: weights 1, 2, 4, 8 for touches 21, 14, 7, 0 days before the conversion
    td = credits(time_decay(j, half_life_days=7), digits=12)
    assert td["a"] == (pytest.approx(1 / 15), pytest.approx(100 / 15))
    assert td["d"] == (pytest.approx(8 / 15), pytest.approx(800 / 15))
    assert td["g"] == (1, 1)


def test_repeated_channel_gets_each_touch():
    j = Journeys.from_paths(["a > b > a"], [3], [30], [0])
    assert credits(linear(j)) == {"a": (2, 20), "b": (1, 10)}
    assert credits(shapley(j)) == {"a": (1.5, 15), "b": (1.5, 15)}  # Shapley looks at the set of channels


journeys_strategy = st.lists(
    st.tuples(st.lists(st.integers(0, 5), min_size=1, max_size=6), st.integers(0, 5), st.integers(0, 5),
              st.floats(0, 500)),
    min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(journeys_strategy)
def test_every_model_credits_exactly_the_totals(rows):
    paths = [[f"c{c}" for c in p] for p, *_ in rows]
    conv = [c for _, c, _, _ in rows]
    nulls = [n for _, _, n, _ in rows]
    value = [v if c else 0.0 for _, c, _, v in rows]
    ages = [list(range(len(p) - 1, -1, -1)) for p in paths]
    j = Journeys.from_paths(paths, conv, value, nulls, ages=ages)
    results = [first_touch(j), last_touch(j), linear(j), time_decay(j, 2.0), position_based(j), shapley(j),
               shapley_by_subsets(j), markov(j, 1), markov(j, 2)]
    for r in results:
        if r.model == "markov" and sum(c for c, n in zip(conv, nulls, strict=True) if c + n) == 0:
            continue
        assert r.conversions.sum() == pytest.approx(sum(conv), abs=1e-6), r.model
        assert r.value.sum() == pytest.approx(sum(value), rel=1e-9, abs=1e-6), r.model
        assert (r.conversions >= -1e-9).all(), r.model
    np.testing.assert_allclose(shapley(j).conversions, shapley_by_subsets(j).conversions, atol=1e-9)
    np.testing.assert_allclose(shapley(j).value, shapley_by_subsets(j).value, atol=1e-6)


def test_shapley_rate_characteristic_and_the_cap():
    # the conversion-rate game: v({a}) = 1/2, v({b}) = 0/2, v({a,b}) = 3/6; phi_a = (1/2 + 1/2)/2, phi_b = 0
    j = Journeys.from_paths(["a", "b", "a > b"], [1, 0, 2], [10, 0, 20], [1, 2, 0])
    rate = shapley_by_subsets(j, "rate")
    assert credits(rate) == {"a": (3.0, 30.0)}
    many = Journeys.from_paths([f"c{i} > c{i + 1}" for i in range(SHAPLEY_MAX_CHANNELS + 1)],
                               [1] * (SHAPLEY_MAX_CHANNELS + 1))
    with pytest.raises(Invalid, match="limit is 20 channels"):
        shapley_by_subsets(many)
    assert shapley(many).conversions.sum() == pytest.approx(SHAPLEY_MAX_CHANNELS + 1)  # closed form: any size


def test_lookback_drops_old_touches_and_reports_journeys_left_without_any():
    j = Journeys.from_paths(["a > b > c", "d > e", "f"], [1, 1, 0], [50, 20, 0], [0, 0, 1],
                            ages=[[40, 10, 0], [45, 31], [2]])
    kept, dropped = j.lookback(30)
    assert [kept.path(i) for i in range(len(kept))] == [("b", "c"), ("f",)]
    assert dropped.conversions.sum() == 1 and dropped.value.sum() == 20
    out = attribute_all(j, lookback_days=30)
    assert out["unattributed"]["conversions"] == 1
    assert out["attributed"] == {"journeys": 2, "conversions": 1.0, "value": 50.0, "nulls": 1.0}
    # every channel touched is listed, even with nothing credited
    assert out["models"]["first_touch"]["channels"] == {"b": {"conversions": 1.0, "value": 50.0},
                                                        "c": {"conversions": 0.0, "value": 0.0},
                                                        "f": {"conversions": 0.0, "value": 0.0}}
    with pytest.raises(Invalid):
        Journeys.from_paths(["a"], [1]).lookback(30)  # no touch times


def test_attribute_all_lists_every_model():
    out = attribute_all(_synthetic(), order=2)
    assert list(out["models"]) == ["first_touch", "last_touch", "linear", "time_decay", "position_based", "markov",
                                   "shapley"]
    assert "skipped" in out["models"]["time_decay"]  # no touch times in an aggregated file
    assert out["models"]["markov"]["order"] == 2
    for name in ("first_touch", "linear"):
        assert sum(v["conversions"] for v in out["models"][name]["channels"].values()) == pytest.approx(793)


def test_bad_parameters_are_refused():
    j = Journeys.from_paths(["a > b"], [1], [1], [0])
    with pytest.raises(Invalid):
        markov(j, order=0)
    with pytest.raises(Invalid):
        time_decay(j)
    with pytest.raises(Invalid):
        position_based(j, first=0.7, last=0.5)
    with pytest.raises(Invalid):
        Journeys.from_paths(["a"], [-1])


def test_journeys_from_touches_in_long_form():
    # rows as a query over the timeline returns them: any order, times as datetimes
    t = np.array(["2024-03-01T10:00", "2024-02-20T09:00", "2024-03-02T12:00", "2024-03-05T08:00",
                  "2024-02-01T00:00"], dtype="datetime64[ms]")
    j = Journeys.from_touches(["j1", "j1", "j2", "j1", "j2"], ["app", "web", "store", "email", "web"], t,
                              journeys=["j1", "j2", "j3"], conversions=[1, 0, 1], value=[80, 0, 5],
                              end=np.array(["2024-03-05T08:00", "2024-03-03T00:00", "2024-03-01T00:00"],
                                           dtype="datetime64[ms]"))
    assert [j.path(i) for i in range(3)] == [("web", "app", "email"), ("web", "store"), ()]
    np.testing.assert_allclose(j.ages[:3], [13 + 23 / 24, 3 + 22 / 24, 0])  # 2024 is a leap year
    assert list(j.nulls) == [0, 1, 0]
    kept, dropped = j.lookback(10)
    assert kept.path(0) == ("app", "email") and dropped.conversions.sum() == 1  # j3 had no touch at all
    with pytest.raises(Invalid):
        Journeys.from_touches(["j9"], ["web"], [1.0], journeys=["j1"], conversions=[1])
