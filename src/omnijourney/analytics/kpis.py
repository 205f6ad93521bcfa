"""KPIs over time and per channel, each defined in docs/analytics.md.

Every KPI is a numerator over a denominator per bucket (day, week, month or the whole period) and channel. A KPI
whose data does not exist yet (no survey answers, no conversations, no loyalty events) is answered with
``status = "no data"`` and the reason, for every bucket; a bucket whose denominator is empty says so too. A value is
never a silent zero.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import ibis
import ibis.expr.operations as ops
import ibis.expr.schema as sch
import ibis.expr.types as ir
import pandas as pd
from ibis.formats.pandas import PandasData

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


View = tuple[str, bool]  # (interval, by_channel)
_KEYS = ["slot", "bucket", "kchannel"]
_ORDER_KPIS = ("conversion_rate", "orders", "revenue", "aov", "return_rate", "touchpoints_per_purchase",
               "cart_abandonment")
# what the existence of each KPI's data is read from: a count of these events over all the data
_FLAGS = ("events", "orders", "returns", "carts", "conversations", "loyalty", "nps", "csat")


class _Query:
    """The relations of one question, each built once: every KPI reads the same events, orders and returns, which
    the statement defines once each as a CTE (``kpi_events``, ...), and every KPI goes out in that one statement.

    Each view (interval, by channel or not) gets its own copy of the rows it buckets, marked ``slot``; the
    aggregates group by ``slot, bucket, kchannel``, so the period's totals and the trends come from the same pass.
    """

    def __init__(self, tables: Tables, views: list[View], wanted: set[str], since: int | None, until: int | None,
                 lookback_s: int) -> None:
        self.tables, self.views, self.wanted = tables, views, wanted
        self.since, self.until, self.lookback_s = since, until, lookback_s
        self.ctes: dict[str, str] = {}
        self.events = self.named("kpi_events", tables.events())
        self.period = common.in_period(self.events, since, until)

    def named(self, name: str, relation: ir.Table) -> ir.Table:
        """A stand-in for ``relation``, which the query defines once as the CTE ``name``: Ibis would write the
        relation's SQL out again wherever the query reads it (12 copies of the events for all the KPIs), which
        costs time to compile and to plan."""
        op = relation.op()
        self.ctes[name] = op.query if isinstance(op, ops.SQLQueryResult) else self.tables.con.compile(relation)
        return ibis.table(relation.schema(), name=name)

    @cached_property
    def orders(self) -> ir.Table:
        return self.named("kpi_orders", self.tables.orders(self.events))

    @cached_property
    def returns(self) -> ir.Table:
        return self.named("kpi_returns", self.tables.returns(self.events))

    def bucketed(self, t: ir.Table) -> ir.Table:
        """``t`` once per view, with ``slot`` (the view's number), ``bucket`` (the day, week or month it starts,
        or "period") and ``kchannel`` (its channel, or "all")."""
        parts = []
        for i, (interval, by_channel) in enumerate(self.views):
            b = ibis.literal("period") if interval == "period" else t.ts.truncate(_TRUNC[interval]).cast(
                "string").substr(0, 10)
            c = t.channel.cast("string") if by_channel else ibis.literal("all")  # (PostgreSQL: varchar(32))
            parts.append(t.mutate(slot=ibis.literal(i, "int16"), bucket=b, kchannel=c))
        return parts[0] if len(parts) == 1 else ibis.union(*parts, distinct=False)

    @cached_property
    def order_totals(self) -> ir.Table:
        """Per bucket: orders, revenue, buyers and (for the return rate) orders with goods returned."""
        o = common.in_period(self.orders, self.since, self.until)
        if "return_rate" in self.wanted:
            r = self.returns
            r = r.select(rid=r.order_id).distinct()
            j = o.left_join(r, o.order_id == r.rid)
            o = j.select("order_id", "person", "channel", "ts", "revenue", returned=j.rid.notnull())
        b = self.bucketed(o)
        aggs: dict[str, ir.Value] = {"orders": b.order_id.nunique(), "revenue": b.revenue.sum(),
                                     "buyers": b.person.nunique()}
        if "return_rate" in self.wanted:
            aggs["returned"] = b.order_id.nunique(where=b.returned)
        return b.group_by(_KEYS).aggregate(**aggs)

    @cached_property
    def event_totals(self) -> ir.Table:
        """Per bucket: people active, people active in two or more channels (in the bucket, whatever the
        channel breakdown), people with a loyalty event."""
        p = self.bucketed(self.period.filter(self.period.person.notnull()))
        # one row per person and bucket first: counting rows then costs less than counting distinct people
        p = p.group_by([*_KEYS, "person"]).aggregate(first=p.channel.min(), last=p.channel.max(),
                                                     loyal=p.name.isin(LOYALTY_EVENTS).any())
        cross = "cross_channel_share" in self.wanted
        if cross:
            # two or more channels: the first and the last of a person's channels in the bucket differ
            w = ibis.window(group_by=[p.slot, p.bucket, p.person])
            p = p.mutate(multi=p.first.min().over(w) != p.last.max().over(w))
        aggs: dict[str, ir.Value] = {"active": p.count()}
        if cross:
            aggs["multi"] = p.count(where=p.multi)
        if "loyalty_participation" in self.wanted:
            aggs["loyal"] = p.count(where=p.loyal)
        return p.group_by(_KEYS).aggregate(**aggs)

    @cached_property
    def survey_totals(self) -> ir.Table:
        s = self.period.filter(self.period.name == SURVEY_EVENT)
        s = s.mutate(survey=json_text(s.properties["survey"]).lower(), score=json_number(s.properties["score"]))
        s = self.bucketed(s.filter(s.survey.isin(["nps", "csat"]) & s.score.notnull()))
        nps_, csat_ = s.survey == "nps", s.survey == "csat"
        vote = ibis.cases((s.score >= 9, 100.0), (s.score <= 6, -100.0), else_=0.0)
        return s.group_by(_KEYS).aggregate(nps_n=s.count(where=nps_), nps_sum=vote.sum(where=nps_),
                                           csat_n=s.count(where=csat_), csat_ok=s.count(where=csat_ & (s.score >= 4)))

    @cached_property
    def conversation_totals(self) -> ir.Table:
        """Per bucket of the conversations started: seconds to the first message and to the close, and how many
        had each."""
        e = self.events.mutate(conv=json_text(self.events.properties["conversation_id"]))
        starts = e.filter((e.name == CONVERSATION_STARTED) & e.conv.notnull())
        starts = common.in_period(starts, self.since, self.until)
        ends = e.filter(e.name.isin([MESSAGE_SENT, CONVERSATION_CLOSED]) & e.conv.notnull())
        ends = ends.group_by(ec=ends.conv).aggregate(first=ends.t.min(where=ends.name == MESSAGE_SENT),
                                                     closed=ends.t.max(where=ends.name == CONVERSATION_CLOSED))
        j = starts.left_join(ends, starts.conv == ends.ec)
        j = self.bucketed(j.select("ts", "channel", responded=(j.first - j.t).cast("float64"),
                                   resolved=(j.closed - j.t).cast("float64")))
        return j.group_by(_KEYS).aggregate(response_n=j.responded.count(), response_s=j.responded.sum(),
                                           resolution_n=j.resolved.count(), resolution_s=j.resolved.sum())

    def rows(self, t: ir.Table, numerator: ir.Value | float, denominator: ir.Value | float) -> ir.Table:
        return t.select(*_KEYS, numerator=ibis.literal(numerator).cast("float64") if isinstance(numerator, float)
                        else numerator.cast("float64"),
                        denominator=ibis.literal(denominator).cast("float64") if isinstance(denominator, float)
                        else denominator.cast("float64"))

    def conversion_rate(self) -> ir.Table:
        a = self.event_totals
        o = self.order_totals
        o = o.select(ov=o.slot, ob=o.bucket, oc=o.kchannel, buyers=o.buyers)
        j = a.left_join(o, [a.slot == o.ov, a.bucket == o.ob, a.kchannel == o.oc])
        return self.rows(j, ibis.coalesce(j.buyers, 0), j.active)

    def cart_abandonment(self) -> ir.Table:
        e = self.events
        adds = e.filter(e.name == CART_EVENT)
        # a cart is its cart_id (the platform's carts); a channel that sends none: the person's adds of one day
        cart = ibis.coalesce(json_text(adds.properties["cart_id"]),
                             "person:" + adds.person + ":" + adds.ts.truncate("D").cast("string"))
        adds = adds.mutate(cart=cart)
        w = ibis.window(group_by=adds.cart, order_by=[adds.t, adds.id])
        created = adds.mutate(_n=ibis.row_number().over(w)).filter(lambda t: t._n == 0)
        created = common.in_period(created, self.since, self.until)
        # completed: the cart's person completed an order after it was created, within the lookback (a till's
        # sale without a cart completes none)
        o = self.orders
        j = created.left_join(o, [created.person == o.person, o.t >= created.t,
                                  o.t <= created.t + self.lookback_s])
        j = self.bucketed(j.select(created.cart, created.ts, created.channel, done=o.order_id.notnull()))
        c = j.group_by(_KEYS).aggregate(carts=j.cart.nunique(), completed=j.cart.nunique(where=j.done))
        return self.rows(c, c.carts - c.completed, c.carts)  # abandoned carts

    def touchpoints_per_purchase(self) -> ir.Table:
        o = self.orders
        w = ibis.window(group_by=o.person, order_by=[o.t, o.id])
        o = o.mutate(prev_t=o.t.lag().over(w))
        o = common.in_period(o, self.since, self.until)
        e = self.events.filter(self.events.name != ORDER_EVENT).select(ep=self.events.person, et=self.events.t)
        lower = ibis.greatest(o.t - self.lookback_s, ibis.coalesce(o.prev_t, o.t - self.lookback_s))
        j = o.left_join(e, [o.person == e.ep, e.et >= lower, e.et < o.t])
        per = j.group_by(["order_id", "ts", "channel"]).aggregate(n=j.et.count())  # one row per order
        per = self.bucketed(per)
        t = per.group_by(_KEYS).aggregate(touchpoints=per.n.sum(), orders=per.order_id.count())
        return self.rows(t, t.touchpoints, t.orders)

    def kpi(self, name: str) -> ir.Table:
        """``slot, bucket, kchannel, numerator, denominator`` of KPI ``name``: one row per bucket it has data in."""
        if name in ("orders", "revenue", "aov", "return_rate"):
            o = self.order_totals
            num = o["returned" if name == "return_rate" else "orders" if name == "orders" else "revenue"]
            return self.rows(o, num, o.orders if name in ("aov", "return_rate") else 1.0)
        if name in ("cross_channel_share", "loyalty_participation"):
            a = self.event_totals
            return self.rows(a, a["multi" if name == "cross_channel_share" else "loyal"], a.active)
        if name == "nps":
            s = self.survey_totals.filter(lambda t: t.nps_n > 0)
            return self.rows(s, s.nps_sum, s.nps_n)
        if name == "csat":
            s = self.survey_totals.filter(lambda t: t.csat_n > 0)
            return self.rows(s, s.csat_ok, s.csat_n)
        if name in ("first_response_time", "resolution_time"):
            k = "response" if name == "first_response_time" else "resolution"
            c = self.conversation_totals.filter(lambda t: t[f"{k}_n"] > 0)
            return self.rows(c, c[f"{k}_s"], c[f"{k}_n"])
        compute: Callable[[], ir.Table] = getattr(self, name)
        return compute()

    def flags(self) -> ir.Table:
        """One row per fact the answers depend on (``kpi`` "?events", "?orders", ...): how many events show it.
        ``?events`` counts the period's events; the others count all the data (a KPI's data exists or not)."""
        e = self.events
        in_period = ibis.literal(True)
        if self.since is not None:
            in_period &= e.t >= self.since
        if self.until is not None:
            in_period &= e.t < self.until
        # the survey's kind is read from a survey's properties only: reading JSON is what costs here
        survey = ibis.ifelse(e.name == SURVEY_EVENT, json_text(e.properties["survey"]).lower(), ibis.null("string"))
        conds = {"events": in_period, "orders": e.name == ORDER_EVENT, "returns": e.name == "Order Returned",
                 "carts": e.name == CART_EVENT, "conversations": e.name == CONVERSATION_STARTED,
                 "loyalty": e.name.isin(LOYALTY_EVENTS), "nps": survey == "nps", "csat": survey == "csat"}
        f = e.aggregate(**{k: e.count(where=conds[k]) for k in _FLAGS})
        return ibis.union(*(f.select(kpi=ibis.literal(f"?{k}"), slot=ibis.literal(-1, "int16"),
                                     bucket=ibis.literal(None, "string"), kchannel=ibis.literal(None, "string"),
                                     numerator=f[k].cast("float64"), denominator=ibis.literal(1.0))
                            for k in _FLAGS), distinct=False)

    def compile(self) -> tuple[str, sch.Schema]:
        """The SQL of every wanted KPI's rows (``kpi`` its name) and the flags, as one table, and its schema."""
        parts = [self.flags()]
        for name in sorted(self.wanted):
            k = self.kpi(name)
            parts.append(k.select(kpi=ibis.literal(name), slot=k.slot, bucket=k.bucket, kchannel=k.kchannel,
                                  numerator=k.numerator, denominator=k.denominator))
        body = ibis.union(*parts, distinct=False)
        # DuckDB: the events read where they are used (a copy of every event, JSON and all, costs more than reading
        # them again), the orders once (their JSON read and their first event found once); PostgreSQL keeps a CTE
        # read twice, which suits its events (the event's canonical name is a long CASE)
        hints = {"kpi_events": "NOT MATERIALIZED ", "kpi_orders": "MATERIALIZED "} \
            if self.tables.backend == "duckdb" else {}
        ctes = ", ".join(f"{name} AS {hints.get(name, '')}({sql})" for name, sql in self.ctes.items())
        return f"WITH {ctes} SELECT * FROM ({self.tables.con.compile(body)}) AS kpis", body.schema()


def _missing(name: str, has: dict[str, bool]) -> str | None:
    """Why a KPI has no data at all yet (its events were never recorded), or None."""
    if name in ("nps", "csat"):
        if not has[name]:
            return f"no {name.upper()} survey answers yet (Survey Answered events with survey={name} and a score)"
    elif name in ("first_response_time", "resolution_time"):
        if not has["conversations"]:
            return "no conversations yet (the contact center records Conversation Started / Message Sent / " \
                   "Conversation Closed)"
    elif name == "loyalty_participation":
        if not has["loyalty"]:
            return "no loyalty events yet (Points Earned, Points Redeemed, Tier Changed)"
    elif name in _ORDER_KPIS:
        if not has["orders"]:
            return "no orders yet (Order Completed)"
        if name == "return_rate" and not has["returns"]:
            return "no returns recorded yet (Order Returned): a return rate of 0 would be a guess"
        if name == "cart_abandonment" and not has["carts"]:
            return "no carts yet (Product Added)"
    return None


# The SQL of a question, kept: building and compiling the Ibis expressions costs far more than running them on a
# store of demo size, and a dashboard asks the same question again and again. The SQL depends only on the question
# (the tables' shape is the code's), never on the data.
_SQL_CACHE: OrderedDict[tuple[object, ...], tuple[str, sch.Schema]] = OrderedDict()
_SQL_CACHE_SIZE = 64
_SQL_LOCK = threading.Lock()


def _compiled(tables: Tables, key: tuple[object, ...],
              build: Callable[[], tuple[str, sch.Schema]]) -> tuple[str, sch.Schema]:
    key = (tables.backend, *key)
    with _SQL_LOCK:
        hit = _SQL_CACHE.get(key)
        if hit is not None:
            _SQL_CACHE.move_to_end(key)
            return hit
    compiled = build()
    with _SQL_LOCK:
        _SQL_CACHE[key] = compiled
        while len(_SQL_CACHE) > _SQL_CACHE_SIZE:
            _SQL_CACHE.popitem(last=False)
    return compiled


def _fetch(tables: Tables, sql: str, schema: sch.Schema) -> pd.DataFrame:
    """Run ``sql`` on the backend and type its rows by ``schema``, as Ibis's own ``execute`` does."""
    con = tables.con
    if tables.backend == "spark":
        df = con.raw_sql(sql).toPandas()
    elif tables.backend == "duckdb":  # the cursor is the store's connection itself: not closed
        df = pd.DataFrame.from_records(con.raw_sql(sql).fetchall(), columns=schema.names, coerce_float=True)
    else:
        with closing(con.raw_sql(sql)) as cur:
            df = pd.DataFrame.from_records(cur.fetchall(), columns=schema.names, coerce_float=True)
    return PandasData.convert_table(df, schema)


def kpi_views(tables: Tables, period: Period, views: Sequence[View], *, names: list[str] | None = None,
              lookback_days: float = 30.0) -> list[pd.DataFrame]:
    """The KPIs once per view ``(interval, by_channel)``: for each, the table :func:`kpis` gives, all from one
    query (a dashboard's totals of the period and its trends per week cost one pass, not two)."""
    for i, n in enumerate(names or []):
        if n not in KPIS:
            raise Invalid(f"unknown KPI {n!r}: one of {', '.join(KPIS)}", field=f"kpis[{i}]")
    wanted = list(dict.fromkeys(names or KPIS))  # a KPI asked for twice is answered once
    for interval, _ in views:
        if interval not in ("day", "week", "month", "period"):
            raise Invalid("interval is day, week, month or period", field="interval")
    if not 0 < lookback_days <= 365:
        raise Invalid("lookback_days is more than 0 and at most 365", field="lookback_days")
    since, until = common.check_period(period)
    unique = list(dict.fromkeys((interval, bool(by_channel)) for interval, by_channel in views))
    lookback_s = int(lookback_days * 86400)
    key = (tuple(sorted(set(wanted))), tuple(unique), lookback_s, since, until)
    sql, schema = _compiled(tables, key, lambda: _Query(tables, unique, set(wanted), since, until,
                                                        lookback_s).compile())
    got = _fetch(tables, sql, schema)
    flags = got[got.slot == -1]
    has = {k[1:]: bool(v > 0) for k, v in zip(flags.kpi, flags.numerator, strict=True)}
    if not has["events"]:
        raise common.no_events(since, until)
    return [_view_frame(got[got.slot == unique.index((interval, bool(by_channel)))], wanted, has)
            for interval, by_channel in views]


def _view_frame(got: pd.DataFrame, wanted: list[str], has: dict[str, bool]) -> pd.DataFrame:
    """One view's table, as :func:`kpis` documents it, from its rows of the query."""
    reasons = {name: _missing(name, has) for name in wanted}
    df = got[got.kpi.isin([n for n in wanted if reasons[n] is None])].drop(columns="slot")
    df = df.rename(columns={"kchannel": "channel"})
    unit = df["kpi"].map({n: KPIS[n].unit for n in wanted}).astype("str")
    value = df["numerator"] / df["denominator"].where(df["denominator"] > 0)
    value = value.where(unit != "ratio", value.clip(upper=1.0))  # a ratio is at most 1
    df = df.assign(value=value.round(6), unit=unit)
    df["status"] = df["value"].notna().map({True: "ok", False: "no data"})
    df["reason"] = df["value"].isna().map({True: "nothing to divide by in this bucket", False: None})
    missing = [{"kpi": n, "bucket": None, "channel": None, "value": None, "numerator": None, "denominator": None,
                "unit": KPIS[n].unit, "status": "no data", "reason": r} for n, r in reasons.items() if r is not None]
    out = pd.concat([df, pd.DataFrame(missing)], ignore_index=True) if missing else df
    out = out[["kpi", "bucket", "channel", "value", "numerator", "denominator", "unit", "status", "reason"]]
    order = {n: i for i, n in enumerate(wanted)}
    return (out.assign(_o=out.kpi.map(order)).sort_values(["_o", "bucket", "channel"], na_position="first")
            .drop(columns="_o").reset_index(drop=True))


def kpis(tables: Tables, period: Period, *, names: list[str] | None = None, interval: Interval = "period",
         by_channel: bool = False, lookback_days: float = 30.0) -> pd.DataFrame:
    """The KPIs (all, or ``names``) per bucket and channel: ``kpi, bucket, channel, value, numerator, denominator,
    unit, status ("ok" or "no data"), reason``."""
    return kpi_views(tables, period, [(interval, by_channel)], names=names, lookback_days=lookback_days)[0]
