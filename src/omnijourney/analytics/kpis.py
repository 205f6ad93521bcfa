"""KPIs over time and per channel, each defined in docs/analytics.md.

Every KPI is a numerator over a denominator per bucket (day, week, month or the whole period) and channel. A KPI
whose data does not exist yet (no survey answers, no conversations, no loyalty events) is answered with
``status = "no data"`` and the reason, for every bucket; a bucket whose denominator is empty says so too. A value is
never a silent zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import ibis
import ibis.expr.types as ir
import pandas as pd

from omnijourney.analytics import common
from omnijourney.analytics.schemas import Period
from omnijourney.analytics.tables import ORDER_EVENT, Tables, json_number, json_text
from omnijourney.core.errors import Invalid

CART_EVENT = "Product Added"
SURVEY_EVENT = "Survey Answered"
LOYALTY_EVENTS = ("Points Earned", "Points Redeemed", "Points Expired", "Points Adjusted", "Tier Changed")
CONVERSATION_STARTED, MESSAGE_SENT, CONVERSATION_CLOSED = "Conversation Started", "Message Sent", "Conversation Closed"
Interval = Literal["day", "week", "month", "period"]
_TRUNC = {"day": "D", "week": "W", "month": "M"}


@dataclass(frozen=True)
class KPI:
    name: str
    unit: str  # ratio, money, count, seconds, points, touchpoints
    definition: str


KPIS: dict[str, KPI] = {k.name: k for k in [
    KPI("conversion_rate", "ratio", "people who completed an order / people with any touchpoint"),
    KPI("cart_abandonment", "ratio", "1 - completed orders / carts created: carts (cart_id, else a person's adds "
                                     "of one day) whose person did not complete an order within the lookback"),
    KPI("orders", "count", "orders completed (Order Completed, one per order id)"),
    KPI("revenue", "money", "sum of the orders' revenue (subtotal less discounts)"),
    KPI("aov", "money", "revenue / orders"),
    KPI("touchpoints_per_purchase", "touchpoints", "mean touchpoints in converting journeys: the buyer's events in "
                                                   "the lookback before the order, since their previous order"),
    KPI("cross_channel_share", "ratio", "people active in two or more channels / people active"),
    KPI("return_rate", "ratio", "orders with goods returned / orders completed (by the order's time)"),
    KPI("nps", "points", "% promoters (9-10) - % detractors (0-6) of NPS answers (Survey Answered, survey=nps)"),
    KPI("csat", "ratio", "answers of 4-5 / answers of CSAT surveys on 1-5 (Survey Answered, survey=csat)"),
    KPI("first_response_time", "seconds", "mean seconds from Conversation Started to its first Message Sent"),
    KPI("resolution_time", "seconds", "mean seconds from Conversation Started to Conversation Closed"),
    KPI("loyalty_participation", "ratio", "people with a loyalty event (points, tiers) / people active"),
]}


@dataclass
class _Ctx:
    tables: Tables
    events: ir.Table  # every event (history matters: previous orders, carts created earlier)
    period: ir.Table  # the events of the period
    interval: str
    by_channel: bool
    lookback_s: int
    since: int | None
    until: int | None

    def bucket(self, t: ir.Table) -> ir.Table:
        b = ibis.literal("period") if self.interval == "period" else t.ts.truncate(_TRUNC[self.interval]).cast(
            "string").substr(0, 10)
        c = t.channel if self.by_channel else ibis.literal("all")
        return t.mutate(bucket=b, kchannel=c)


def _exists(e: ir.Table, cond: ir.BooleanValue) -> bool:
    return bool(e.filter(cond).limit(1).count().execute())


def _ratio(num: ir.Table, den: ir.Table) -> ir.Table:
    """Join numerators and denominators (both: bucket, kchannel, value) on the denominator's rows."""
    n = num.rename(nb="bucket", nc="kchannel", numerator="value")
    j = den.left_join(n, [den.bucket == n.nb, den.kchannel == n.nc])
    return j.select("bucket", "kchannel", numerator=ibis.coalesce(j.numerator, 0.0).cast("float64"),
                    denominator=j.value.cast("float64"))


def _count(t: ir.Table, value: Callable[[ir.Table], ir.Value]) -> ir.Table:
    return t.group_by(["bucket", "kchannel"]).aggregate(value=value)


def _orders(c: _Ctx) -> ir.Table:
    return c.bucket(common.in_period(c.tables.orders(c.events), c.since, c.until))


def _active(c: _Ctx) -> ir.Table:
    return _count(c.bucket(c.period), lambda t: t.person.nunique())


def conversion_rate(c: _Ctx) -> ir.Table:
    o = _orders(c)
    return _ratio(_count(o, lambda t: t.person.nunique()), _active(c))


def cart_abandonment(c: _Ctx) -> ir.Table:
    adds = c.events.filter(c.events.name == CART_EVENT)
    # a cart is its cart_id (the platform's carts); a channel that sends none: the person's adds of one day
    cart = ibis.coalesce(json_text(adds.properties["cart_id"]),
                         "person:" + adds.person + ":" + adds.ts.truncate("D").cast("string"))
    adds = adds.mutate(cart=cart)
    w = ibis.window(group_by=adds.cart, order_by=[adds.t, adds.id])
    created = adds.mutate(_n=ibis.row_number().over(w)).filter(lambda t: t._n == 0)
    created = c.bucket(common.in_period(created, c.since, c.until))
    # completed: the cart's person completed an order after it was created, within the lookback (a till's sale
    # without a cart completes none)
    o = c.tables.orders(c.events)
    done = created.join(o, [created.person == o.person, o.t >= created.t, o.t <= created.t + c.lookback_s])
    completed = _count(done, lambda t: t.cart.nunique())
    carts = _count(created, lambda t: t.cart.nunique())
    r = _ratio(completed, carts)
    return r.mutate(numerator=r.denominator - r.numerator)  # abandoned carts


def orders(c: _Ctx) -> ir.Table:
    o = _count(_orders(c), lambda t: t.order_id.nunique())
    return o.select("bucket", "kchannel", numerator=o.value.cast("float64"), denominator=ibis.literal(1.0))


def revenue(c: _Ctx) -> ir.Table:
    o = _count(_orders(c), lambda t: t.revenue.sum())
    return o.select("bucket", "kchannel", numerator=o.value.cast("float64"), denominator=ibis.literal(1.0))


def aov(c: _Ctx) -> ir.Table:
    o = _orders(c)
    return _ratio(_count(o, lambda t: t.revenue.sum()), _count(o, lambda t: t.order_id.nunique()))


def touchpoints_per_purchase(c: _Ctx) -> ir.Table:
    o = c.tables.orders(c.events)
    w = ibis.window(group_by=o.person, order_by=[o.t, o.id])
    o = o.mutate(prev_t=o.t.lag().over(w))
    o = c.bucket(common.in_period(o, c.since, c.until))
    e = c.events.filter(c.events.name != ORDER_EVENT).select(ep=c.events.person, et=c.events.t)
    lower = ibis.greatest(o.t - c.lookback_s, ibis.coalesce(o.prev_t, o.t - c.lookback_s))
    j = o.left_join(e, [o.person == e.ep, e.et >= lower, e.et < o.t])
    per = j.group_by(["bucket", "kchannel", "order_id"]).aggregate(n=j.et.count())
    return _ratio(per.group_by(["bucket", "kchannel"]).aggregate(value=per.n.sum()),
                  per.group_by(["bucket", "kchannel"]).aggregate(value=per.order_id.count()))


def cross_channel_share(c: _Ctx) -> ir.Table:
    p = c.bucket(c.period)
    # the channels a person used in the bucket, whatever the channel breakdown
    b = p.group_by(["bucket", "person"]).aggregate(channels=p.channel.nunique())
    multi = b.filter(b.channels >= 2)
    multi = multi.select(mb=multi.bucket, mp=multi.person)
    who = p.select("bucket", "kchannel", "person").distinct()
    j = who.left_join(multi, [who.bucket == multi.mb, who.person == multi.mp])
    num = j.filter(j.mp.notnull()).group_by(["bucket", "kchannel"]).aggregate(value=lambda t: t.person.nunique())
    return _ratio(num, _count(who, lambda t: t.person.nunique()))


def return_rate(c: _Ctx) -> ir.Table:
    o = _orders(c)
    r = c.tables.returns(c.events)
    r = r.select(rid=r.order_id).distinct()
    j = o.left_join(r, o.order_id == r.rid)
    num = j.filter(j.rid.notnull()).group_by(["bucket", "kchannel"]).aggregate(value=lambda t: t.order_id.nunique())
    return _ratio(num, _count(o, lambda t: t.order_id.nunique()))


def _survey(c: _Ctx, kind: str) -> ir.Table:
    s = c.period.filter(c.period.name == SURVEY_EVENT)
    s = s.mutate(survey=json_text(s.properties["survey"]).lower(), score=json_number(s.properties["score"]))
    return c.bucket(s.filter((s.survey == kind) & s.score.notnull()))


def nps(c: _Ctx) -> ir.Table:
    s = _survey(c, "nps")
    s = s.mutate(v=ibis.cases((s.score >= 9, 100.0), (s.score <= 6, -100.0), else_=0.0))
    return _ratio(_count(s, lambda t: t.v.sum()), _count(s, lambda t: t.count()))


def csat(c: _Ctx) -> ir.Table:
    s = _survey(c, "csat")
    return _ratio(_count(s, lambda t: (t.score >= 4).ifelse(1, 0).sum()), _count(s, lambda t: t.count()))


def _conversations(c: _Ctx, end_event: str, first: bool) -> ir.Table:
    e = c.events.mutate(conv=json_text(c.events.properties["conversation_id"]))
    starts = e.filter((e.name == CONVERSATION_STARTED) & e.conv.notnull())
    starts = c.bucket(common.in_period(starts, c.since, c.until))
    ends = e.filter((e.name == end_event) & e.conv.notnull())
    ends = ends.group_by(ec=ends.conv).aggregate(et=ends.t.min() if first else ends.t.max())
    j = starts.join(ends, starts.conv == ends.ec).mutate(d=lambda t: (t.et - t.t).cast("float64"))
    return _ratio(_count(j, lambda t: t.d.sum()), _count(j, lambda t: t.count()))


def first_response_time(c: _Ctx) -> ir.Table:
    return _conversations(c, MESSAGE_SENT, True)


def resolution_time(c: _Ctx) -> ir.Table:
    return _conversations(c, CONVERSATION_CLOSED, False)


def loyalty_participation(c: _Ctx) -> ir.Table:
    p = c.bucket(c.period)
    loyal = p.filter(p.name.isin(LOYALTY_EVENTS))
    return _ratio(_count(loyal, lambda t: t.person.nunique()), _active(c))


_COMPUTE: dict[str, Callable[[_Ctx], ir.Table]] = {
    "conversion_rate": conversion_rate, "cart_abandonment": cart_abandonment, "orders": orders, "revenue": revenue,
    "aov": aov, "touchpoints_per_purchase": touchpoints_per_purchase, "cross_channel_share": cross_channel_share,
    "return_rate": return_rate, "nps": nps, "csat": csat, "first_response_time": first_response_time,
    "resolution_time": resolution_time, "loyalty_participation": loyalty_participation,
}


def _missing(c: _Ctx, name: str) -> str | None:
    """Why a KPI has no data at all yet (its events were never recorded), or None."""
    e = c.events
    if name in ("nps", "csat"):
        s = e.filter(e.name == SURVEY_EVENT)
        if not _exists(s, json_text(s.properties["survey"]).lower() == name):
            return f"no {name.upper()} survey answers yet (Survey Answered events with survey={name} and a score)"
    elif name in ("first_response_time", "resolution_time"):
        if not _exists(e, e.name == CONVERSATION_STARTED):
            return "no conversations yet (the contact center records Conversation Started / Message Sent / " \
                   "Conversation Closed)"
    elif name == "loyalty_participation":
        if not _exists(e, e.name.isin(LOYALTY_EVENTS)):
            return "no loyalty events yet (Points Earned, Points Redeemed, Tier Changed)"
    elif name in ("conversion_rate", "orders", "revenue", "aov", "return_rate", "touchpoints_per_purchase",
                  "cart_abandonment"):
        if not _exists(e, e.name == ORDER_EVENT):
            return "no orders yet (Order Completed)"
        if name == "return_rate" and not _exists(e, e.name == "Order Returned"):
            return "no returns recorded yet (Order Returned): a return rate of 0 would be a guess"
        if name == "cart_abandonment" and not _exists(e, e.name == CART_EVENT):
            return "no carts yet (Product Added)"
    return None


def kpis(tables: Tables, period: Period, *, names: list[str] | None = None, interval: Interval = "period",
         by_channel: bool = False, lookback_days: float = 30.0) -> pd.DataFrame:
    """The KPIs (all, or ``names``) per bucket and channel: ``kpi, bucket, channel, value, numerator, denominator,
    unit, status ("ok" or "no data"), reason``."""
    wanted = names or list(KPIS)
    for i, n in enumerate(wanted):
        if n not in KPIS:
            raise Invalid(f"unknown KPI {n!r}: one of {', '.join(KPIS)}", field=f"kpis[{i}]")
    if interval not in ("day", "week", "month", "period"):
        raise Invalid("interval is day, week, month or period", field="interval")
    if not 0 < lookback_days <= 365:
        raise Invalid("lookback_days is more than 0 and at most 365", field="lookback_days")
    since, until = common.check_period(period)
    events = tables.events()
    common.check_data(tables, events, since, until)
    c = _Ctx(tables, events, common.in_period(events, since, until), interval, by_channel, int(lookback_days * 86400),
             since, until)
    frames = []
    for name in wanted:
        kpi = KPIS[name]
        reason = _missing(c, name)
        if reason is not None:
            frames.append(pd.DataFrame([{"kpi": name, "bucket": None, "channel": None, "value": None,
                                         "numerator": None, "denominator": None, "unit": kpi.unit,
                                         "status": "no data", "reason": reason}]))
            continue
        df = _COMPUTE[name](c).execute().rename(columns={"kchannel": "channel"})
        df["kpi"], df["unit"] = name, kpi.unit
        value = df["numerator"] / df["denominator"].where(df["denominator"] > 0)
        if name == "cart_abandonment" or kpi.unit == "ratio":
            value = value.clip(upper=1.0)
        df["value"] = value.round(6)
        df["status"] = df["value"].notna().map({True: "ok", False: "no data"})
        df["reason"] = df["value"].isna().map({True: "nothing to divide by in this bucket", False: None})
        frames.append(df)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    out = out[["kpi", "bucket", "channel", "value", "numerator", "denominator", "unit", "status", "reason"]]
    order = {n: i for i, n in enumerate(wanted)}
    return (out.assign(_o=out.kpi.map(order)).sort_values(["_o", "bucket", "channel"], na_position="first")
            .drop(columns="_o").reset_index(drop=True))
