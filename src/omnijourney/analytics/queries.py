"""What an analyst asks besides funnels and KPIs: the journey map, lifecycle, stickiness, paths, retention and
repeat purchases. Each function takes :class:`~omnijourney.analytics.tables.Tables` and returns a pandas DataFrame
from Ibis expressions that run the same on DuckDB and PostgreSQL (definitions in docs/analytics.md)."""

from __future__ import annotations

import itertools
from typing import Literal

import ibis
import ibis.expr.types as ir
import pandas as pd

from omnijourney.analytics import common
from omnijourney.analytics.schemas import Period
from omnijourney.analytics.tables import ORDER_EVENT, Tables
from omnijourney.core.errors import Invalid
from omnijourney.tracking.spec import ECOMMERCE_EVENTS

Interval = Literal["day", "week", "month"]
_TRUNC = {"day": "D", "week": "W", "month": "M"}
STAGES = ("before", "during", "after")

# the platform's own events (tracking.names.PLATFORM) by stage; the spec's events carry theirs (tracking.spec)
PLATFORM_STAGES: dict[str, str] = {
    "Cart Merged": "during", "Cart Handed Off": "during", "Order Placed": "during", "Order Paid": "during",
    **dict.fromkeys(("Order Allocated", "Order Picked", "Order Shipped", "Order Ready for Pickup", "Order Delivered",
                     "Order Collected", "Order Returned", "Return Requested", "Pickup Released", "Points Earned",
                     "Points Redeemed", "Points Expired", "Points Adjusted", "Tier Changed", "Survey Answered"),
                    "after"),
}
EVENT_STAGES: dict[str, str] = {**ECOMMERCE_EVENTS, **PLATFORM_STAGES}


def _checked(tables: Tables, period: Period) -> tuple[ir.Table, int | None, int | None]:
    since, until = common.check_period(period)
    events = tables.events()
    common.check_data(tables, events, since, until)
    return events, since, until


def _interval(interval: str, field: str = "interval") -> str:
    if interval not in _TRUNC:
        raise Invalid("interval is day, week or month", field=field)
    return _TRUNC[interval]


def _bucket(ts: ir.TimestampValue, interval: str) -> ir.TimestampValue:
    return ts.truncate(_TRUNC[interval])


def _first_orders(events: ir.Table) -> ir.Table:
    o = events.filter(events.name == ORDER_EVENT)
    return o.group_by(fp=o.person).aggregate(first_order_t=o.t.min())


def _stage(events: ir.Table) -> ir.Table:
    """Events with their journey stage: the event's own (the spec's, the platform's), else by time: before the
    person's first purchase, or after it (a chat, a call, a store visit, a page view)."""
    fo = _first_orders(events)
    j = events.left_join(fo, events.person == fo.fp)
    own = j.name.substitute(EVENT_STAGES, else_=ibis.null())
    by_time = ibis.ifelse(j.first_order_t.notnull() & (j.t > j.first_order_t), "after", "before")
    return j.drop("fp").mutate(stage=ibis.coalesce(own, by_time))


def journey_map(tables: Tables, period: Period, *, channel: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(stages, touchpoints) for the period, optionally for the people who used ``channel`` in it.

    ``stages``: per stage, the people and events, the channels involved, and the people who went on to the next
    stage (a later event of the next stage): ``conversion_to_next``. ``touchpoints``: per stage, event and channel,
    the events and people."""
    events, since, until = _checked(tables, period)
    e = common.in_period(_stage(events), since, until)
    if channel is not None:
        who = e.filter(e.channel == channel).select(wp=e.person).distinct()
        e = e.semi_join(who, e.person == who.wp)
    touch = (e.group_by(["stage", "name", "channel"])
             .aggregate(events=e.count(), people=e.person.nunique())
             .order_by(["stage", ibis.desc("events"), "name", "channel"]).execute())
    firsts = e.group_by(["person", "stage"]).aggregate(first_t=e.t.min(), last_t=e.t.max())
    per = e.group_by("stage").aggregate(people=e.person.nunique(), events=e.count()).execute()
    chans = e.group_by(["stage", "channel"]).aggregate(n=e.count()).execute()
    nexts = []
    for a, b in itertools.pairwise(STAGES):
        fa = firsts.filter(firsts.stage == a)
        fb = firsts.filter(firsts.stage == b).select(bp=firsts.person, b_last=firsts.last_t)
        went = fa.join(fb, [fa.person == fb.bp, fb.b_last > fa.first_t])
        nexts.append(went.aggregate(people=went.person.nunique()).mutate(stage=ibis.literal(a)))
    went_on = ibis.union(*nexts).execute().set_index("stage")["people"].to_dict()
    rows = []
    for stage in STAGES:
        hit = per[per.stage == stage]
        people = int(hit.people.iloc[0]) if len(hit) else 0
        c = chans[chans.stage == stage].sort_values(["n", "channel"], ascending=[False, True])
        nxt = int(went_on.get(stage, 0)) if stage != "after" else None
        rows.append({"stage": stage, "people": people, "events": int(hit.events.iloc[0]) if len(hit) else 0,
                     "channels": ", ".join(c.channel), "to_next_stage": nxt,
                     "conversion_to_next": (round(nxt / people, 6) if people and nxt is not None else None)})
    touch = touch.astype({"events": "int64", "people": "int64"})
    touch["stage"] = pd.Categorical(touch["stage"], STAGES, ordered=True)
    touch = touch.sort_values(["stage", "events", "name", "channel"], ascending=[True, False, True, True])
    touch["stage"] = touch["stage"].astype(str)
    return pd.DataFrame(rows), touch.reset_index(drop=True)


def lifecycle(tables: Tables, period: Period, *, interval: Interval = "week",
              channel: str | None = None) -> pd.DataFrame:
    """PostHog's lifecycle per interval: ``new`` (first activity ever), ``returning`` (active in the previous
    interval too), ``resurrecting`` (active before, not in the previous interval), ``dormant`` (active in the
    previous interval, not in this one; counted negative). With ``channel``: activity in that channel only."""
    _interval(interval)
    events, since, until = _checked(tables, period)
    e = events if channel is None else events.filter(events.channel == channel)
    a = e.select("person", b=_bucket(e.ts, interval)).distinct()
    w = ibis.window(group_by=a.person, order_by=a.b)
    step = ibis.interval(**{f"{interval}s": 1}) if interval != "week" else ibis.interval(days=7)
    a = a.mutate(prev=a.b.lag().over(w), nxt=a.b.lead().over(w))
    status = ibis.cases((a.prev.isnull(), "new"), (a.prev == a.b - step, "returning"), else_="resurrecting")
    active = a.select(bucket=a.b, status=status, person=a.person)
    dormant = a.filter(a.nxt.isnull() | (a.nxt != a.b + step)).select(bucket=a.b + step,
                                                                      status=ibis.literal("dormant"),
                                                                      person=a.person)
    u = ibis.union(active, dormant)
    if since is not None:
        u = u.filter(u.bucket >= ibis.timestamp(pd.Timestamp(since, unit="s", tz="UTC")).truncate(
            _TRUNC[interval]))
    if until is not None:
        u = u.filter(u.bucket < ibis.timestamp(pd.Timestamp(until, unit="s", tz="UTC")))
    df = u.group_by(["bucket", "status"]).aggregate(people=u.person.nunique()).execute()
    df["people"] = df["people"].astype("int64")
    df.loc[df.status == "dormant", "people"] *= -1
    df["bucket"] = pd.to_datetime(df["bucket"], utc=True).dt.strftime("%Y-%m-%d")
    order = {"new": 0, "returning": 1, "resurrecting": 2, "dormant": 3}
    return (df.assign(_o=df.status.map(order)).sort_values(["bucket", "_o"]).drop(columns="_o")
            .reset_index(drop=True))


def stickiness(tables: Tables, period: Period, *, interval: Interval = "day") -> pd.DataFrame:
    """Per channel: how many people were active on exactly n intervals (days, weeks) of the period."""
    _interval(interval)
    events, since, until = _checked(tables, period)
    e = common.in_period(events, since, until)
    a = e.select("person", "channel", b=_bucket(e.ts, interval)).distinct()
    per = a.group_by(["channel", "person"]).aggregate(active=a.b.nunique())
    df = per.group_by(["channel", "active"]).aggregate(people=per.person.count()).order_by(
        ["channel", "active"]).execute()
    return df.astype({"active": "int64", "people": "int64"}).rename(columns={"active": f"active_{interval}s"})


def paths(tables: Tables, period: Period, *, kind: Literal["channel", "event"] = "channel",
          start: str | None = None, end: str | None = None, max_steps: int = 5, min_people: int = 1) -> pd.DataFrame:
    """Transitions for a Sankey: ``level`` (1 = the first move), ``source``, ``target``, ``people``. Channel paths
    collapse repeats (web, web, store is web > store); event paths keep each event. ``start``: from the person's
    first such event on; ``end``: up to the first such event after that."""
    if kind not in ("channel", "event"):
        raise Invalid("kind is channel or event", field="kind")
    if not 1 <= max_steps <= 20:
        raise Invalid("max_steps is from 1 to 20", field="max_steps")
    events, since, until = _checked(tables, period)
    e = common.in_period(events, since, until)
    if start is not None:
        name = common.event_name(tables, events, start, "start")
        s = e.filter(e.name == name)
        s = s.group_by(sp=s.person).aggregate(st=s.t.min())
        e = e.join(s, [e.person == s.sp, e.t >= s.st]).drop("sp", "st")
    if end is not None:
        name = common.event_name(tables, events, end, "end")
        x = e.filter(e.name == name)
        x = x.group_by(xp=x.person).aggregate(xt=x.t.min())
        e = e.join(x, [e.person == x.xp, e.t <= x.xt]).drop("xp", "xt")
    value = e.channel if kind == "channel" else e.name
    e = e.mutate(v=value)
    w = ibis.window(group_by=e.person, order_by=[e.t, e.id])
    if kind == "channel":
        e = e.mutate(prev=e.v.lag().over(w))
        e = e.filter(e.prev.isnull() | (e.prev != e.v))
    w = ibis.window(group_by=e.person, order_by=[e.t, e.id])
    e = e.mutate(level=ibis.row_number().over(w) + 1, target=e.v.lead().over(w))
    moves = e.filter(e.target.notnull() & (e.level <= max_steps))
    df = (moves.group_by(["level", "v", "target"]).aggregate(people=moves.person.nunique())
          .order_by(["level", ibis.desc("people"), "v", "target"]).execute())
    df = df.rename(columns={"v": "source"}).astype({"level": "int64", "people": "int64"})
    return df[df.people >= min_people].reset_index(drop=True)


def retention(tables: Tables, period: Period, *, cohort: Literal["week", "month"] = "month", periods: int = 6,
              channel: str | None = None) -> pd.DataFrame:
    """Cohorts by first purchase (week or month; with ``channel``: people whose first order was in that channel):
    per cohort and period number k (0 = the cohort's own), the people who bought in period k and the rate."""
    if cohort not in ("week", "month"):
        raise Invalid("cohort is week or month", field="cohort")
    if not 1 <= periods <= 60:
        raise Invalid("periods is from 1 to 60", field="periods")
    events, since, until = _checked(tables, period)
    o = tables.orders(events)
    w = ibis.window(group_by=o.person, order_by=[o.t, o.id])
    o = o.mutate(first_ts=o.ts.first().over(w), first_channel=o.channel.first().over(w))
    if cohort == "week":
        cb = o.first_ts.truncate("W")
        k = ((o.ts.truncate("W").epoch_seconds() - cb.epoch_seconds()) / (7 * 86400)).round().cast("int64")
    else:
        cb = o.first_ts.truncate("M")
        k = (o.ts.year() * 12 + o.ts.month()) - (o.first_ts.year() * 12 + o.first_ts.month())
    o = o.mutate(cohort=cb, k=k)
    if channel is not None:
        o = o.filter(o.first_channel == channel)
    if since is not None:
        o = o.filter(o.first_ts.epoch_seconds() >= since)
    if until is not None:
        o = o.filter(o.first_ts.epoch_seconds() < until)
    sizes = o.filter(o.k == 0).group_by("cohort").aggregate(size=lambda t: t.person.nunique())
    back = o.filter((o.k >= 0) & (o.k < periods)).group_by(["cohort", "k"]).aggregate(
        people=lambda t: t.person.nunique())
    j = back.join(sizes, "cohort")
    df = j.select("cohort", "k", "people", "size").order_by(["cohort", "k"]).execute()
    df = df.astype({"k": "int64", "people": "int64", "size": "int64"})
    df["rate"] = (df["people"] / df["size"]).round(6)
    df["cohort"] = pd.to_datetime(df["cohort"], utc=True).dt.strftime("%Y-%m-%d")
    return df.rename(columns={"k": "period", "size": "cohort_size"})[
        ["cohort", "cohort_size", "period", "people", "rate"]]


def repeat_purchase(tables: Tables, period: Period) -> pd.DataFrame:
    """Of the people who bought in the period, the share who bought more than once in it; overall and per channel
    of their first order in the period."""
    events, since, until = _checked(tables, period)
    o = tables.orders(events)
    o = common.in_period(o, since, until)
    w = ibis.window(group_by=o.person, order_by=[o.t, o.id])
    o = o.mutate(first_channel=o.channel.first().over(w))
    per = o.group_by(["person", "first_channel"]).aggregate(orders=o.count())
    by = per.group_by(channel=per.first_channel).aggregate(
        buyers=per.count(), repeat_buyers=(per.orders >= 2).ifelse(1, 0).sum())
    total = per.aggregate(buyers=per.count(), repeat_buyers=(per.orders >= 2).ifelse(1, 0).sum()).mutate(
        channel=ibis.literal("all"))
    cols = {"channel": lambda t: t.channel.cast("string"), "buyers": "buyers", "repeat_buyers": "repeat_buyers"}
    df = ibis.union(total.select(**cols), by.select(**cols)).execute()
    df = df.fillna({"repeat_buyers": 0}).astype({"buyers": "int64", "repeat_buyers": "int64"})
    df["rate"] = (df["repeat_buyers"] / df["buyers"]).where(df["buyers"] > 0).round(6)
    df["_o"] = (df["channel"] != "all").astype(int)
    return df.sort_values(["_o", "channel"]).drop(columns="_o").reset_index(drop=True)


def event_names(tables: Tables, period: Period) -> pd.DataFrame:
    """The events tracked in the period, the most frequent first: ``name, events, people`` (what a funnel's steps
    may be chosen from)."""
    events, since, until = _checked(tables, period)
    e = common.in_period(events, since, until)
    df = (e.group_by("name").aggregate(events=e.count(), people=e.person.nunique())
          .order_by([ibis.desc("events"), "name"]).execute())
    return df.astype({"events": "int64", "people": "int64"}).reset_index(drop=True)
