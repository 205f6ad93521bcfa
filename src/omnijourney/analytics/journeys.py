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
from typing import Any

import ibis
import numpy as np
import pandas as pd

from omnijourney.analytics import common
from omnijourney.analytics.schemas import Period
from omnijourney.analytics.tables import ORDER_EVENT, Tables, json_number


def touches(tables: Tables, period: Period, *, conversion: str = ORDER_EVENT) -> pd.DataFrame:
    """One row per touch, in journey order: ``person, journey`` (the person's n-th), ``channel, t`` (epoch s),
    ``converted`` (the journey ends in a conversion), ``value`` (the conversion's revenue), ``end_t``."""
    since, until = common.check_period(period)
    events = tables.events()
    common.check_data(tables, events, since, until)
    name = common.event_name(tables, events, conversion, "conversion")
    e = common.in_period(events, since, until)
    e = e.mutate(conv=(e.name == name).ifelse(1, 0),
                 value=ibis.ifelse(e.name == name, ibis.coalesce(json_number(e.properties["revenue"]),
                                                                 json_number(e.properties["total"]), 0.0), 0.0))
    w = ibis.window(group_by=e.person, order_by=[e.t, e.id], rows=(None, 0))
    e = e.mutate(journey=e.conv.sum().over(w) - e.conv)  # a conversion belongs to the journey it ends
    wj = ibis.window(group_by=[e.person, e.journey], order_by=[e.t, e.id])
    e = e.mutate(prev=e.channel.lag().over(wj))
    per = e.group_by(["person", "journey"]).aggregate(converted=e.conv.max(), jvalue=e.value.sum(), end_t=e.t.max())
    runs = e.filter(e.prev.isnull() | (e.prev != e.channel))  # a run of events in one channel is one touch
    j = runs.join(per, ["person", "journey"])
    out = j.select("person", "journey", "channel", "t", "id", "converted", value=j.jvalue, end_t=j.end_t).order_by(
        ["person", "journey", "t", "id"])
    df = out.execute().astype({"journey": "int64", "converted": "int64", "t": "int64", "end_t": "int64"})
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
                conversion: str = ORDER_EVENT, order: int = 1) -> dict[str, Any]:
    """Every attribution model (``analytics.attribution.attribute_all``) on the platform's own journeys."""
    from omnijourney.analytics.attribution import attribute_all

    return attribute_all(to_journeys(touches(tables, period, conversion=conversion)), lookback_days=lookback_days,
                         order=order)


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
    from omnijourney.core.errors import Invalid

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


def clv(tables: Tables, period: Period, *, calibration_end: date, holdout_end: date | None = None,
        unit: str = "weeks", horizon: float | None = None) -> dict[str, Any]:
    """BG/NBD and Gamma-Gamma (``analytics.clv``) fitted on the platform's orders from every channel, segmented by
    the channel of each customer's first order; the report of ``clv.Fit.report``."""
    from omnijourney.analytics import clv as models

    fit = fit_orders(orders(tables, period), calibration_end=calibration_end, holdout_end=holdout_end, unit=unit)
    per_year = models.DAYS_PER_YEAR / models.UNITS[unit]
    return fit.report(horizon=horizon if horizon is not None else round(per_year, 4))
