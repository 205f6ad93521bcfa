"""Funnels, as PostHog defines them, with channels as steps and as breakdowns.

Semantics (docs/analytics.md has the user's version):

* A person enters at a first-step event inside the period; the other steps must follow within the conversion window
  counted from that event (minutes to months; a month is 30 days).
* ``ordered``: steps in order, other events in between allowed. For each entry the earliest next step is taken (the
  earliest leaves the most room for the rest), and of all a person's entries the one that got furthest counts (the
  earliest among equals). ``strict``: each step must be the person's very next event. ``unordered``: any order;
  "step k" counts people who did at least k of the steps within the window of an entry.
* Optional steps (never the first): people who skip them still count at later steps; an optional step counts the
  people who did it between the steps around it.
* Exclusions: a person with the excluded event between the two given steps of their conversion (or, if the second was
  not reached, before their window closed) is left out of the funnel altogether, as PostHog does.
* Conversion against the first step or the previous one; breakdowns by channel, store, any property, or the
  journey's channel mix ("web only", "web > store"), attributed to the first touch (the entry), the last touch
  (the last step reached) or a given step.

Every function returns a pandas DataFrame computed by one or two Ibis queries, so it runs the same on DuckDB and
PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from omnijourney.analytics import common
from omnijourney.analytics.schemas import FunnelQuery
from omnijourney.analytics.tables import Tables
from omnijourney.core.errors import Invalid

MAX_STEPS = 20


@dataclass
class Prepared:
    """A checked funnel query: canonical step names, the window in seconds, the period in epoch seconds."""

    query: FunnelQuery
    names: list[str]
    window: int
    since: int | None
    until: int | None
    tables: Tables | None = None


def prepare(tables: Tables, q: FunnelQuery) -> Prepared:
    """Check the question (422 naming the field) and resolve event names."""
    n = len(q.steps)
    if n < 2:
        raise Invalid("a funnel needs at least 2 steps", field="steps")
    if n > MAX_STEPS:
        raise Invalid(f"a funnel has at most {MAX_STEPS} steps", field="steps")
    if q.window <= 0:
        raise Invalid("the conversion window must be longer than zero", field="window")
    if q.window_s() > 366 * 86400 * 2:
        raise Invalid("the conversion window is at most two years", field="window")
    if q.steps[0].optional:
        raise Invalid("the first step cannot be optional", field="steps[0].optional")
    if q.order == "unordered" and any(s.optional for s in q.steps):
        raise Invalid("optional steps need an order (ordered or strict)", field="order")
    if q.attribution == "step" and (q.attribution_step is None or not 0 <= q.attribution_step < n):
        raise Invalid(f"attribution=step needs attribution_step from 0 to {n - 1}", field="attribution_step")
    for i, x in enumerate(q.exclusions):
        to = n - 1 if x.to_step is None else x.to_step
        if not 0 <= x.from_step < to <= n - 1:
            raise Invalid(f"an exclusion lies between two steps: 0 <= from_step < to_step <= {n - 1}",
                          field=f"exclusions[{i}].from_step")
    since, until = common.check_period(q)
    events = tables.events()
    common.breakdown_value(events, q.breakdown)  # checks its spelling
    step_names = [common.event_name(tables, events, s.event, f"steps[{i}].event") for i, s in enumerate(q.steps)]
    for i, x in enumerate(q.exclusions):
        common.event_name(tables, events, x.event, f"exclusions[{i}].event")
    common.check_data(tables, events, since, until)
    return Prepared(q, step_names, q.window_s(), since, until, tables)


def _events(tables: Tables, p: Prepared) -> ir.Table:
    """The events the funnel reads: every event for a strict funnel (a step must be the person's very next event),
    else only the steps' and exclusions' events, with the columns the steps, filters and breakdown read."""
    e = tables.events()
    if p.query.order != "strict":
        names = {*p.names, *(common.canonical_event_name(x.event) for x in p.query.exclusions)}
        e = e.filter(e.name.isin(sorted(names)))
        wanted = ["id", "person", "name", "channel", "store_code", "t"]
        if _reads_properties(p.query):
            wanted.append("properties")
        e = e.select(*wanted)
    if p.since is not None:
        e = e.filter(e.t >= p.since)
    if p.until is not None:
        e = e.filter(e.t < p.until + p.window)  # later steps may fall after the period, within the window
    return e


def _reads_properties(q: FunnelQuery) -> bool:
    """Does a step's or an exclusion's filter, or the breakdown, read an event property?"""
    filters = [f for s in q.steps for f in s.filters] + [f for x in q.exclusions for f in x.filters]
    return (any(f.key not in ("channel", "store_code", "name") for f in filters)
            or (q.breakdown or "").startswith("property:"))


def _step_events(e: ir.Table, p: Prepared, k: int) -> ir.Table:
    s = p.query.steps[k]
    out = common.step_filter(e, p.names[k], s.filters, s.channels, f"steps[{k}]")
    return out.mutate(bval=common.breakdown_value(out, p.query.breakdown))


def _entries(e: ir.Table, p: Prepared) -> ir.Table:
    first = _step_events(e, p, 0)
    if p.since is not None:
        first = first.filter(first.t >= p.since)
    if p.until is not None:
        first = first.filter(first.t < p.until)
    return first


def _ordered(e: ir.Table, p: Prepared) -> ir.Table:
    """Per person: t_k, c_k (channel), b_k (breakdown value) of each step, for their furthest entry."""
    n = len(p.names)
    required = [k for k in range(n) if not p.query.steps[k].optional]
    return _joined_chain(e, p, required)


def _joined_chain(e: ir.Table, p: Prepared, required: list[int]) -> ir.Table:
    """For each entry, the earliest event of each next step strictly later in time (strict: the person's very next
    event, an equality on its position); the entry that got furthest per person. On DuckDB an ASOF join finds it
    (the same answer). A window formulation, "the next event of each step after this row", was twice as slow as
    the join on DuckDB over 10M events."""
    strict = p.query.order == "strict"
    asof = p.tables is not None and p.tables.backend == "duckdb"
    if strict:  # position of every event in the person's own sequence: the next step must be the next event
        e = e.mutate(rk=ibis.row_number().over(group_by=e.person, order_by=[e.t, e.id]))
    first = _entries(e, p)
    cur = first.select(person=first.person, sid=first.id, t_start=first.t, last_t=first.t, last_id=first.id,
                       last_rk=first.rk if strict else ibis.literal(0), t_0=first.t, c_0=first.channel,
                       b_0=first.bval)
    for k in required[1:]:
        s = _step_events(e, p, k)
        # only the events of people who entered the funnel: most of a step's events are not theirs, and the join
        # sorts or hashes every event it is given
        s = s.filter(s.person.isin(first.person))
        s = s.select(p_=s.person, tk=s.t, idk=s.id, ck=s.channel, bk=s.bval, rkk=s.rk if strict else ibis.literal(0))
        keep = [c for c in cur.columns if c not in ("last_t", "last_id", "last_rk")]
        if asof and not strict:
            # DuckDB's ASOF join: the person's first event of the step strictly after the previous one, found by a
            # merge of two sorted inputs instead of a join with every later event and a ranking
            cur = p.tables.opaque(cur)  # type: ignore[union-attr]  (a relation of its own: Ibis chains joins)
            j = cur.asof_join(s, on=cur.last_t < s.tk, predicates=[cur.person == s.p_])
            inside = j.tk <= j.t_start + p.window
            cur = j.select(*keep, last_t=ibis.ifelse(inside, j.tk, ibis.null()), last_id=j.idk, last_rk=j.rkk,
                           **{f"t_{k}": ibis.ifelse(inside, j.tk, ibis.null()),
                              f"c_{k}": ibis.ifelse(inside, j.ck, ibis.null()),
                              f"b_{k}": ibis.ifelse(inside, j.bk, ibis.null())})
            continue
        cond = [cur.person == s.p_, s.tk > cur.last_t, s.tk <= cur.t_start + p.window]
        if strict:
            cond.append(s.rkk == cur.last_rk + 1)
        j = cur.left_join(s, cond)
        j = j.mutate(_n=ibis.row_number().over(group_by=j.sid, order_by=[j.tk, j.idk])).filter(lambda t: t._n == 0)
        cur = j.select(*keep, last_t=j.tk, last_id=j.idk, last_rk=j.rkk, **{f"t_{k}": j.tk, f"c_{k}": j.ck,
                                                                             f"b_{k}": j.bk})
    reached = sum((cur[f"t_{k}"].notnull().ifelse(1, 0) for k in required), ibis.literal(0))
    cur = cur.mutate(reached=reached)
    best = cur.mutate(_n=ibis.row_number().over(group_by=cur.person, order_by=[ibis.desc(cur.reached),
                                                                                 cur.t_start, cur.sid]))
    best = best.filter(best._n == 0).drop("_n", "last_t", "last_id", "last_rk", "reached")
    return _optional_steps(e, p, best, required)


def _optional_steps(e: ir.Table, p: Prepared, best: ir.Table, required: list[int]) -> ir.Table:
    """Optional steps: done between the required steps around them (or before the window closed)."""
    n = len(p.names)
    for k in range(n):
        if not p.query.steps[k].optional:
            continue
        before = max(r for r in required if r < k)
        after = min((r for r in required if r > k), default=None)
        s = _step_events(e, p, k)
        s = s.select(p_=s.person, tk=s.t, idk=s.id, ck=s.channel, bk=s.bval)
        upper = best.t_start + p.window
        if after is not None:
            upper = ibis.coalesce(best[f"t_{after}"], upper)
        cand = best.join(s, [best.person == s.p_, s.tk > best[f"t_{before}"], s.tk <= upper])
        cand = cand.mutate(_n=ibis.row_number().over(group_by=cand.person, order_by=[cand.tk, cand.idk]))
        cand = cand.filter(cand._n == 0).select(p2=cand.person, **{f"t_{k}": cand.tk, f"c_{k}": cand.ck,
                                                                    f"b_{k}": cand.bk})
        best = best.left_join(cand, best.person == cand.p2).drop("p2")
    return best.select("person", "t_start", *[c for k in range(n) for c in (f"t_{k}", f"c_{k}", f"b_{k}")])


def _unordered(e: ir.Table, p: Prepared) -> ir.Table:
    """Per person: for the entry (an event of any step inside the period) that completed most steps within the
    window, the earliest event of each step: t_k, c_k, b_k."""
    n = len(p.names)
    parts = []
    for k in range(n):
        s = _step_events(e, p, k)
        parts.append(s.select(person=s.person, t=s.t, id=s.id, channel=s.channel, bval=s.bval, k=ibis.literal(k)))
    u = ibis.union(*parts)
    starts = u
    if p.since is not None:
        starts = starts.filter(starts.t >= p.since)
    if p.until is not None:
        starts = starts.filter(starts.t < p.until)
    starts = starts.select(sp=starts.person, sid=starts.id, t_start=starts.t, sk=starts.k)
    j = starts.join(u, [starts.sp == u.person, u.t >= starts.t_start, u.t <= starts.t_start + p.window])
    # a start's own step is done by the start itself (an event at the same second may precede it by id)
    j = j.filter((j.k != j.sk) | (j.id == j.sid))
    j = j.mutate(_n=ibis.row_number().over(group_by=[j.sid, j.k], order_by=[j.t, j.id])).filter(lambda t: t._n == 0)
    agg = {}
    for k in range(n):
        hit = j.k == k
        agg[f"t_{k}"] = j.t.max(where=hit)
        agg[f"c_{k}"] = j.channel.max(where=hit)
        agg[f"b_{k}"] = j.bval.max(where=hit)
    per = j.group_by(person=j.sp, sid=j.sid, t_start=j.t_start).aggregate(**agg, steps=j.k.nunique())
    best = per.mutate(_n=ibis.row_number().over(group_by=per.person, order_by=[ibis.desc(per.steps), per.t_start,
                                                                                per.sid]))
    return best.filter(best._n == 0).select("person", "t_start",
                                            *[c for k in range(n) for c in (f"t_{k}", f"c_{k}", f"b_{k}")])


def _exclude(e: ir.Table, p: Prepared, m: ir.Table) -> ir.Table:
    n = len(p.names)
    for i, x in enumerate(p.query.exclusions):
        name = common.canonical_event_name(x.event)
        to = n - 1 if x.to_step is None else x.to_step
        ev = common.step_filter(e, name, x.filters, None, f"exclusions[{i}]")
        ev = ev.select(xp=ev.person, xt=ev.t)
        upper = ibis.coalesce(m[f"t_{to}"], m.t_start + p.window)
        bad = m.join(ev, [m.person == ev.xp, ev.xt > m[f"t_{x.from_step}"], ev.xt < upper]).select(bp=m.person)
        m = m.anti_join(bad.distinct(), m.person == bad.bp)
    return m


def matches(tables: Tables, p: Prepared) -> ir.Table:
    """One row per person who entered: ``person, t_start``, and per step k ``t_k`` (epoch seconds of the event that
    did it, null if not done), ``c_k`` (its channel), ``b_k`` (its breakdown value); plus ``breakdown``."""
    def build(e: ir.Table) -> ir.Table:
        m = _unordered(e, p) if p.query.order == "unordered" else _ordered(e, p)
        m = _exclude(e, p, m)
        return m.mutate(breakdown=_attributed(m, p))

    e = _events(tables, p)
    if p.query.order == "strict":  # every event: computed where it is read, as written
        return build(e)
    # the steps' events are read once per step (and exclusion): read out of the store once (on DuckDB)
    return tables.shared(e, build, name="funnel_events")


def _done(m: ir.Table, p: Prepared, k: int) -> ir.BooleanValue:
    """Did the person count at step k? Ordered: step k done (required steps imply the earlier ones). Unordered: at
    least k+1 steps done."""
    n = len(p.names)
    if p.query.order == "unordered":
        count = sum((m[f"t_{i}"].notnull().ifelse(1, 0) for i in range(n)), ibis.literal(0))
        return count >= k + 1
    return m[f"t_{k}"].notnull()


def _attributed(m: ir.Table, p: Prepared) -> ir.StringValue:
    n = len(p.names)
    q = p.query
    if q.breakdown is None:
        return ibis.literal("all")
    if q.breakdown == "channel_mix":
        return _channel_mix(m, n)
    if q.attribution == "first_touch":
        value = m.b_0
    elif q.attribution == "step":
        value = m[f"b_{q.attribution_step}"]
    else:  # the last step reached
        value = m.b_0
        for k in range(1, n):
            value = ibis.ifelse(m[f"t_{k}"].notnull(), m[f"b_{k}"], value)
    return common.label_none(value)


def _channel_mix(m: ir.Table, n: int) -> ir.StringValue:
    """The channels of the steps done, in order of time, repeats collapsed: "web", "web > store" (ordered funnels
    do steps in order; an unordered one's steps are ordered here by step number, a simplification)."""
    mix = m.c_0
    last = m.c_0
    for k in range(1, n):
        c = m[f"c_{k}"]
        new = c.notnull() & (c != last)
        mix = ibis.ifelse(new, mix + " > " + c, mix)
        last = ibis.ifelse(c.notnull(), c, last)
    return ibis.ifelse(mix.contains(" > "), mix, mix + " only")


def funnel(tables: Tables, q: FunnelQuery) -> pd.DataFrame:
    """Per breakdown value and step: people, conversion (against the first or the previous step), drop-off, and the
    average and median seconds from the previous step. The ``(other)`` value gathers breakdown values beyond the
    ``breakdown_limit`` largest."""
    p = prepare(tables, q)
    m = matches(tables, p)
    n = len(p.names)
    # one pass over the people: per breakdown value, each step's count and times (a union of one aggregate per
    # step would compute the matches once per step)
    agg: dict[str, ir.Value] = {}
    for k in range(n):
        done = _done(m, p, k)
        agg[f"people_{k}"] = m.person.count(where=done)
        if k and q.order != "unordered":
            prev = m.t_start
            for j in range(1, k):
                prev = ibis.ifelse(m[f"t_{j}"].notnull(), m[f"t_{j}"], prev)
            dt = ibis.ifelse(done, (m[f"t_{k}"] - prev).cast("float64"), ibis.null())  # nulls are not averaged
            agg[f"avg_{k}"] = dt.mean()
            agg[f"median_{k}"] = dt.median()
    wide = m.group_by("breakdown").aggregate(**agg).execute()
    rows = []
    for r in wide.to_dict("records"):
        for k in range(n):
            rows.append({"breakdown": r["breakdown"], "step": k, "people": r[f"people_{k}"],
                         "avg_s": r.get(f"avg_{k}"), "median_s": r.get(f"median_{k}")})
    df = pd.DataFrame(rows, columns=["breakdown", "step", "people", "avg_s", "median_s"])
    return _shape(df, p)


def _shape(df: pd.DataFrame, p: Prepared) -> pd.DataFrame:
    q = p.query
    n = len(p.names)
    df = df.astype({"people": "int64", "step": "int64"})
    firsts = df[df.step == 0].set_index("breakdown")["people"].sort_values(ascending=False, kind="stable")
    keep = list(firsts.index[: q.breakdown_limit])
    df["breakdown"] = df["breakdown"].where(df["breakdown"].isin(keep), common.OTHER)
    if (df["breakdown"] == common.OTHER).any():  # merged values: averages can no longer be told, only counts
        df = df.groupby(["breakdown", "step"], as_index=False).agg(people=("people", "sum"), avg_s=("avg_s", "mean"),
                                                                   median_s=("median_s", "median"))
    rows = []
    order = [*keep, *([common.OTHER] if common.OTHER in set(df["breakdown"]) else [])]
    for value in order:
        counts = dict.fromkeys(range(n), 0)
        avg: dict[int, float | None] = dict.fromkeys(range(n))
        med: dict[int, float | None] = dict.fromkeys(range(n))
        for r in df[df.breakdown == value].itertuples():
            counts[r.step] = int(r.people)
            avg[r.step] = None if pd.isna(r.avg_s) else round(float(r.avg_s), 3)
            med[r.step] = None if pd.isna(r.median_s) else round(float(r.median_s), 3)
        for k in range(n):
            base = counts[0] if q.reference == "first" or k == 0 else _previous(counts, p, k)
            rows.append({"breakdown": value, "step": k, "event": p.names[k],
                         "label": q.steps[k].label or p.names[k], "optional": q.steps[k].optional,
                         "people": counts[k], "conversion": round(counts[k] / base, 6) if base else None,
                         "dropped": (_previous(counts, p, k) - counts[k]) if k else 0,
                         "avg_seconds": avg[k], "median_seconds": med[k]})
    return pd.DataFrame(rows, columns=["breakdown", "step", "event", "label", "optional", "people", "conversion",
                                       "dropped", "avg_seconds", "median_seconds"])


def _previous(counts: dict[int, int], p: Prepared, k: int) -> int:
    """The count of the previous step that is not optional (an optional step is no gate)."""
    for j in range(k - 1, -1, -1):
        if not p.query.steps[j].optional or j == 0:
            return counts[j]
    return counts[0]


def time_to_convert(tables: Tables, q: FunnelQuery, *, from_step: int = 0, to_step: int | None = None,
                    bins: int = 10) -> pd.DataFrame:
    """How long people who converted took from ``from_step`` to ``to_step`` (default: the last): ``bins`` equal
    bins of seconds, with the people in each."""
    p = prepare(tables, q)
    n = len(p.names)
    to = n - 1 if to_step is None else to_step
    if not 0 <= from_step < to <= n - 1:
        raise Invalid(f"from_step and to_step are steps, 0 <= from_step < to_step <= {n - 1}", field="to_step")
    if not 1 <= bins <= 200:
        raise Invalid("bins is from 1 to 200", field="bins")
    m = matches(tables, p)
    start = m.t_start if from_step == 0 else m[f"t_{from_step}"]
    done = m.filter(start.notnull() & m[f"t_{to}"].notnull() & _done(m, p, to))
    d = done.select(seconds=(done[f"t_{to}"] - (done.t_start if from_step == 0 else done[f"t_{from_step}"])))
    values = d.execute()["seconds"].astype("float64").to_numpy()
    if len(values) == 0:
        return pd.DataFrame({"from_seconds": [], "to_seconds": [], "people": []})
    lo, hi = float(values.min()), float(values.max())
    if hi == lo:
        hi = lo + 1
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return pd.DataFrame({"from_seconds": edges[:-1].round(3), "to_seconds": edges[1:].round(3),
                         "people": counts.astype("int64")})


def people(tables: Tables, q: FunnelQuery, *, step: int, dropped: bool = True, limit: int = 1000) -> pd.DataFrame:
    """The people who reached ``step`` and (``dropped``) did not reach the next one, or (not ``dropped``) who reached
    it: ``person, breakdown, entered_at, last_step_at``."""
    p = prepare(tables, q)
    n = len(p.names)
    if not 0 <= step < (n - 1 if dropped else n):
        raise Invalid(f"step is from 0 to {n - 2 if dropped else n - 1}", field="step")
    if not 1 <= limit <= 100_000:
        raise Invalid("limit is from 1 to 100000", field="limit")
    m = matches(tables, p)
    cond = _done(m, p, step)
    if dropped:
        nxt = next((k for k in range(step + 1, n) if not q.steps[k].optional or q.order == "unordered"), None)
        if nxt is not None:
            cond = cond & ~_done(m, p, nxt)
    sel = m.filter(cond)
    last = sel.t_start
    for k in range(1, n):
        last = ibis.ifelse(sel[f"t_{k}"].notnull(), ibis.greatest(last, sel[f"t_{k}"]), last)
    out = sel.select("person", "breakdown", entered=sel.t_start, last=last).order_by(["person"]).limit(limit)
    df = out.execute()
    df["entered_at"] = pd.to_datetime(df.pop("entered"), unit="s", utc=True)
    df["last_step_at"] = pd.to_datetime(df.pop("last"), unit="s", utc=True)
    return df
