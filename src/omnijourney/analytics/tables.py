"""The tables every analysis reads, as Ibis expressions of the same shape on every backend.

Only this module knows where the data lives:

* ``duckdb``: the embedded store (``analytics.store``), filled by the sync: ``events`` with the canonical name
  already computed, and ``people`` (merged profile -> survivor);
* ``postgresql``: the application database itself: ``events`` (the canonical name computed by an expression),
  ``customers.merged_into`` as the merge map.

Above it, every analysis (``analytics.queries``, ``analytics.funnels``, ...) is written once against
:meth:`Tables.events`, :meth:`Tables.orders` and :meth:`Tables.returns`, and gives the same numbers on both.

Columns of :meth:`Tables.events` (touchpoints: track, page and screen calls; identify/group/alias are not):
``id, person, customer_id, name, channel, store_code, ts, t (epoch seconds), properties (JSON)``. ``person`` is the
surviving profile (a merged profile's events count once, under the survivor), or ``anon:<anonymous id>`` for an event
without a profile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from omnijourney.analytics.settings import AnalyticsSettings, effective_backend
from omnijourney.analytics.store import default_path, open_store
from omnijourney.db import Database
from omnijourney.tracking.spec import _BY_FOLDED  # folded spelling -> canonical name (the spec's own table)

TOUCHPOINT_TYPES = ("track", "page", "screen")
ORDER_EVENT = "Order Completed"
RETURN_EVENT = "Order Returned"
REFUND_EVENT = "Order Refunded"
_NUMERIC = r"^-?[0-9]+(\.[0-9]+)?$"


def json_number(value: ir.JSONValue) -> ir.FloatingValue:
    """A JSON value as a number: a JSON number, or a string holding one ("12.50": money is sent as text). (On Spark
    ``properties`` is a map of texts: a value is already its text.)"""
    if value.type().is_string():
        return ibis.ifelse(value.re_search(_NUMERIC), value.cast("float64"), ibis.null())
    text = value.str
    return ibis.coalesce(value.float, ibis.ifelse(text.re_search(_NUMERIC), text.cast("float64"), ibis.null()))


def json_text(value: ir.JSONValue) -> ir.StringValue:
    """A JSON value as text: a string as it is, a number or a boolean spelled as JSON spells it."""
    if value.type().is_string():
        return value
    # a number's JSON text as sent ("7", not "7.0"): the same on every backend
    return ibis.coalesce(value.str, ibis.ifelse(value.float.notnull(), value.cast("string"), ibis.null()),
                         ibis.ifelse(value.bool, "true", ibis.ifelse(value.bool.notnull(), "false", ibis.null())))


@ibis.udf.scalar.builtin(name="epoch_us")
def _epoch_us(ts: dt.Timestamp(timezone="UTC")) -> dt.int64:  # type: ignore[empty-body,valid-type]
    """DuckDB's microseconds since the epoch of a TIMESTAMPTZ."""


@dataclass
class Tables:
    """The analyses' tables on one backend connection (see the module docstring)."""

    backend: str  # "duckdb", "postgresql" or "spark"
    con: Any  # the Ibis backend

    def events(self) -> ir.Table:
        """Touchpoints with the person resolved through merges."""
        if self.backend in ("duckdb", "spark"):  # the store's tables (Spark: as the store exported them)
            e = self.con.table("events")
            e = e.filter(e.name.notnull())
            people = self.con.table("people")
        else:
            raw = self.con.table("events")
            raw = raw.filter(raw.type.isin(TOUCHPOINT_TYPES))
            folded = raw.event.lower().replace(" ", "").replace("_", "").replace("-", "").replace("\t", "")
            name = (ibis.cases((raw.type == "page", "Page Viewed"), (raw.type == "screen", "Screen Viewed"),
                               else_=folded.substitute(_BY_FOLDED, else_=raw.event)))
            e = raw.mutate(name=name, ts=raw["timestamp"]).filter(lambda t: t.name.notnull())
            c = self.con.table("customers")
            people = c.filter(c.merged_into.notnull()).select(merged_id=c.id, survivor_id=c.merged_into)
        j = e.left_join(people, e.customer_id == people.merged_id)
        # a CASE, not COALESCE: DuckDB then builds the "anon:" text only for events without a profile
        person = ibis.cases((j.survivor_id.notnull(), j.survivor_id), (j.customer_id.notnull(), j.customer_id),
                            else_="anon:" + j.anonymous_id)
        # on DuckDB the same double as EPOCH(CAST(ts AS TIMESTAMP)), which Ibis writes, without the cast through the
        # time zone: it cost 0.57 s of CPU for the 4.6M events of a funnel's four steps (now 0.17 s)
        t = _epoch_us(j.ts) / 1e6 if self.backend == "duckdb" else j.ts.epoch_seconds()
        return self.opaque(j.select(id=j.id, person=person, customer_id=j.customer_id, name=j.name,
                                    channel=j.channel, store_code=j.store_code, ts=j.ts, t=t,
                                    properties=j.properties))

    def opaque(self, expr: ir.Table) -> ir.Table:
        """``expr`` as a relation of its own SQL: Ibis (12) flattens a join onto a projection of another join and
        can then bind a predicate to the wrong side (``fp = fp``); a relation of SQL text is never flattened. The
        engines inline it as any subquery."""
        sql = self.con.compile(expr)
        schema = expr.schema()
        if self.backend == "postgresql" and any(t.is_json() for t in schema.values()):
            # Ibis hands JSON columns out as text: made JSON again for the expressions above
            cols = ", ".join(f'CAST("{n}" AS json) AS "{n}"' if t.is_json() else f'"{n}"' for n, t in schema.items())
            sql = f"SELECT {cols} FROM ({sql}) AS _opaque"
        return self.con.sql(sql, schema=schema)

    def shared(self, relation: ir.Table, build: Callable[[ir.Table], ir.Table], name: str) -> ir.Table:
        """``build(r)``, where ``r`` stands for ``relation`` computed once. Ibis writes a relation out again at each
        place a query reads it, and the engine then computes it once per read; on DuckDB ``relation`` becomes a
        materialized CTE named ``name`` instead (elsewhere ``build(relation)``, as written)."""
        if self.backend != "duckdb":
            return build(relation)
        placeholder = ibis.table(relation.schema(), name=name)
        body = build(placeholder)
        sql = (f'WITH "{name}" AS MATERIALIZED ({self.con.compile(relation)}) '
               f'SELECT * FROM ({self.con.compile(body)}) AS "{name}_body"')
        return self.con.sql(sql, schema=body.schema())

    def orders(self, events: ir.Table | None = None) -> ir.Table:
        """One row per order completed in any channel, from its "Order Completed" event (the first one, if a channel
        reported it again): ``order_id, person, channel, store_code, ts, t, total, revenue``. An event without an
        ``order_id`` is an order of its own."""
        e = events if events is not None else self.events()
        o = e.filter(e.name == ORDER_EVENT)
        p = o.properties
        o = o.mutate(order_id=ibis.coalesce(json_text(p["order_id"]), "event:" + o.id.cast("string")),
                     total=ibis.coalesce(json_number(p["total"]), json_number(p["revenue"]), 0.0),
                     revenue=ibis.coalesce(json_number(p["revenue"]), json_number(p["total"]), 0.0))
        first = ibis.row_number().over(group_by=o.order_id, order_by=[o.t, o.id])
        o = o.mutate(_n=first).filter(lambda t: t._n == 0)
        return self.opaque(o.select("order_id", "person", "channel", "store_code", "ts", "t", "total", "revenue",
                                    "id"))

    def returns(self, events: ir.Table | None = None) -> ir.Table:
        """Goods that came back, one row per "Order Returned" event: ``order_id, person, channel, ts, t, refund``
        (the refund is on the "Order Refunded" event of the same return, when the money went back)."""
        e = events if events is not None else self.events()
        r = e.filter(e.name == RETURN_EVENT)
        r = r.mutate(order_id=json_text(r.properties["order_id"]),
                     return_id=json_text(r.properties["return_id"]))
        refunds = e.filter(e.name == REFUND_EVENT)
        refunds = refunds.select(return_id=json_text(refunds.properties["return_id"]),
                                 refund=json_number(refunds.properties["refund"]))
        refunds = refunds.filter(refunds.return_id.notnull()).group_by("return_id").aggregate(
            refund=lambda t: t.refund.sum())
        j = r.left_join(refunds, r.return_id == refunds.return_id)
        return self.opaque(j.select("order_id", j.return_id, "person", "channel", "ts", "t",
                                    refund=ibis.coalesce(j.refund, 0.0)))

    def with_campaign(self, events: ir.Table) -> ir.Table:
        """``events`` with ``campaign``: the campaign of the event's context (Segment's ``context.campaign.name``,
        which analytics.js fills from ``utm_campaign``), else its property ``campaign_name`` (Segment's email and
        push events), else its property ``campaign``; null when none names one. Blank names count as none."""
        raw = self.con.table("events")
        # the store keeps the context's campaign as a column; PostgreSQL reads it from the event's context
        ctx = json_text(raw.context["campaign"]["name"]) if self.backend == "postgresql" else raw.campaign
        c = raw.select(campaign_event_id=raw.id, context_campaign=ctx)
        j = events.left_join(c, events.id == c.campaign_event_id)
        props = j.properties
        names = [j.context_campaign, json_text(props["campaign_name"]), json_text(props["campaign"])]
        campaign = ibis.coalesce(*(n.strip().nullif("") for n in names))
        return self.opaque(j.mutate(campaign=campaign).drop("campaign_event_id", "context_campaign"))

    def has_table(self, name: str) -> bool:
        return name in self.con.list_tables()


@contextmanager
def open_tables(db: Database, settings: AnalyticsSettings, *, database_url: str | None = None) -> Iterator[Tables]:
    """The tables on the configured backend: the DuckDB store, or the application database directly
    (``OMNI_ANALYTICS__BACKEND=app``; PostgreSQL only); ``auto`` picks by the application database."""
    if effective_backend(settings, db.dialect) == "app":
        with app_tables(db) as tables:
            yield tables
        return
    store = open_store(default_path(database_url or db.url, settings))
    with store.cursor() as cur:
        yield Tables("duckdb", ibis.duckdb.from_connection(cur))


@contextmanager
def app_tables(db: Database) -> Iterator[Tables]:
    """The application database as the analyses' backend, on a connection of its pool (PostgreSQL)."""
    from omnijourney.core.errors import Invalid

    if db.dialect != "postgresql":
        raise Invalid("analytics run directly on the application database only on PostgreSQL; on SQLite they run on "
                      "the DuckDB store (OMNI_ANALYTICS__BACKEND=duckdb)", field="analytics.backend")
    raw = db.engine.raw_connection()
    try:
        conn = raw.driver_connection
        conn.execute("SET TIME ZONE 'UTC'")
        yield Tables("postgresql", ibis.postgres.from_connection(conn))
    finally:
        raw.close()  # back to the pool, rolled back
