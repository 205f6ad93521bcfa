"""The platform's own journeys and orders, extracted for the attribution and CLV models (``analytics.attribution``,
``analytics.clv``), which also take the same shapes from other systems' CSV files.

* :func:`touches`: journeys as channel paths. Each conversion ("Order Completed") ends a journey, which holds the
  person's touchpoints since their previous conversion, the conversion's own channel last; the touchpoints after a
  person's last conversion make a journey that ends in a null (it did not convert, so far). Consecutive events in
  the same channel are one touch (a web session is one visit, not twenty page views). Each touch has its age: the
  days between it and the journey's end (the conversion, or the person's last event).
* :func:`orders`: one row per order for BG/NBD and Gamma-Gamma: person, day, amount, channel.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

import ibis
import numpy as np
import pandas as pd

from omnijourney.analytics import common
from omnijourney.analytics.schemas import Period
from omnijourney.analytics.tables import ORDER_EVENT, Tables, json_number
from omnijourney.core.errors import Invalid

TOUCH_KINDS = ("channel", "campaign")


def touches(tables: Tables, period: Period, *, conversion: str = ORDER_EVENT,
            by: Literal["channel", "campaign"] = "channel") -> pd.DataFrame:
    """One row per touch, in journey order: ``person, journey`` (the person's n-th), ``channel, t`` (epoch s),
    ``converted`` (the journey ends in a conversion), ``value`` (the conversion's revenue), ``end_t``.

    ``by="campaign"``: ``channel`` holds a campaign (``Tables.with_campaign``), and a touch is a run of the
    journey's events that name one; events without a campaign are no touch, and a journey none of whose events
    names one is the single touch "(none)" at its end (direct, organic or untagged), so that every conversion is
    credited to something."""
    if by not in TOUCH_KINDS:
        raise Invalid("by is channel or campaign", field="by")
    since, until = common.check_period(period)
    events = tables.events()
    common.check_data(tables, events, since, until)
    name = common.event_name(tables, events, conversion, "conversion")
    e = common.in_period(events, since, until)
    if by == "campaign":
        e = tables.with_campaign(e)
    e = e.mutate(conv=(e.name == name).ifelse(1, 0),
                 value=ibis.ifelse(e.name == name, ibis.coalesce(json_number(e.properties["revenue"]),
                                                                 json_number(e.properties["total"]), 0.0), 0.0))
    w = ibis.window(group_by=e.person, order_by=[e.t, e.id], rows=(None, 0))
    e = e.mutate(journey=e.conv.sum().over(w) - e.conv)  # a conversion belongs to the journey it ends
    aggs = {"converted": e.conv.max(), "jvalue": e.value.sum(), "end_t": e.t.max()}
    if by == "campaign":
        aggs["tagged"] = e.campaign.count()
    per = e.group_by(["person", "journey"]).aggregate(**aggs)
    if by == "campaign":
        e = e.filter(e.campaign.notnull()).mutate(channel=e.campaign)
    wj = ibis.window(group_by=[e.person, e.journey], order_by=[e.t, e.id])
    e = e.mutate(prev=e.channel.lag().over(wj))
    runs = e.filter(e.prev.isnull() | (e.prev != e.channel))  # a run of events in one channel is one touch
    j = runs.join(per, ["person", "journey"])
    out = j.select("person", "journey", "channel", "t", "id", "converted", value=j.jvalue, end_t=j.end_t)
    if by == "campaign":
        untagged = per.filter(per.tagged == 0)
        out = ibis.union(out, untagged.select("person", "journey", channel=ibis.literal(common.NONE), t=untagged.end_t,
                                              id=ibis.literal(0, type="int64"), converted=untagged.converted,
                                              value=untagged.jvalue, end_t=untagged.end_t))
    df = out.order_by(["person", "journey", "t", "id"]).execute().astype(
        {"journey": "int64", "converted": "int64", "t": "int64", "end_t": "int64"})
    return df.drop(columns="id").reset_index(drop=True)


def to_journeys(df: pd.DataFrame) -> Any:
    """:class:`omnijourney.analytics.attribution.Journeys` from :func:`touches`' rows."""
    from omnijourney.analytics.attribution import Journeys

    if df.empty:
        return Journeys.from_codes([], [], [], [], [], [], [])
    keys = df[["person", "journey"]].to_numpy()
    starts = np.r_[True, (keys[1:] != keys[:-1]).any(axis=1)]
    idx = np.flatnonzero(starts)
    lengths = np.diff(np.r_[idx, len(df)])
    channels, codes = np.unique(df["channel"].to_numpy(dtype=str), return_inverse=True)
    converted = df["converted"].to_numpy()[idx].astype(np.float64)
    ages = (df["end_t"].to_numpy() - df["t"].to_numpy()) / 86400.0
    return Journeys.from_codes([str(c) for c in channels], lengths, codes.reshape(-1), converted,
                               df["value"].to_numpy()[idx].astype(np.float64), 1.0 - converted, ages)


def paths_table(df: pd.DataFrame) -> pd.DataFrame:
    """Journeys aggregated as the CSV that ``omni analytics attribution --paths`` reads: path (" > "), conversions,
    value, nulls."""
    if df.empty:
        return pd.DataFrame({"path": [], "conversions": [], "value": [], "nulls": []})
    g = df.groupby(["person", "journey"], sort=False)
    per = pd.DataFrame({"path": g["channel"].agg(" > ".join), "converted": g["converted"].first(),
                        "value": g["value"].first()})
    out = per.groupby("path").agg(conversions=("converted", "sum"), value=("value", "sum"),
                                  journeys=("converted", "size"))
    out["nulls"] = out["journeys"] - out["conversions"]
    return out.drop(columns="journeys").reset_index().sort_values(["conversions", "path"], ascending=[False, True])


def attribution(tables: Tables, period: Period, *, lookback_days: float | None = 30.0,
                conversion: str = ORDER_EVENT, order: int = 1, by: Literal["channel", "campaign"] = "channel",
                half_life_days: float = 7.0, position: tuple[float, float] = (0.4, 0.4)) -> dict[str, Any]:
    """Every attribution model (``analytics.attribution.attribute_all``) on the platform's own journeys, per
    channel or (``by="campaign"``) per campaign: each model's credit is then under ``campaigns``, not ``channels``
    (and "(none)" holds what touches without a campaign earned)."""
    from omnijourney.analytics.attribution import attribute_all

    if lookback_days is not None and not 0 < lookback_days <= 365:
        raise Invalid("lookback_days is more than 0 and at most 365", field="lookback_days")
    if not 1 <= order <= 4:
        raise Invalid("order (of the Markov chain) is from 1 to 4", field="order")
    result = attribute_all(to_journeys(touches(tables, period, conversion=conversion, by=by)),
                           lookback_days=lookback_days, order=order, half_life_days=half_life_days,
                           position=position)
    if by == "campaign":
        for model in result["models"].values():
            if "channels" in model:
                model["campaigns"] = model.pop("channels")
    return {"by": by, **result}


def orders(tables: Tables, period: Period) -> pd.DataFrame:
    """One row per order in the period: ``customer_id`` (the person), ``day`` (date), ``amount`` (revenue),
    ``channel``."""
    since, until = common.check_period(period)
    events = tables.events()
    common.check_data(tables, events, since, until)
    o = common.in_period(tables.orders(events), since, until)
    df = o.select(customer_id=o.person, t=o.t, amount=o.revenue, channel=o.channel).order_by(["t", "customer_id"]) \
        .execute()
    df["day"] = pd.to_datetime(df.pop("t"), unit="s", utc=True).dt.date
    return df[["customer_id", "day", "amount", "channel"]]


def fit_orders(df: pd.DataFrame, *, calibration_end: date | None = None, holdout_end: date | None = None,
               unit: str = "weeks") -> Any:
    """BG/NBD and Gamma-Gamma (``analytics.clv.Fit``) fitted on :func:`orders`' rows, segmented by the channel of
    each customer's first order. ``calibration_end`` defaults to the day of the last order (every order fits the
    models, none is held out). Raises ``Invalid`` when there are no orders or the models cannot be fitted."""
    from omnijourney.analytics import clv as models

    if df.empty:
        raise Invalid("no orders in the period", field="since")
    days = np.array(df["day"].to_numpy(), dtype="datetime64[D]")
    cal = days.max() if calibration_end is None else np.datetime64(calibration_end, "D")
    if not days.min() <= cal <= days.max():
        raise Invalid(f"calibration_end must fall within the orders ({days.min()} to {days.max()})",
                      field="calibration_end")
    hold = None if holdout_end is None else np.datetime64(holdout_end, "D")
    summary = models.summarise(df["customer_id"].to_numpy(), days, df["amount"].to_numpy(dtype=np.float64), cal,
                               hold, unit=unit, segments=df["channel"].to_numpy(dtype=str))
    return models.fit(summary)


def _horizon(unit: str, horizon: float | None, annual_discount_rate: float) -> float:
    """The CLV horizon in ``unit``s (a year by default), checked with the discount rate."""
    from omnijourney.analytics import clv as models

    if unit not in models.UNITS:
        raise Invalid("unit is days or weeks", field="unit")
    if horizon is not None and not 0 < horizon <= 100 * models.DAYS_PER_YEAR / models.UNITS[unit]:
        raise Invalid(f"horizon is more than 0 {unit} and at most a hundred years", field="horizon")
    if not -1 < annual_discount_rate <= 10:
        raise Invalid("annual_discount_rate is more than -1 and at most 10", field="annual_discount_rate")
    return horizon if horizon is not None else round(models.DAYS_PER_YEAR / models.UNITS[unit], 4)


def clv(tables: Tables, period: Period, *, calibration_end: date, holdout_end: date | None = None,
        unit: str = "weeks", horizon: float | None = None, annual_discount_rate: float = 0.1) -> dict[str, Any]:
    """BG/NBD and Gamma-Gamma (``analytics.clv``) fitted on the platform's orders from every channel, segmented by
    the channel of each customer's first order: the orders used, then the report of ``clv.Fit.report`` (parameters,
    log-likelihoods, the calibration/holdout check with ``holdout_end``, expected purchases and CLV over the
    horizon, per segment), and ``warnings`` when the fit is not to be trusted."""
    h = _horizon(unit, horizon, annual_discount_rate)
    df = orders(tables, period)
    fit = fit_orders(df, calibration_end=calibration_end, holdout_end=holdout_end, unit=unit)
    info = fit.summary.info
    out: dict[str, Any] = {"orders": info["orders"], "purchase_days": info["purchase_days"],
                           "first_order": df["day"].min().isoformat(), "last_order": df["day"].max().isoformat(),
                           "calibration_end": calibration_end.isoformat(),
                           "customers_first_seen_after_calibration": info["customers_after_calibration"]}
    if holdout_end is not None:
        out["holdout_end"] = holdout_end.isoformat()
    out |= fit.report(horizon=h, annual_discount_rate=annual_discount_rate)
    warnings = fit.warnings()
    if holdout_end is not None and holdout_end > df["day"].max():
        warnings.insert(0, f"the orders end on {df['day'].max().isoformat()}, before holdout_end "
                           f"{holdout_end.isoformat()}: the holdout's actual purchases may be undercounted")
    if warnings:
        out["warnings"] = warnings
    return out


def clv_customers(tables: Tables, period: Period, *, calibration_end: date, holdout_end: date | None = None,
                  unit: str = "weeks", horizon: float | None = None, annual_discount_rate: float = 0.1,
                  segment: str | None = None, limit: int = 1000) -> pd.DataFrame:
    """Per customer of the calibration period, the most valuable first: ``customer_id, segment`` (the channel of the
    first order), the calibration summary (``frequency`` = repeat purchases, ``recency``, ``T`` in ``unit``s,
    ``monetary`` = mean repeat spend), ``holdout_purchases`` (with ``holdout_end``), and the predictions over the
    horizon: ``expected_purchases, p_alive``, and with a spend model ``expected_spend, clv``."""
    h = _horizon(unit, horizon, annual_discount_rate)
    if not 1 <= limit <= 100_000:
        raise Invalid("limit is from 1 to 100000", field="limit")
    fit = fit_orders(orders(tables, period), calibration_end=calibration_end, holdout_end=holdout_end, unit=unit)
    s = fit.summary
    pred = fit.predict(horizon=h, annual_discount_rate=annual_discount_rate)
    df = pd.DataFrame({"customer_id": s.customer_ids.astype(str), "segment": s.segments.astype(str),
                       "frequency": s.frequency.astype(np.int64), "recency": s.recency, "T": s.T,
                       "monetary": s.monetary})
    if s.holdout is not None:
        df["holdout_purchases"] = s.holdout.astype(np.int64)
    for column in ("expected_purchases", "p_alive", "expected_spend", "clv"):
        if column in pred:
            df[column] = pred[column]
    if segment is not None:
        known = sorted(df["segment"].unique())
        if segment not in known:
            raise Invalid(f"no customer's first order was in segment {segment!r} (segments: {', '.join(known)})",
                          field="segment")
        df = df[df["segment"] == segment]
    first = "clv" if "clv" in df else "expected_purchases"
    df = df.sort_values([first, "customer_id"], ascending=[False, True]).head(limit)
    return df.round({c: 6 for c in ("recency", "T", "monetary", "expected_purchases", "p_alive", "expected_spend",
                                    "clv")}).reset_index(drop=True)
