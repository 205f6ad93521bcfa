"""BG/NBD and Gamma-Gamma: the published CDNOW estimates, parameter recovery, predictions against `lifetimes`."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from omnijourney.analytics import clv
from omnijourney.core.errors import Invalid

CDNOW_PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}  # FHL 2005a, section 4
CDNOW_PUBLISHED_GG = {"p": 6.25, "q": 3.74, "v": 15.44}  # FHL 2005b; Fader & Hardie (2013), "The Gamma-Gamma Model"


def _lifetimes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifetimes sets a pandas option that pandas 3 deprecates
        return pytest.importorskip("lifetimes", reason="lifetimes (test extra) ships the CDNOW sample")


def cdnow_orders() -> tuple[list[str], np.ndarray, list[float]]:
    """The CDNOW sample (2,357 customers, 6,919 purchases of 1997-01 to 1998-06) as the `lifetimes` package
    ships it, read from the installed package: nothing is fetched, and the data is not committed here."""
    lifetimes = _lifetimes()
    path = Path(lifetimes.__file__).parent / "datasets" / "CDNOW_sample.txt"
    ids, days, amounts = [], [], []
    for line in path.read_text().splitlines():
        _, customer, day, _, amount = line.split()
        ids.append(customer)
        days.append(f"{day[:4]}-{day[4:6]}-{day[6:]}")
        amounts.append(float(amount))
    return ids, np.array(days, dtype="datetime64[D]"), amounts


@pytest.fixture(scope="module")
def cdnow() -> clv.Fit:
    ids, days, amounts = cdnow_orders()
    # the papers' split: 39 weeks of calibration (1997-01-01 to 1997-09-30), 39 weeks of holdout
    summary = clv.summarise(ids, days, amounts, np.datetime64("1997-09-30"), np.datetime64("1998-06-30"))
    return clv.fit(summary)


def test_cdnow_reproduces_the_published_estimates(cdnow):
    s = cdnow.summary
    assert len(s) == 2357 and int((s.frequency > 0).sum()) == 946
    got = {k: round(v, 3) for k, v in cdnow.bgnbd.params().items()}
    assert got == CDNOW_PUBLISHED_BGNBD
    assert round(cdnow.bgnbd.log_likelihood, 1) == -9582.4
    assert {k: round(v, 2) for k, v in cdnow.gamma_gamma.params().items()} == CDNOW_PUBLISHED_GG
    assert cdnow.gamma_gamma.customers == 946


def test_cdnow_holdout_check(cdnow):
    report = cdnow.report()
    hold = report["holdout"]
    assert hold["length"] == 39.0
    groups = {row["frequency"]: row for row in hold["by_frequency"]}
    assert list(groups) == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert sum(row["customers"] for row in groups.values()) == 2357
    # FHL 2005a, Figure 4: the conditional expectations follow the actual holdout purchases in every group
    for row in groups.values():
        assert row["predicted_mean"] == pytest.approx(row["actual_mean"], rel=0.3, abs=0.1)
    assert hold["predicted"] == pytest.approx(hold["actual"], rel=0.15)


def test_predictions_match_lifetimes(cdnow):
    lifetimes = _lifetimes()
    import pandas as pd

    s = cdnow.summary
    bgf = lifetimes.BetaGeoFitter()
    bgf.params_ = pd.Series(cdnow.bgnbd.params())
    bgf.predict = bgf.conditional_expected_number_of_purchases_up_to_time  # as its fit() would set it
    ggf = lifetimes.GammaGammaFitter()
    ggf.params_ = pd.Series(cdnow.gamma_gamma.params())
    f, r, t, m = (pd.Series(v) for v in (s.frequency, s.recency, s.T, s.monetary))
    np.testing.assert_allclose(cdnow.bgnbd.expected_purchases(39, s.frequency, s.recency, s.T),
                               bgf.conditional_expected_number_of_purchases_up_to_time(39, f, r, t), rtol=1e-9)
    np.testing.assert_allclose(cdnow.bgnbd.p_alive(s.frequency, s.recency, s.T),
                               bgf.conditional_probability_alive(f, r, t), rtol=1e-9)
    np.testing.assert_allclose(cdnow.bgnbd.expected_purchases_new(np.array([10.0, 39.0, 78.0])),
                               bgf.expected_number_of_purchases_up_to_time(np.array([10.0, 39.0, 78.0])), rtol=1e-9)
    np.testing.assert_allclose(cdnow.gamma_gamma.expected_spend(s.frequency, s.monetary),
                               ggf.conditional_expected_average_profit(f, m), rtol=1e-9)
    # lifetimes: 12 monthly steps of 4.345 weeks, 1 % a month; ours: the same steps, the same rate a year
    ours = clv.clv(cdnow.bgnbd, cdnow.gamma_gamma, s.frequency, s.recency, s.T, s.monetary, horizon=12 * 4.345,
                   step=4.345, unit="weeks", annual_discount_rate=1.01 ** (clv.DAYS_PER_YEAR / 7 / 4.345) - 1)
    theirs = ggf.customer_lifetime_value(bgf, f, r, t, m, time=12, discount_rate=0.01, freq="W")
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)


# -- without the CDNOW data: synthetic customers drawn from the model ---------------------------------------------


TRUE = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


@pytest.fixture(scope="module")
def synthetic() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    T = rng.integers(27 * 7, 39 * 7 + 1, 60_000) / 7  # first purchases spread over 12 weeks, as CDNOW's cohort
    return clv.simulate(60_000, **TRUE, T=T, p=6.25, q=3.74, v=15.44, holdout=39, seed=5)


def test_parameters_are_recovered_from_data_drawn_from_the_model(synthetic):
    d = synthetic
    bg = clv.fit_bgnbd(d["frequency"], d["recency"], d["T"])
    for name, true in TRUE.items():
        assert bg.params()[name] == pytest.approx(true, rel=0.06), name
    gg = clv.fit_gamma_gamma(d["frequency"], d["monetary"])
    assert gg.p == pytest.approx(6.25, rel=0.06)
    assert gg.q == pytest.approx(3.74, rel=0.06)
    assert gg.v == pytest.approx(15.44, rel=0.08)
    # the fit is the maximum: the true parameters are less likely on this sample
    true_ll = clv._bgnbd_ll(np.log(list(TRUE.values())), clv._BGData(d["frequency"], d["recency"], d["T"],
                                                                     np.ones(len(d["T"]))), grad=False)
    assert bg.log_likelihood >= true_ll


def test_predictions_agree_with_what_the_model_simulates(synthetic):
    d = synthetic
    bg = clv.BGNBD(**TRUE, log_likelihood=0.0, customers=len(d["T"]))
    predicted = bg.expected_purchases(39, d["frequency"], d["recency"], d["T"])
    assert predicted.sum() == pytest.approx(d["holdout"].sum(), rel=0.03)
    for x in (0, 1, 3):
        sel = d["frequency"] == x
        assert predicted[sel].mean() == pytest.approx(d["holdout"][sel].mean(), rel=0.1), x
    # a customer with no repeat purchase is surely alive; one who bought often long ago, rarely
    p = bg.p_alive(np.array([0, 5, 5]), np.array([0, 38.0, 5.0]), np.array([39.0, 39.0, 39.0]))
    assert p[0] == 1 and p[1] > 0.85 and p[2] < 0.1


def test_gradients_are_exact():
    rng = np.random.default_rng(2)
    d = clv.simulate(500, **TRUE, T=30.0, p=6.0, q=4.0, v=15.0, seed=1)
    w = rng.integers(1, 4, 500).astype(float)
    data = clv._BGData(d["frequency"], d["recency"], d["T"], w)
    theta = np.log([0.5, 2.0, 1.2, 3.0])
    _, g = clv._bgnbd_ll(theta, data)
    np.testing.assert_allclose(g, approx_fprime(theta, lambda t: clv._bgnbd_ll(t, data, grad=False), 1e-6),
                               rtol=1e-4)
    rep = d["frequency"] > 0
    gdata = clv._GGData(d["frequency"][rep], d["monetary"][rep], w[rep])
    theta = np.log([4.0, 3.0, 10.0])
    _, g = clv._gg_ll(theta, gdata)
    np.testing.assert_allclose(g, approx_fprime(theta, lambda t: clv._gg_ll(t, gdata)[0], 1e-6), rtol=1e-4)


# -- the summary, CLV, segments ------------------------------------------------------------------------------------


def test_summary_by_hand():
    # ann: 3 purchase days (two orders on 01-08 count once, 30 + 10), bob: one day, cyd: first order after the end
    ids = ["ann", "ann", "ann", "ann", "bob", "cyd", "ann", "bob"]
    days = np.array(["2024-01-01", "2024-01-08", "2024-01-08", "2024-01-29", "2024-01-15", "2024-02-10",
                     "2024-02-05", "2024-02-12"], dtype="datetime64[D]")
    amounts = [50, 30, 10, 20, 15, 99, 5, 7]
    s = clv.summarise(ids, days, amounts, np.datetime64("2024-01-29"), np.datetime64("2024-02-26"),
                      segments=["web", "app", "app", "app", "store", "web", "web", "store"])
    assert list(s.customer_ids) == ["ann", "bob"]
    assert list(s.frequency) == [2, 0]
    assert list(s.recency) == [4, 0]  # weeks from the first purchase to the last
    assert list(s.T) == [4, 2]
    assert list(s.monetary) == [30, 0]  # mean of the repeat purchases (40 and 20), the first one left out
    assert list(s.holdout) == [1, 1] and s.holdout_length == 4
    assert list(s.segments) == ["web", "store"]  # the segment of the first order
    assert s.info["customers_after_calibration"] == 1
    days_unit = clv.summarise(ids, days, amounts, np.datetime64("2024-01-29"), unit="days")
    assert list(days_unit.recency) == [28, 0] and list(days_unit.T) == [28, 14]


def test_clv_discounting_and_segments(synthetic):
    d = synthetic
    bg = clv.BGNBD(**TRUE, log_likelihood=0.0, customers=0)
    gg = clv.GammaGamma(6.25, 3.74, 15.44, 0.0, 0)
    x, t_x, T, m = d["frequency"][:200], d["recency"][:200], d["T"][:200], d["monetary"][:200]
    flat = clv.clv(bg, gg, x, t_x, T, m, horizon=52, annual_discount_rate=0.0)
    np.testing.assert_allclose(flat, bg.expected_purchases(52, x, t_x, T) * gg.expected_spend(x, m), rtol=1e-9)
    discounted = clv.clv(bg, gg, x, t_x, T, m, horizon=52, annual_discount_rate=0.2)
    assert (discounted < flat).all() and (discounted > flat / 1.2).all()
    longer = clv.clv(bg, gg, x, t_x, T, m, horizon=104, annual_discount_rate=0.2)
    assert (longer > discounted).all()
    summary = clv.Summary(np.arange(200), x, t_x, T, m, segments=np.array(["a", "b"] * 100))
    report = clv.Fit(summary, bg, gg).report(horizon=52)
    seg = {row["segment"]: row for row in report["segments"]}
    assert seg["a"]["customers"] == seg["b"]["customers"] == 100
    assert seg["a"]["clv_total"] + seg["b"]["clv_total"] == pytest.approx(report["prediction"]["clv_total"], abs=0.02)


def test_bad_input_is_refused():
    with pytest.raises(Invalid):
        clv.summarise([], [], [], np.datetime64("2024-01-01"))
    with pytest.raises(Invalid):
        clv.summarise(["a"], np.array(["2024-01-01"], dtype="datetime64[D]"), [1.0], np.datetime64("2024-01-05"),
                      np.datetime64("2024-01-02"))
    with pytest.raises(Invalid):
        clv.fit_bgnbd(np.array([1.0]), np.array([5.0]), np.array([2.0]))  # recency after T
    with pytest.raises(Invalid):
        clv.fit_gamma_gamma(np.array([0.0, 0.0]), np.array([0.0, 0.0]))  # nobody bought twice
