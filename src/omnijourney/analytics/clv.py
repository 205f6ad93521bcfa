"""Customer lifetime value: BG/NBD for purchase frequency and P(alive), Gamma-Gamma for spend.

- BG/NBD: Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An Alternative to the Pareto/NBD
  Model", Marketing Science 24(2). While alive, a customer buys at a Poisson rate lambda ~ Gamma(r, alpha); after
  each repeat purchase the customer drops out with probability p ~ Beta(a, b). Data per customer: x repeat
  purchases, the time t_x of the last one and the length T of observation, both from the first purchase.
- Gamma-Gamma: Fader, Hardie & Lee (2005), "RFM and CLV: Using Iso-Value Curves for Customer Base Analysis",
  Journal of Marketing Research 42(4), and Fader & Hardie, "The Gamma-Gamma Model of Monetary Value" (2013).
  A transaction's value is Gamma(p, nu) with nu ~ Gamma(q, gamma) across customers (``v`` below is that gamma),
  independent of the purchase process; fitted on customers with at least one repeat purchase, from x and the
  mean value m_x of their repeat purchases.

Both are fitted by maximum likelihood (scipy's L-BFGS-B on log-parameters, with analytic gradients; the
likelihoods written with gammaln/betaln and log1p/logaddexp so that large counts neither overflow nor lose
precision). Customers with the same (x, t_x, T) are fitted once with a weight, which is what makes 100,000
customers take well under a second.

Time: one unit is a week (default) or a day; purchases on the same calendar day are one purchase (their amounts
added), as in the papers' CDNOW data. :func:`summarise` turns orders into the per-customer summary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, special

from omnijourney.core.errors import Invalid

UNITS = {"weeks": 7.0, "days": 1.0}  # days per unit
DAYS_PER_YEAR = 365.2425


# -- the data ----------------------------------------------------------------------------------------------------


@dataclass
class Summary:
    """Per customer of the calibration period: x, t_x, T (in ``unit``), the mean value of repeat purchases, and
    (with a holdout period) the number of purchases in it."""

    customer_ids: np.ndarray
    frequency: np.ndarray
    recency: np.ndarray
    T: np.ndarray
    monetary: np.ndarray
    unit: str = "weeks"
    holdout: np.ndarray | None = None
    holdout_length: float | None = None
    segments: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frequency)


def _days(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values)
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.int64)
    return arr.astype("datetime64[D]").astype(np.int64)


def summarise(customer_ids: Sequence[Any] | np.ndarray, days: Sequence[Any] | np.ndarray,
              amounts: Sequence[float] | np.ndarray, calibration_end: Any, holdout_end: Any = None,
              unit: str = "weeks", segments: Sequence[Any] | np.ndarray | None = None) -> Summary:
    """The calibration summary of orders (one row per order, any order).

    ``days`` are calendar days: ``datetime64``/``date`` values or integer day numbers (then the ends are integers
    too). Orders after ``calibration_end`` (inclusive end) count only in the holdout, up to ``holdout_end``
    (inclusive); customers whose first order is after ``calibration_end`` are not in the summary (they are
    counted in ``info``). ``segments`` (one per order) gives each customer the segment of their first order.
    """
    if unit not in UNITS:
        raise Invalid("unit must be days or weeks", field="unit")
    ids = np.asarray(customer_ids)
    day = _days(days)
    amount = np.asarray(amounts, dtype=np.float64)
    cal = int(_days([calibration_end])[0])
    hold = None if holdout_end is None else int(_days([holdout_end])[0])
    if not (len(ids) == len(day) == len(amount)):
        raise Invalid("customer_ids, days and amounts must have the same length", field="orders")
    if len(ids) == 0:
        raise Invalid("no orders", field="orders")
    if hold is not None and hold <= cal:
        raise Invalid("the holdout end must be after the calibration end", field="holdout_end")
    uniq_ids, cust = np.unique(ids, return_inverse=True)
    cust = cust.reshape(-1)
    # one purchase per customer and day, amounts added
    key = cust.astype(np.int64) * (int(day.max()) - int(day.min()) + 1) + (day - day.min())
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    starts = np.flatnonzero(np.r_[True, key_sorted[1:] != key_sorted[:-1]])
    p_cust = cust[order][starts]
    p_day = day[order][starts]
    p_amount = np.add.reduceat(amount[order], starts)
    p_segment = None if segments is None else np.asarray(segments)[order][starts]
    n = len(uniq_ids)
    in_cal = p_day <= cal
    first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first, p_cust, p_day)
    known = first <= cal  # customers acquired in the calibration period
    last = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(last, p_cust[in_cal], p_day[in_cal])
    count = np.bincount(p_cust[in_cal], minlength=n)
    spend = np.bincount(p_cust[in_cal], weights=p_amount[in_cal], minlength=n)
    # purchases are sorted by day within a customer: the first of each customer is the first purchase
    is_first = np.r_[True, p_cust[1:] != p_cust[:-1]]
    first_amount = np.zeros(n)
    first_amount[p_cust[is_first]] = p_amount[is_first]
    scale = UNITS[unit]
    x = (count - 1)[known].astype(np.float64)
    repeat_spend = (spend - first_amount)[known]
    with np.errstate(invalid="ignore", divide="ignore"):
        monetary = np.where(x > 0, repeat_spend / np.maximum(x, 1), 0.0)
    summary = Summary(
        customer_ids=uniq_ids[known],
        frequency=x,
        recency=((last - first)[known] / scale).astype(np.float64),
        T=((cal - first)[known] / scale).astype(np.float64),
        monetary=monetary,
        unit=unit,
        info={"orders": len(ids), "purchase_days": len(p_day), "customers": int(known.sum()),
              "customers_after_calibration": int((~known).sum()),
              "first_day": int(day.min()), "last_day": int(day.max())},
    )
    if p_segment is not None:
        seg = np.empty(n, dtype=p_segment.dtype)
        seg[p_cust[is_first]] = p_segment[is_first]
        summary.segments = seg[known]
    if hold is not None:
        in_hold = (p_day > cal) & (p_day <= hold)
        summary.holdout = np.bincount(p_cust[in_hold], minlength=n)[known].astype(np.float64)
        summary.holdout_length = (hold - cal) / scale
    return summary


def _weighted_unique(*cols: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Distinct rows of the given columns and how many customers each stands for."""
    stacked = np.stack(cols, axis=1)
    uniq, counts = np.unique(stacked, axis=0, return_counts=True)
    return [uniq[:, i] for i in range(len(cols))], counts.astype(np.float64)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of a * b without BLAS: numpy's dot runs OpenBLAS threads, which spin for milliseconds per call on a
    busy machine (a 100,000-customer likelihood went from 14 ms to 60-120 ms at load 10)."""
    return float(np.multiply(a, b).sum())


def _check(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> None:
    if not (len(x) == len(t_x) == len(T)):
        raise Invalid("frequency, recency and T must have the same length", field="summary")
    if len(x) == 0:
        raise Invalid("no customers in the calibration period", field="summary")
    if (x < 0).any() or (t_x < 0).any() or (t_x > T + 1e-9).any() or ((x > 0) & (t_x <= 0)).any():
        raise Invalid("each customer needs 0 <= recency <= T, and recency > 0 when frequency > 0", field="summary")


# -- BG/NBD ------------------------------------------------------------------------------------------------------


class _BGData:
    """Distinct customers (x, t_x, T) with weights, and what the likelihood needs of them that no parameter
    changes: the distinct values of x (the gamma and beta functions are evaluated once per distinct x)."""

    def __init__(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, w: np.ndarray) -> None:
        self.x, self.t_x, self.T, self.w = x, t_x, T, w
        self.ux, self.ix = np.unique(x, return_inverse=True)
        self.ix = self.ix.reshape(-1)
        self.wx = np.bincount(self.ix, weights=w)  # customers per distinct x
        self.pos = x > 0
        self.upos = self.ux > 0


def _bgnbd_ll(params: np.ndarray, data: _BGData, grad: bool = True) -> tuple[float, np.ndarray] | float:
    """Log-likelihood (FHL 2005, eq. 6) and its gradient in (log r, log alpha, log a, log b).

    ll_i = lnG(r+x) - lnG(r) + r ln(alpha) + lnB(a, b+x) - lnB(a, b) - (r+x) ln(alpha+T)
           + [x > 0] softplus(d),  d = ln(a) - ln(b+x-1) + (r+x) ln((alpha+T)/(alpha+t_x))
    (the second term of eq. 6 divided by the first is exp(d), since B(a+1, b+x-1)/B(a, b+x) = a/(b+x-1)).
    """
    r, alpha, a, b = np.exp(params)
    x, t_x, T, w, ux = data.x, data.t_x, data.T, data.w, data.ux
    pos = data.pos
    log_at = np.log(alpha + T)
    log_atx = np.log(alpha + t_x)
    # terms of x alone, once per distinct x
    ubx1 = np.where(data.upos, b + ux - 1, 1.0)
    per_x = special.gammaln(r + ux) + special.betaln(a, b + ux)
    d = (np.log(a) - np.log(ubx1))[data.ix] + (r + x) * (log_at - log_atx)
    soft = np.where(pos, np.logaddexp(0.0, d), 0.0)
    n = float(data.wx.sum())
    total = (_dot(data.wx, per_x) + n * (r * np.log(alpha) - special.gammaln(r) - special.betaln(a, b))
             - _dot(w, (r + x) * log_at) + _dot(w, soft))
    if not grad:
        return total
    s = np.where(pos, special.expit(d), 0.0)  # weight of the "dropped out at t_x" branch
    ws = w * s
    dig_rx = special.digamma(r + ux)
    dig_abx = special.digamma(a + b + ux)
    dig_bx = special.digamma(b + ux)
    dig_r, dig_b, dig_ab = special.digamma([r, b, a + b])
    g_r = (_dot(data.wx, dig_rx) + n * (np.log(alpha) - dig_r) - _dot(w, log_at)
           + _dot(ws, log_at - log_atx))
    g_alpha = (n * r / alpha - _dot(w, (r + x) / (alpha + T))
               + _dot(ws, (r + x) * (1.0 / (alpha + T) - 1.0 / (alpha + t_x))))
    g_a = n * dig_ab - _dot(data.wx, dig_abx) + float(ws.sum()) / a
    ws_x = np.bincount(data.ix, weights=ws, minlength=len(ux))  # branch weight per distinct x
    g_b = (_dot(data.wx, dig_bx - dig_abx) + n * (dig_ab - dig_b) - _dot(ws_x, 1.0 / ubx1))
    return total, np.array([g_r * r, g_alpha * alpha, g_a * a, g_b * b])


@dataclass(frozen=True)
class BGNBD:
    """A fitted BG/NBD model; times in the unit it was fitted in."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    customers: int
    iterations: int = 0

    def params(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}

    def p_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(alive at T | x, t_x, T) (FHL 2005, eq. 13 of the technical note)."""
        x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
        pos = x > 0
        log_ratio = (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + t_x))
        d = np.log(self.a) - np.log(np.where(pos, self.b + x - 1, 1.0)) + log_ratio
        return np.where(pos, special.expit(-d), 1.0)

    def expected_purchases(self, t: float | np.ndarray, x: np.ndarray, t_x: np.ndarray,
                           T: np.ndarray) -> np.ndarray:
        """E[Y(t) | x, t_x, T]: expected purchases in the next ``t`` units (FHL 2005, eq. 10)."""
        x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
        t = np.asarray(t, dtype=np.float64)
        r, alpha, a, b = self.r, self.alpha, _off_one(self.a), self.b
        z = t / (alpha + T + t)
        log_pow = (r + x) * (np.log(alpha + T) - np.log(alpha + T + t))
        hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
        numer = (a + b + x - 1) / (a - 1) * -np.expm1(log_pow + np.log(hyp))
        return numer * self.p_alive(x, t_x, T)

    def expected_purchases_new(self, t: float | np.ndarray) -> np.ndarray:
        """E[X(t)]: expected repeat purchases of a new customer within ``t`` units of the first (eq. 9)."""
        t = np.asarray(t, dtype=np.float64)
        r, alpha, a, b = self.r, self.alpha, _off_one(self.a), self.b
        hyp = special.hyp2f1(r, b, a + b - 1, t / (alpha + t))
        return (a + b - 1) / (a - 1) * -np.expm1(r * (np.log(alpha) - np.log(alpha + t)) + np.log(hyp))


def _off_one(a: float) -> float:
    # eqs. 9-10 divide by a - 1; their limit at a = 1 is continuous, so a fit that lands on 1 moves off it a hair
    return a if abs(a - 1.0) > 1e-7 else 1.0 + math.copysign(1e-7, a - 1.0)


def _minimise(fun, x0: np.ndarray) -> optimize.OptimizeResult:
    res = optimize.minimize(fun, x0, jac=True, method="L-BFGS-B",
                            options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10, "maxcor": 20})
    if not np.all(np.isfinite(res.x)):
        raise Invalid("the fit did not converge (parameters ran to infinity): too few repeat purchases?",
                      field="orders")
    return res


def fit_bgnbd(frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> BGNBD:
    """Maximum-likelihood BG/NBD parameters for customers with x repeat purchases, the last at t_x, observed T."""
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (frequency, recency, T))
    _check(x, t_x, T)
    if not (x > 0).any():
        raise Invalid("no customer made a repeat purchase in the calibration period: the purchase model cannot "
                      "be fitted (a later calibration end, or more customers)", field="orders")
    (ux, ut, uT), w = _weighted_unique(x, t_x, T)
    # fitted on times scaled to about 10 units (alpha scales with them; the other parameters do not)
    scale = max(float(uT.max()), 1e-9) / 10.0
    scaled = _BGData(ux, ut / scale, uT / scale, w)
    n = float(w.sum())

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        ll, g = _bgnbd_ll(theta, scaled)
        return -ll / n, -g / n

    res = _minimise(nll, np.zeros(4))
    r, alpha_s, a, b = np.exp(res.x)
    alpha = alpha_s * scale
    ll = _bgnbd_ll(np.log([r, alpha, a, b]), _BGData(ux, ut, uT, w), grad=False)
    return BGNBD(float(r), float(alpha), float(a), float(b), float(ll), int(n), int(res.nit))


# -- Gamma-Gamma -------------------------------------------------------------------------------------------------


class _GGData:
    """Distinct (x, m_x) with weights; the parameter-free parts of the likelihood computed once."""

    def __init__(self, x: np.ndarray, m: np.ndarray, w: np.ndarray) -> None:
        self.x, self.m, self.w = x, m, w
        self.ux, self.ix = np.unique(x, return_inverse=True)
        self.ix = self.ix.reshape(-1)
        self.wx = np.bincount(self.ix, weights=w)
        self.mx = m * x
        self.log_m = np.log(m)
        self.w_log_m = _dot(w, self.log_m)
        self.w_x_log_mx = _dot(w * x, self.log_m + np.log(x))


def _gg_ll(params: np.ndarray, data: _GGData) -> tuple[float, np.ndarray]:
    """Log-likelihood of the mean spend m of x transactions (FHL 2005b, eq. 3) and its gradient in logs.

    ll = lnG(px+q) - lnG(px) - lnG(q) + q ln v + (px-1) ln m + px ln x - (px+q) ln(v + m x)
    """
    p, q, v = np.exp(params)
    x, w, ux = data.x, data.w, data.ux
    n = float(data.wx.sum())
    pux = p * ux
    log_vmx = np.log(v + data.mx)
    ll = (_dot(data.wx, special.gammaln(pux + q) - special.gammaln(pux))
          + n * (q * np.log(v) - special.gammaln(q))
          + p * data.w_x_log_mx - data.w_log_m - _dot(w, (p * x + q) * log_vmx))
    dig_q = special.digamma(pux + q)
    g_p = (_dot(data.wx * ux, dig_q - special.digamma(pux)) + data.w_x_log_mx
           - _dot(w * x, log_vmx))
    g_q = _dot(data.wx, dig_q) - n * special.digamma(q) + n * np.log(v) - _dot(w, log_vmx)
    g_v = n * q / v - _dot(w, (p * x + q) / (v + data.mx))
    return ll, np.array([g_p * p, g_q * q, g_v * v])


@dataclass(frozen=True)
class GammaGamma:
    """A fitted Gamma-Gamma spend model (``v`` is the paper's gamma)."""

    p: float
    q: float
    v: float
    log_likelihood: float
    customers: int
    iterations: int = 0

    def params(self) -> dict[str, float]:
        return {"p": self.p, "q": self.q, "v": self.v}

    def expected_spend(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """E[M | x, m_x]: the expected value of a customer's future transactions (FHL 2005b, eq. 5).

        A customer without repeat purchases gets the population mean p v / (q - 1) (for q > 1).
        """
        x = np.asarray(x, dtype=np.float64)
        m = np.asarray(m, dtype=np.float64)
        return self.p * (self.v + m * x) / (self.p * x + self.q - 1)


def fit_gamma_gamma(frequency: np.ndarray, monetary: np.ndarray) -> GammaGamma:
    """Maximum-likelihood Gamma-Gamma parameters from the customers with x > 0 and a mean spend m_x > 0."""
    x = np.asarray(frequency, dtype=np.float64)
    m = np.asarray(monetary, dtype=np.float64)
    use = (x > 0) & (m > 0)
    if use.sum() < 2:
        raise Invalid("the spend model needs customers with repeat purchases of a positive amount",
                      field="amount")
    (ux, um), w = _weighted_unique(x[use], m[use])
    scale = float(np.median(um))  # v scales with the currency; p and q do not
    scaled = _GGData(ux, um / scale, w)
    n = float(w.sum())

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        ll, g = _gg_ll(theta, scaled)
        return -ll / n, -g / n

    res = _minimise(nll, np.zeros(3))
    p, q, v_s = np.exp(res.x)
    v = v_s * scale
    ll, _ = _gg_ll(np.log([p, q, v]), _GGData(ux, um, w))
    return GammaGamma(float(p), float(q), float(v), float(ll), int(n), int(res.nit))


# -- predictions and the report ----------------------------------------------------------------------------------


def clv(bg: BGNBD, gg: GammaGamma, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, m: np.ndarray, *,
        horizon: float, unit: str = "weeks", annual_discount_rate: float = 0.1,
        step: float | None = None) -> np.ndarray:
    """Discounted value of each customer's purchases in the next ``horizon`` units.

    The horizon is cut into steps (a month by default); the purchases expected in each step (BG/NBD) times the
    expected spend (Gamma-Gamma) are discounted to today at the end of the step.
    """
    if unit not in UNITS:
        raise Invalid("unit must be days or weeks", field="unit")
    if not horizon > 0:
        raise Invalid("the horizon must be more than 0", field="horizon")
    if annual_discount_rate <= -1:
        raise Invalid("the discount rate must be more than -100%", field="discount_rate")
    per_year = DAYS_PER_YEAR / UNITS[unit]
    step = per_year / 12 if step is None else step
    x, t_x, T, m = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T, m))
    (ux, ut, uT), _ = _weighted_unique(x, t_x, T)
    stacked = np.stack([x, t_x, T], axis=1)
    _, back = np.unique(stacked, axis=0, return_inverse=True)
    back = back.reshape(-1)
    ends = np.minimum(np.arange(1, math.ceil(horizon / step - 1e-9) + 1) * step, horizon)
    cum = np.stack([bg.expected_purchases(t, ux, ut, uT) for t in ends])  # (steps, distinct customers)
    per_step = np.diff(np.vstack([np.zeros(len(ux)), cum]), axis=0)
    discount = (1 + annual_discount_rate) ** (-ends / per_year)
    dep = (discount[:, None] * per_step).sum(axis=0)  # discounted expected purchases
    return dep[back] * gg.expected_spend(x, m)


def holdout_check(bg: BGNBD, s: Summary, groups: int = 7) -> dict[str, Any]:
    """Predicted against actual purchases in the holdout, by calibration frequency (0, 1, ..., groups-1, more):
    FHL 2005's Figure 4 as a table."""
    if s.holdout is None or s.holdout_length is None:
        raise Invalid("no holdout period", field="holdout_end")
    predicted = bg.expected_purchases(s.holdout_length, s.frequency, s.recency, s.T)
    group = np.minimum(s.frequency, groups).astype(int)
    rows = []
    for g in range(groups + 1):
        sel = group == g
        if not sel.any():
            continue
        rows.append({"frequency": str(g) if g < groups else f"{groups}+", "customers": int(sel.sum()),
                     "actual_mean": round(float(s.holdout[sel].mean()), 4),
                     "predicted_mean": round(float(predicted[sel].mean()), 4)})
    return {
        "length": round(s.holdout_length, 4),
        "unit": s.unit,
        "actual": round(float(s.holdout.sum()), 2),
        "predicted": round(float(predicted.sum()), 2),
        "mean_absolute_error": round(float(np.abs(predicted - s.holdout).mean()), 4),
        "by_frequency": rows,
    }


@dataclass
class Fit:
    """Both models fitted on one summary."""

    summary: Summary
    bgnbd: BGNBD
    gamma_gamma: GammaGamma | None

    def predict(self, *, horizon: float, annual_discount_rate: float = 0.1) -> dict[str, np.ndarray]:
        """Per customer: expected purchases in the horizon, P(alive), expected spend per purchase, CLV."""
        s = self.summary
        out = {
            "customer_id": s.customer_ids,
            "expected_purchases": self.bgnbd.expected_purchases(horizon, s.frequency, s.recency, s.T),
            "p_alive": self.bgnbd.p_alive(s.frequency, s.recency, s.T),
        }
        if self.gamma_gamma is not None:
            out["expected_spend"] = self.gamma_gamma.expected_spend(s.frequency, s.monetary)
            out["clv"] = clv(self.bgnbd, self.gamma_gamma, s.frequency, s.recency, s.T, s.monetary,
                             horizon=horizon, unit=s.unit, annual_discount_rate=annual_discount_rate)
        return out

    def warnings(self) -> list[str]:
        """What makes the fit untrustworthy, in words (none: an empty list)."""
        out = []
        if any(not 1e-5 < v < 1e5 for v in self.bgnbd.params().values()):
            out.append("the purchase model's parameters ran to the edge (too few customers or repeat purchases): "
                       "its predictions are not to be trusted")
        gg = self.gamma_gamma
        if gg is None:
            out.append("too few customers with repeat purchases of a positive amount to fit the spend model")
        elif not (1e-5 < gg.p < 1e5 and 1e-5 < gg.q < 1e5 and 0 < gg.v < math.inf):
            # p and q are shapes (FHL's CDNOW: 6.25, 3.74); v is in money, whose scale depends on the currency
            out.append("the spend model's parameters ran to the edge (too few repeat customers, or spend that "
                       "hardly varies): its expected spend and CLV are not to be trusted")
        return out

    def report(self, *, horizon: float | None = None, annual_discount_rate: float = 0.1,
               digits: int = 6) -> dict[str, Any]:
        """The fit as a JSON-ready dict: parameters, log-likelihoods, the holdout check, CLV by segment."""
        s = self.summary
        bg = self.bgnbd
        out: dict[str, Any] = {
            "unit": s.unit,
            "customers": len(s),
            "repeat_customers": int((s.frequency > 0).sum()),
            "bgnbd": {k: round(v, digits) for k, v in bg.params().items()}
            | {"log_likelihood": round(bg.log_likelihood, 4)},
        }
        gg = self.gamma_gamma
        if gg is not None:
            out["gamma_gamma"] = {k: round(v, digits) for k, v in gg.params().items()} | {
                "log_likelihood": round(gg.log_likelihood, 4), "customers": gg.customers}
            rep = (s.frequency > 0) & (s.monetary > 0)
            if rep.sum() > 2 and np.std(s.monetary[rep]) > 0 and np.std(s.frequency[rep]) > 0:
                # the model assumes spend independent of frequency: show how far the data is from that
                out["gamma_gamma"]["frequency_spend_correlation"] = round(
                    float(np.corrcoef(s.frequency[rep], s.monetary[rep])[0, 1]), 4)
        if s.holdout is not None:
            out["holdout"] = holdout_check(bg, s)
        if horizon is not None:
            pred = self.predict(horizon=horizon, annual_discount_rate=annual_discount_rate)
            out["prediction"] = {"horizon": horizon, "annual_discount_rate": annual_discount_rate,
                                 "expected_purchases": round(float(pred["expected_purchases"].sum()), 2),
                                 "mean_p_alive": round(float(pred["p_alive"].mean()), 4)}
            if "clv" in pred:
                out["prediction"]["clv_total"] = round(float(pred["clv"].sum()), 2)
                out["prediction"]["clv_mean"] = round(float(pred["clv"].mean()), 4)
            if s.segments is not None:
                out["segments"] = by_segment(pred, s.segments)
        return out


def fit(summary: Summary) -> Fit:
    """BG/NBD on every customer, Gamma-Gamma on those with repeat purchases (None if there are too few)."""
    bg = fit_bgnbd(summary.frequency, summary.recency, summary.T)
    try:
        gg = fit_gamma_gamma(summary.frequency, summary.monetary)
    except Invalid:
        gg = None
    return Fit(summary, bg, gg)


def by_segment(pred: dict[str, np.ndarray], segments: np.ndarray) -> list[dict[str, Any]]:
    """Per segment: customers, expected purchases, mean P(alive), mean expected spend, CLV total and mean."""
    labels, idx = np.unique(segments.astype(str), return_inverse=True)
    idx = idx.reshape(-1)
    counts = np.bincount(idx, minlength=len(labels))
    rows = []
    for k, label in enumerate(labels):
        sel = idx == k
        row: dict[str, Any] = {"segment": str(label), "customers": int(counts[k]),
                               "expected_purchases": round(float(pred["expected_purchases"][sel].sum()), 2),
                               "mean_p_alive": round(float(pred["p_alive"][sel].mean()), 4)}
        if "clv" in pred:
            row["mean_expected_spend"] = round(float(pred["expected_spend"][sel].mean()), 4)
            row["clv_total"] = round(float(pred["clv"][sel].sum()), 2)
            row["clv_mean"] = round(float(pred["clv"][sel].mean()), 4)
        rows.append(row)
    return rows


# -- synthetic data (tests, benchmarks) --------------------------------------------------------------------------


def simulate(n: int, *, r: float, alpha: float, a: float, b: float, T: float | np.ndarray,
             p: float | None = None, q: float | None = None, v: float | None = None,
             holdout: float | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Customers drawn from the BG/NBD (and Gamma-Gamma) model: x, t_x, T, (m_x), (holdout purchases).

    Given N purchase opportunities in (0, T] at a Poisson rate, they fall uniformly; the customer survives a
    geometric number J of repeat purchases, so x = min(J, N) and the x-th of N uniform times is
    T * Beta(x, N - x + 1).
    """
    rng = np.random.default_rng(seed)
    T = np.broadcast_to(np.asarray(T, dtype=np.float64), (n,)).copy()
    lam = rng.gamma(r, 1.0 / alpha, n)
    drop = rng.beta(a, b, n)
    survive = rng.geometric(drop)  # the repeat purchase after which the customer drops out
    opportunities = rng.poisson(lam * T)
    x = np.minimum(survive, opportunities)
    t_x = np.where(x > 0, T * rng.beta(np.maximum(x, 1), np.maximum(opportunities - x + 1, 1)), 0.0)
    out = {"frequency": x.astype(np.float64), "recency": t_x, "T": T}
    if holdout is not None:
        alive = survive > opportunities  # still alive at T
        future = rng.poisson(lam * holdout)
        out["holdout"] = np.where(alive, np.minimum(future, survive - opportunities), 0).astype(np.float64)
    if p is not None and q is not None and v is not None:
        nu = rng.gamma(q, 1.0 / v, n)
        total = rng.gamma(np.maximum(p * x, 1e-12), 1.0 / nu)
        out["monetary"] = np.where(x > 0, total / np.maximum(x, 1), 0.0)
    return out
