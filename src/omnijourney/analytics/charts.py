"""The analyses as pictures: one Plotly figure per question, with the tables it was drawn from.

Each builder takes :class:`~omnijourney.analytics.tables.Tables` and the question, asks the analysis functions
(``queries``, ``funnels``, ``kpis``, ``journeys``) and returns a :class:`Chart`: the figure, the tables behind it,
and, when there is nothing to draw, ``missing``: why, in words (a chart is never silently empty). A bad question
(a reversed period, an unknown event) raises ``Invalid`` naming the field, as the analyses do.

``omni analytics report`` writes every chart into one HTML file (``analytics.report``); the console's analytics
pages show the same charts (``console.analytics_pages``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from html import escape
from typing import Any, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from omnijourney.analytics import clv as clv_models
from omnijourney.analytics import common, funnels, journeys, kpis, queries
from omnijourney.analytics.schemas import FunnelQuery, Period
from omnijourney.analytics.tables import ORDER_EVENT, Tables
from omnijourney.core.errors import Invalid

# Okabe and Ito's palette: told apart with every kind of colour blindness
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#8C6D1F", "#000000", "#999999")
LAYOUT: dict[str, Any] = {
    "template": "plotly_white",
    "font": {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "color": "#1b1f24", "size": 13},
    "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
    "paper_bgcolor": "#ffffff",
    "plot_bgcolor": "#ffffff",
    "hoverlabel": {"namelength": -1},
}
DEFAULT_STEPS = ("Product Viewed", "Product Added", ORDER_EVENT)
STAGE_LABELS = {"before": "Before the purchase", "during": "During the purchase", "after": "After the purchase"}
MODEL_LABELS = {"first_touch": "First touch", "last_touch": "Last touch", "linear": "Linear",
                "time_decay": "Time decay", "position_based": "Position based", "markov": "Markov chain",
                "shapley": "Shapley value"}
KPI_LABELS = {"conversion_rate": "Conversion rate", "cart_abandonment": "Cart abandonment", "orders": "Orders",
              "revenue": "Revenue", "aov": "Average order value",
              "touchpoints_per_purchase": "Touchpoints per purchase",
              "cross_channel_share": "Cross-channel customers", "return_rate": "Return rate", "nps": "NPS",
              "csat": "CSAT", "first_response_time": "First response time", "resolution_time": "Resolution time",
              "loyalty_participation": "Loyalty participation"}


@dataclass
class Table:
    """A table behind a chart: ``name`` names its CSV, ``caption`` says what a row is."""

    name: str
    caption: str
    frame: pd.DataFrame

    def csv(self) -> str:
        """The whole table as CSV (what the console's export downloads)."""
        return self.frame.to_csv(index=False)


@dataclass
class Chart:
    """One picture of the journey: the figure (None when there is nothing to draw, ``missing`` saying why), the
    tables it was drawn from, and notes (what was left out, and why)."""

    key: str
    title: str
    about: str
    figure: go.Figure | None = None
    tables: list[Table] = field(default_factory=list)
    missing: str | None = None
    notes: list[str] = field(default_factory=list)

    def table(self, name: str) -> Table:
        """The table ``name``; ``Invalid`` naming ``table`` when this chart has none of that name."""
        for t in self.tables:
            if t.name == name:
                return t
        raise Invalid(f"no table {name!r} here: one of {', '.join(t.name for t in self.tables)}", field="table")


def _layout(fig: go.Figure, *, height: int = 420, **extra: Any) -> go.Figure:
    fig.update_layout(**{**LAYOUT, "height": height, **extra})
    return fig


def data_missing(tables: Tables, period: Period) -> str | None:
    """Why the period holds nothing to analyse (no event at all in it), or None. A bad period (reversed, in the
    future) is the asker's mistake: raised as ``Invalid``."""
    since, until = common.check_period(period)
    try:
        common.check_data(tables, tables.events(), since, until)
    except Invalid as exc:
        return exc.message
    return None


def _colours(names: list[str]) -> dict[str, str]:
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


# ---------------------------------------------------------------- journey map

def journey_map(tables: Tables, period: Period, *, channel: str | None = None) -> Chart:
    """Touchpoints before, during and after the purchase, per channel, with the share of each stage's people who
    went on to the next stage (``queries.journey_map``)."""
    chart = Chart("journey_map", "Journey map",
                  "Touchpoints per stage of the journey, by channel, and the share of each stage's people who went on "
                  "to the next stage.")
    chart.missing = data_missing(tables, period)
    if chart.missing:
        return chart
    stages, touch = queries.journey_map(tables, period, channel=channel)
    chart.tables = [Table("stages", "Journey stages: people, events, channels, and conversion to the next stage",
                          stages),
                    Table("touchpoints", "Touchpoints per stage, event and channel", touch)]
    if int(stages["events"].sum()) == 0:
        chart.missing = "no touchpoints in the period" + (f" among the people who used {channel}" if channel else "")
        return chart
    order = list(queries.STAGES)
    x = [f"{STAGE_LABELS[s]}<br>{int(p):,} people" for s, p in zip(stages["stage"], stages["people"], strict=True)]
    totals = touch.groupby("channel")["events"].sum().sort_values(ascending=False, kind="stable")
    colours = _colours(list(totals.index))
    fig = go.Figure()
    for ch in totals.index:
        per = touch[touch.channel == ch].groupby("stage")["events"].sum().reindex(order, fill_value=0)
        fig.add_bar(name=str(ch), x=x, y=per.to_numpy(), marker_color=colours[ch],
                    hovertemplate="%{y:,} touchpoints<extra>" + escape(str(ch)) + "</extra>")
    for i, row in enumerate(stages.itertuples()):
        if row.conversion_to_next is not None and not pd.isna(row.conversion_to_next):
            fig.add_annotation(x=i + 0.5, y=1.06, xref="x", yref="paper", showarrow=False,
                               text=f"{row.conversion_to_next:.0%} go on →", font={"size": 13, "color": "#1b1f24"})
    _layout(fig, barmode="stack", yaxis_title="touchpoints (events)", legend_title_text="channel",
            margin={**LAYOUT["margin"], "t": 60})
    chart.figure = fig
    return chart


# ---------------------------------------------------------------- funnel

def default_funnel(period: Period, *, window: float = 14, window_unit: str = "day",
                   breakdown: str | None = None) -> FunnelQuery:
    """The shop's funnel: a product viewed, added to a cart, an order completed (in any channel)."""
    return FunnelQuery(steps=[{"event": e} for e in DEFAULT_STEPS], window=window, window_unit=window_unit,
                       breakdown=breakdown, since=period.since, until=period.until)


def funnel(tables: Tables, query: FunnelQuery) -> Chart:
    """People at each step of a funnel (``funnels.funnel``), one funnel per breakdown value."""
    chart = Chart("funnel", "Funnel",
                  f"People who did each step within {query.window:g} {query.window_unit}"
                  f"{'s' if query.window != 1 else ''} of the first, and the share of the first step who got there"
                  + (f", by {query.breakdown.replace('_', ' ')}" if query.breakdown else "") + ".")
    chart.missing = data_missing(tables, query)
    if chart.missing:
        return chart
    df = funnels.funnel(tables, query)
    chart.tables = [Table("steps", "Funnel steps: people, conversion and drop-off per step"
                          + (" and breakdown value" if query.breakdown else ""), df)]
    if int(df.loc[df.step == 0, "people"].sum()) == 0:
        chart.missing = f"nobody did the first step ({query.steps[0].label or query.steps[0].event}) in the period"
        return chart
    values = list(dict.fromkeys(df["breakdown"]))
    colours = _colours(values)
    fig = go.Figure()
    for value in values:
        sub = df[df.breakdown == value]
        fig.add_trace(go.Funnel(name=str(value), y=[f"{k + 1}. {label}" for k, label in zip(sub.step, sub.label,
                                                                                               strict=True)],
                                x=sub["people"].to_numpy(), textinfo="value+percent initial",
                                marker={"color": colours[value]}, connector={"line": {"color": "#c8ced6"}}))
    _layout(fig, height=max(320, 90 * len(df[df.breakdown == values[0]]) + 80), showlegend=query.breakdown is not None,
            legend_title_text=(query.breakdown or "").replace("_", " "), margin={**LAYOUT["margin"], "l": 180})
    chart.figure = fig
    return chart


# ---------------------------------------------------------------- paths (Sankey)

def paths(tables: Tables, period: Period, *, kind: Literal["channel", "event"] = "channel", max_steps: int = 4,
          start: str | None = None, end: str | None = None) -> Chart:
    """People's moves between channels (or events), step by step, as a Sankey (``queries.paths``)."""
    what = "channels" if kind == "channel" else "events"
    chart = Chart("paths", "Channel paths" if kind == "channel" else "Event paths",
                  f"How people moved between {what}: each band is the people who went from one to the next, at "
                  f"their first {max_steps} moves (repeats in one channel count once)." if kind == "channel" else
                  f"How people moved from event to event, at their first {max_steps} moves.")
    chart.missing = data_missing(tables, period)
    if chart.missing:
        return chart
    df = queries.paths(tables, period, kind=kind, max_steps=max_steps, start=start, end=end)
    chart.tables = [Table("moves", f"Moves between {what}: level (1 = the first move), from, to, people", df)]
    if df.empty:
        chart.missing = f"nobody moved from one {kind} to another in the period"
        return chart
    nodes: dict[tuple[int, str], int] = {}
    for level, source, target in zip(df["level"], df["source"], df["target"], strict=True):
        nodes.setdefault((int(level), str(source)), len(nodes))
        nodes.setdefault((int(level) + 1, str(target)), len(nodes))
    names = sorted({n for _, n in nodes})
    colours = _colours(names)
    labels = [name for (_, name) in nodes]
    sankey = go.Sankey(
        arrangement="snap",
        node={"label": labels, "color": [colours[n] for n in labels], "pad": 14, "thickness": 16,
              "customdata": [lv for (lv, _) in nodes],
              "hovertemplate": "%{label} (step %{customdata})<br>%{value:,} people<extra></extra>"},
        link={"source": [nodes[(int(lv), str(s))] for lv, s in zip(df["level"], df["source"], strict=True)],
              "target": [nodes[(int(lv) + 1, str(t))] for lv, t in zip(df["level"], df["target"], strict=True)],
              "value": df["people"].to_numpy(), "color": "rgba(11, 92, 173, 0.25)",
              "hovertemplate": "%{source.label} → %{target.label}: %{value:,} people<extra></extra>"})
    chart.figure = _layout(go.Figure(sankey), height=460)
    return chart


# ---------------------------------------------------------------- retention

def _period_index(stamp: pd.Series, cohort: str) -> pd.Series:
    t = pd.to_datetime(stamp)
    return t.dt.year * 12 + t.dt.month if cohort == "month" else (t - pd.Timestamp("1970-01-05")).dt.days // 7


def retention(tables: Tables, period: Period, *, cohort: Literal["week", "month"] = "month", periods: int = 6,
              channel: str | None = None) -> Chart:
    """Cohorts by first purchase and the share who bought again in each later period, as a heatmap
    (``queries.retention``)."""
    chart = Chart("retention", "Retention",
                  f"Customers grouped by the {cohort} of their first purchase"
                  + (f" (in {channel})" if channel else "") + f": the share who bought in each {cohort} after it "
                  f"({cohort} 0 is their first).")
    chart.missing = data_missing(tables, period)
    if chart.missing:
        return chart
    df = queries.retention(tables, period, cohort=cohort, periods=periods, channel=channel)
    chart.tables = [Table("cohorts", f"Cohorts by first purchase {cohort}: cohort size, and per {cohort} after it the "
                                     "people who bought and their share", df)]
    if df.empty:
        chart.missing = "no first purchase (Order Completed) in the period: there is no cohort to follow"
        return chart
    rates = df.pivot(index="cohort", columns="period", values="rate").reindex(columns=range(periods))
    people = df.pivot(index="cohort", columns="period", values="people").reindex(columns=range(periods))
    # a period that has passed with nobody buying is 0 %; one that has not come yet stays blank
    index = _period_index(pd.Series(rates.index), cohort).to_numpy()
    seen = int((_period_index(df["cohort"], cohort) + df["period"]).max())
    passed = (index[:, None] + np.arange(periods)[None, :]) <= seen
    z = np.where(np.isnan(rates.to_numpy(dtype=float)) & passed, 0.0, rates.to_numpy(dtype=float))
    n = np.where(np.isnan(people.to_numpy(dtype=float)) & passed, 0.0, people.to_numpy(dtype=float))
    text = [["" if np.isnan(v) else f"{v:.0%}<br>{int(p):,}" for v, p in zip(zr, pr, strict=True)]
            for zr, pr in zip(z, n, strict=True)]
    sizes = df.drop_duplicates("cohort").set_index("cohort")["cohort_size"]
    y = [f"{c} ({int(sizes[c]):,})" for c in rates.index]
    heat = go.Heatmap(z=z, x=[f"{cohort} {k}" for k in range(periods)], y=y, text=text, texttemplate="%{text}",
                      colorscale="Blues", zmin=0, zmax=1, colorbar={"title": {"text": "share"}, "tickformat": ".0%"},
                      hovertemplate="cohort %{y}, %{x}: %{z:.1%}<extra></extra>", xgap=2, ygap=2)
    fig = _layout(go.Figure(heat), height=max(280, 48 * len(y) + 120))
    fig.update_yaxes(autorange="reversed", title_text="cohort (customers)", type="category")
    chart.figure = fig
    return chart


# ---------------------------------------------------------------- attribution

def attribution(tables: Tables, period: Period, *, lookback_days: float = 30.0, order: int = 1) -> Chart:
    """Conversions credited to each channel by every attribution model (``journeys.attribution``)."""
    chart = Chart("attribution", "Attribution",
                  f"Orders credited to each channel by each model, from the touches of the {lookback_days:g} days "
                  "before each order: compare what each channel is worth.")
    chart.missing = data_missing(tables, period)
    if chart.missing:
        return chart
    result = journeys.attribution(tables, period, lookback_days=lookback_days, order=order)
    rows = []
    for name, model in result["models"].items():
        if "skipped" in model:
            chart.notes.append(f"{MODEL_LABELS.get(name, name)} is left out: {model['skipped']}.")
            continue
        for ch, credit in model["channels"].items():
            rows.append({"model": name, "channel": ch, "conversions": credit["conversions"],
                         "value": credit["value"]})
    df = pd.DataFrame(rows, columns=["model", "channel", "conversions", "value"])
    chart.tables = [Table("credit", "Conversions and revenue credited per model and channel", df)]
    lost = result.get("unattributed", {})
    if lost.get("conversions"):
        chart.notes.append(f"{lost['conversions']:g} conversion(s) had no touch within the {lookback_days:g}-day "
                           "lookback and are credited to no channel.")
    if not result["attributed"]["conversions"]:
        chart.missing = "no order (Order Completed) in the period to credit to a channel"
        return chart
    channels = list(dict.fromkeys(df.sort_values("conversions", ascending=False, kind="stable")["channel"]))
    models = list(dict.fromkeys(df["model"]))
    colours = _colours(models)
    fig = go.Figure()
    for name in models:
        sub = df[df.model == name].set_index("channel").reindex(channels)
        fig.add_bar(name=MODEL_LABELS.get(name, name), x=channels, y=sub["conversions"].fillna(0).to_numpy(),
                    customdata=sub["value"].fillna(0).to_numpy(), marker_color=colours[name],
                    hovertemplate="%{x}: %{y:,.2f} orders, %{customdata:,.2f} revenue<extra>"
                                  + MODEL_LABELS.get(name, name) + "</extra>")
    chart.figure = _layout(fig, barmode="group", yaxis_title="orders credited", legend_title_text="model")
    return chart


# ---------------------------------------------------------------- customer lifetime value

def customer_value(tables: Tables, period: Period, *, calibration_end: date | None = None,
                   horizon_weeks: float | None = None, bins: int = 20) -> Chart:
    """The distribution of customers' lifetime value over the next ``horizon_weeks`` (a year by default): BG/NBD
    and Gamma-Gamma fitted on the orders of every channel (``journeys.orders``, ``journeys.fit_orders``)."""
    horizon = horizon_weeks if horizon_weeks is not None else round(clv_models.DAYS_PER_YEAR / 7, 4)
    chart = Chart("clv", "Customer lifetime value",
                  f"How many customers are worth how much over the next {horizon:.1f} weeks (discounted at 10 % a "
                  "year): purchases expected by BG/NBD times spend expected by Gamma-Gamma, fitted on the orders of "
                  "every channel.")
    chart.missing = data_missing(tables, period)
    if chart.missing:
        return chart
    orders = journeys.orders(tables, period)
    if orders.empty:
        chart.missing = "no order (Order Completed) in the period: nothing to fit the models on"
        return chart
    try:
        with np.errstate(all="ignore"):  # the optimiser's probes beyond the edge: handled, not worth a warning
            fit = journeys.fit_orders(orders, calibration_end=calibration_end)
    except Invalid as exc:
        if exc.field == "calibration_end":
            raise
        chart.missing = f"the models cannot be fitted on these {len(orders):,} orders: {exc.message}"
        return chart
    with np.errstate(all="ignore"):
        report = fit.report(horizon=horizon)
        pred = fit.predict(horizon=horizon)
    params = [("BG/NBD", k, v) for k, v in report["bgnbd"].items()]
    params += [("Gamma-Gamma", k, v) for k, v in report.get("gamma_gamma", {}).items()]
    chart.tables = [Table("model", f"The fitted models ({report['customers']:,} customers, "
                                   f"{report['repeat_customers']:,} of them bought again; time in weeks)",
                          pd.DataFrame(params, columns=["model", "parameter", "value"]))]
    if any(not 1e-5 < v < 1e5 for v in fit.bgnbd.params().values()):
        chart.notes.append("The purchase model's parameters ran to the edge (too few customers or repeat "
                           "purchases): its predictions are not to be trusted.")
    if report.get("segments"):
        chart.tables.append(Table("segments", "Per channel of the first order: customers, expected purchases, "
                                              "mean P(alive), CLV", pd.DataFrame(report["segments"])))
    if "clv" not in pred:
        chart.missing = ("too few customers bought again for a positive amount to fit the spend model "
                         "(Gamma-Gamma): no lifetime value can be told")
        return chart
    values = np.asarray(pred["clv"], dtype=float)
    hi = float(values.max()) if len(values) and float(values.max()) > 0 else 1.0
    counts, edges = np.histogram(values, bins=bins, range=(0.0, hi))
    dist = pd.DataFrame({"from_clv": edges[:-1].round(2), "to_clv": edges[1:].round(2),
                         "customers": counts.astype("int64")})
    chart.tables.insert(0, Table("distribution", "Customers by lifetime value (each bin from its lower bound, up to "
                                                 "the next)", dist))
    fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges) * 0.95,
                           customdata=np.stack([edges[:-1], edges[1:]], axis=1), marker_color=PALETTE[0],
                           hovertemplate="%{customdata[0]:,.2f} to %{customdata[1]:,.2f}: %{y:,} customers"
                                         "<extra></extra>"))
    chart.figure = _layout(fig, xaxis_title=f"lifetime value over {horizon:.1f} weeks (mean "
                                            f"{values.mean():,.2f}, total {values.sum():,.2f})",
                           yaxis_title="customers", bargap=0.05)
    return chart


# ---------------------------------------------------------------- KPIs

def format_kpi(value: Any, unit: str) -> str:
    """A KPI's value as people read it: ratios in per cent, money with cents, times in minutes or hours."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    v = float(value)
    if unit == "ratio":
        return f"{v:.1%}"
    if unit == "money":
        return f"{v:,.2f}"
    if unit == "count":
        return f"{v:,.0f}"
    if unit == "seconds":
        return f"{v / 3600:,.1f} h" if v >= 3600 else f"{v / 60:,.1f} min"
    return f"{v:,.2f}"


def kpi_cards(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """Per KPI of a whole-period ``kpis.kpis`` table: label, value as text, definition, and the reason when there
    is no data."""
    cards = []
    for row in summary.itertuples():
        ok = row.status == "ok"
        cards.append({"kpi": row.kpi, "label": KPI_LABELS.get(row.kpi, row.kpi),
                      "value": format_kpi(row.value, row.unit) if ok else None,
                      "reason": None if ok else row.reason, "definition": kpis.KPIS[row.kpi].definition})
    return cards


def kpi_trends(tables: Tables, period: Period, *, interval: str = "week", by_channel: bool = False,
               names: list[str] | None = None) -> Chart:
    """Every KPI for the whole period (``summary``) and per ``interval`` (``trends``; per channel with
    ``by_channel``), one small chart per KPI with data; a KPI without data says why."""
    chart = Chart("kpis", "KPIs over time",
                  f"Each KPI per {interval}" + (" and channel" if by_channel else "")
                  + " (definitions in docs/analytics.md); the first table below holds the whole period.")
    try:  # the whole period and the trends from one query
        summary, trends = kpis.kpi_views(tables, period, [("period", False), (interval, by_channel)], names=names)
    except common.NoEvents as exc:
        chart.missing = exc.message
        return chart
    chart.tables = [Table("summary", "KPIs over the whole period", summary),
                    Table("trends", f"KPIs per {interval}" + (" and channel" if by_channel else ""), trends)]
    wanted = list(dict.fromkeys(trends["kpi"]))
    drawn = [k for k in wanted if ((trends.kpi == k) & (trends.status == "ok")).any()]
    for k in wanted:
        if k not in drawn:
            reasons = trends.loc[trends.kpi == k, "reason"].dropna()
            chart.notes.append(f"{KPI_LABELS.get(k, k)}: no data ("
                               f"{reasons.iloc[0] if len(reasons) else 'nothing to divide by'}).")
    if not drawn:
        chart.missing = "no KPI has data in the period"
        return chart
    cols = 3 if len(drawn) > 4 else 2
    rows = math.ceil(len(drawn) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[KPI_LABELS.get(k, k) for k in drawn],
                        vertical_spacing=min(0.12, 0.5 / rows), horizontal_spacing=0.08)
    channels = sorted(trends.loc[trends.status == "ok", "channel"].dropna().unique())
    colours = _colours(channels)
    for i, k in enumerate(drawn):
        sub = trends[(trends.kpi == k)]
        unit = str(sub["unit"].iloc[0])
        for ch in channels:
            line = sub[sub.channel == ch].sort_values("bucket")
            if line.empty:
                continue
            fig.add_scatter(x=line["bucket"], y=line["value"], mode="lines+markers", name=str(ch), legendgroup=ch,
                            showlegend=by_channel and i == 0, line={"color": colours[ch]},
                            hovertemplate="%{x}: %{y:,.4~f}<extra>" + escape(str(ch)) + "</extra>",
                            row=i // cols + 1, col=i % cols + 1)
        if unit == "ratio":
            fig.update_yaxes(tickformat=".0%", row=i // cols + 1, col=i % cols + 1)
    _layout(fig, height=240 * rows + 60, showlegend=by_channel, legend_title_text="channel",
            margin={**LAYOUT["margin"], "t": 50})
    # buckets are days: a time axis (not labels), the same range in every panel
    fig.update_xaxes(type="date", tickformat="%d %b", nticks=6, matches="x")
    chart.figure = fig
    return chart


# ---------------------------------------------------------------- the whole report

@dataclass
class ReportQuestion:
    """What the report asks: the period and each chart's options."""

    period: Period = field(default_factory=Period)
    steps: tuple[str, ...] = DEFAULT_STEPS
    window: float = 14
    window_unit: str = "day"
    breakdown: str | None = None
    interval: str = "week"
    by_channel: bool = False
    cohort: Literal["week", "month"] = "month"
    periods: int = 6
    max_steps: int = 4
    lookback_days: float = 30.0

    def funnel(self) -> FunnelQuery:
        return FunnelQuery(steps=[{"event": s} for s in self.steps], window=self.window,
                           window_unit=self.window_unit, breakdown=self.breakdown, since=self.period.since,
                           until=self.period.until)


def report_charts(tables: Tables, q: ReportQuestion, *,
                  progress: Callable[[str], None] | None = None) -> list[Chart]:
    """Every chart of the report, in its order; ``progress(title)`` is called as each one is done."""
    p = q.period
    builders: list[tuple[str, Callable[[], Chart]]] = [
        ("KPIs", lambda: kpi_trends(tables, p, interval=q.interval, by_channel=q.by_channel)),
        ("journey map", lambda: journey_map(tables, p)),
        ("funnel", lambda: funnel(tables, q.funnel())),
        ("channel paths", lambda: paths(tables, p, max_steps=q.max_steps)),
        ("retention", lambda: retention(tables, p, cohort=q.cohort, periods=q.periods)),
        ("attribution", lambda: attribution(tables, p, lookback_days=q.lookback_days)),
        ("lifetime value", lambda: customer_value(tables, p)),
    ]
    charts = []
    for title, build in builders:
        charts.append(build())
        if progress is not None:
            progress(title)
    return charts


REPORT_CHARTS = 7  # what report_charts builds (a progress bar's total)


# ---------------------------------------------------------------- tables as HTML

def _cell(value: Any) -> tuple[str, bool]:
    """(text, is a number) of one value."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT:
        return "—", False
    if isinstance(value, bool | np.bool_):
        return ("yes" if value else "no"), False
    if isinstance(value, int | np.integer):
        return f"{int(value):,}", True
    if isinstance(value, float | np.floating):
        v = float(value)
        if v == int(v) and abs(v) < 1e15:
            return f"{int(v):,}", True
        return f"{v:,.6f}".rstrip("0").rstrip("."), True
    if isinstance(value, pd.Timestamp):
        return value.isoformat(), False
    return str(value), False


def table_html(table: Table, *, limit: int | None = None, table_id: str | None = None) -> str:
    """``table`` as an HTML table (escaped): numbers right-aligned in full precision (grouped thousands), a missing
    value as "—"; with ``limit``, the first rows and a last line saying how many the CSV holds."""
    df = table.frame
    shown = df if limit is None else df.head(limit)
    numeric = [df[c].dtype.kind in "iuf" for c in df.columns]
    opening = f'<table id="{escape(table_id)}">' if table_id else "<table>"
    out = [opening, f"<caption>{escape(table.caption)}</caption>", "<thead><tr>"]
    for col, num in zip(df.columns, numeric, strict=True):
        cls = ' class="num"' if num else ""
        out.append(f'<th scope="col"{cls}>{escape(str(col).replace("_", " "))}</th>')
    out.append("</tr></thead><tbody>")
    for row in shown.itertuples(index=False):
        out.append("<tr>")
        for value in row:
            text, is_number = _cell(value)
            out.append(f'<td class="num">{escape(text)}</td>' if is_number else f"<td>{escape(text)}</td>")
        out.append("</tr>")
    if shown.empty:
        out.append(f'<tr><td colspan="{max(1, len(df.columns))}">No rows.</td></tr>')
    out.append("</tbody></table>")
    if limit is not None and len(df) > limit:
        out.append(f'<p class="muted">The first {limit:,} of {len(df):,} rows; the CSV holds them all.</p>')
    return "".join(out)
