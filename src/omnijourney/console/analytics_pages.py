"""Analytics in the console: a dashboard of the KPIs and their trends, the journey map, a funnel builder, the
channel Sankey, the retention heatmap, the attribution comparison and the CLV distribution.

Each page asks ``analytics.charts`` (the figures of ``omni analytics report``) with the question typed in its form
(a GET form: the address is the question, so it can be bookmarked and shared), draws the figure with Plotly from
the installed package, and shows the tables behind it with a CSV export of each (the whole table; the page shows
the first rows). A chart without data says why. Opened by the roles that read analytics (``analytics:read``).

A page's charts are kept for a minute per question, so that its CSV export (and a reload) answers at once with the
same rows as the page; the analyses themselves run on the DuckDB store or PostgreSQL (``analytics.tables``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from markupsafe import Markup

from omnijourney.auth.service import Principal
from omnijourney.console.customers import json_block
from omnijourney.console.web import PREFIX, SECURITY_HEADERS, Errors, query, render, viewer
from omnijourney.core.errors import Invalid, NotFound, OmniError

router = APIRouter(prefix=PREFIX, include_in_schema=False)
Reader = Annotated[Principal, Depends(viewer("analytics:read"))]

TABLE_ROWS = 100  # rows a page shows of each table; the CSV has them all
LONG_TABLE = 25  # rows: a longer table is folded under its caption (one click opens it)
CACHE_S = 60.0
CACHE_SIZE = 32
MAX_STEPS = 6
CHOICES: dict[str, list[tuple[str, str]]] = {
    "interval": [("week", "per week"), ("day", "per day"), ("month", "per month")],
    "by": [("all", "all channels together"), ("channel", "each channel apart")],
    "unit": [(u, u + "s") for u in ("minute", "hour", "day", "week", "month")],
    "order": [("ordered", "in order"), ("strict", "in order, nothing between"), ("unordered", "in any order")],
    "breakdown": [("", "no breakdown"), ("channel", "channel"), ("store", "store"),
                  ("channel_mix", "journey's channel mix")],
    "kind": [("channel", "between channels"), ("event", "between events")],
    "cohort": [("month", "month"), ("week", "week")],
    "markov_order": [("1", "1 (one channel)"), ("2", "2 (the last two channels)"), ("3", "3")],
}


@dataclass(frozen=True)
class Field:
    """One control of a page's form."""

    name: str
    label: str
    kind: str = "text"  # text, date, number, select
    hint: str | None = None
    default: str = ""
    options: tuple[tuple[str, str], ...] = ()
    extra: str = ""
    group: str = "Options"  # the fieldset it sits in


@dataclass(frozen=True)
class Page:
    slug: str  # "" for the dashboard
    title: str
    intro: str
    fields: tuple[Field, ...]
    build: Callable[[Any, dict[str, str]], list[Any]]  # (tables, the form's values) -> charts

    @property
    def path(self) -> str:
        return f"{PREFIX}/analytics" + (f"/{self.slug}" if self.slug else "")

    @property
    def csv_name(self) -> str:
        return self.slug or "dashboard"


# ---------------------------------------------------------------- reading the form

def _moment(value: str | None, field: str, *, end: bool = False) -> datetime | None:
    """A day (``2026-03-01``: its start, or with ``end`` the start of the next day) or an ISO 8601 time, in UTC."""
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(f"{value!r} is not a date (YYYY-MM-DD)", field=field) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _period(v: dict[str, str]) -> Any:
    from omnijourney.analytics.schemas import Period

    return Period(since=_moment(v.get("since"), "since"), until=_moment(v.get("until"), "until", end=True))


def _number(v: dict[str, str], name: str, low: float, high: float) -> float:
    try:
        number = float(v[name])
    except ValueError:
        raise Invalid(f"a number from {low:g} to {high:g}", field=name) from None
    if not low <= number <= high:
        raise Invalid(f"a number from {low:g} to {high:g}", field=name)
    return number


def _choice(v: dict[str, str], name: str) -> str:
    allowed = [value for value, _ in CHOICES[name]]
    if v[name] not in allowed:
        raise Invalid(f"one of {', '.join(a or 'none' for a in allowed)}", field=name)
    return v[name]


# ---------------------------------------------------------------- the pages

PERIOD = (Field("since", "From", "date", hint="first day (UTC); empty: from the start", group="Period"),
          Field("until", "To", "date", hint="last day, included; empty: until now", group="Period"))


def _dashboard(t: Any, v: dict[str, str]) -> list[Any]:
    from omnijourney.analytics import charts

    return [charts.kpi_trends(t, _period(v), interval=_choice(v, "interval"), by_channel=_choice(v, "by") == "channel")]


def _journey_map(t: Any, v: dict[str, str]) -> list[Any]:
    from omnijourney.analytics import charts

    return [charts.journey_map(t, _period(v), channel=v.get("channel") or None)]


def _funnel(t: Any, v: dict[str, str]) -> list[Any]:
    from pydantic import ValidationError

    from omnijourney.analytics import charts
    from omnijourney.analytics.schemas import FunnelQuery

    steps = [v[f"step{i}"] for i in range(1, MAX_STEPS + 1) if v.get(f"step{i}")]
    if len(steps) < 2:
        raise Invalid("a funnel needs at least two steps: choose a second one", field="step2")
    period = _period(v)
    try:
        q = FunnelQuery(steps=[{"event": s} for s in steps], window=_number(v, "window", 0.001, 730),
                        window_unit=_choice(v, "unit"), order=_choice(v, "order"),
                        breakdown=_choice(v, "breakdown") or None, since=period.since, until=period.until,
                        breakdown_limit=10)
    except ValidationError as exc:  # what the choices above let through cannot fail here; kept as a 422
        raise Invalid(exc.errors()[0]["msg"], field="_") from None
    return [charts.funnel(t, q)]


def _paths(t: Any, v: dict[str, str]) -> list[Any]:
    from omnijourney.analytics import charts

    return [charts.paths(t, _period(v), kind=_choice(v, "kind"),  # type: ignore[arg-type]
                         max_steps=int(_number(v, "max_steps", 1, 10)))]


def _retention(t: Any, v: dict[str, str]) -> list[Any]:
    from omnijourney.analytics import charts

    return [charts.retention(t, _period(v), cohort=_choice(v, "cohort"),  # type: ignore[arg-type]
                             periods=int(_number(v, "periods", 1, 24)), channel=v.get("channel") or None)]


def _attribution(t: Any, v: dict[str, str]) -> list[Any]:
    from omnijourney.analytics import charts

    return [charts.attribution(t, _period(v), lookback_days=_number(v, "lookback_days", 1, 365),
                               order=int(_choice(v, "markov_order")))]


def _clv(t: Any, v: dict[str, str]) -> list[Any]:
    from omnijourney.analytics import charts

    end = _moment(v.get("calibration_end"), "calibration_end")
    return [charts.customer_value(t, _period(v), calibration_end=end.date() if end else None,
                                  horizon_weeks=_number(v, "horizon_weeks", 1, 520))]


def _select(name: str, label: str, default: str, hint: str | None = None) -> Field:
    return Field(name, label, "select", hint=hint, default=default, options=tuple(CHOICES[name]))


PAGES: dict[str, Page] = {p.slug: p for p in (
    Page("", "Analytics", "The KPIs of the period, each with its trend. A KPI without data says why.",
         (*PERIOD, _select("interval", "Trend", "week"), _select("by", "Channels", "all")), _dashboard),
    Page("journey-map", "Journey map", "Touchpoints before, during and after the purchase, by channel, and how many "
         "people went on to the next stage.",
         (*PERIOD, Field("channel", "Only people who used", hint="a channel, e.g. web, app, store, call_center",
                         extra='maxlength="64"')), _journey_map),
    Page("funnel", "Funnel", "Build a funnel from the events the channels sent: people at each step within the "
         "conversion window, in any channel.",
         (*PERIOD, *(Field(f"step{i}", f"Step {i}", "select", group="Steps") for i in range(1, MAX_STEPS + 1)),
          Field("window", "Conversion window", "number", default="14", extra='min="0.001" step="any"'),
          _select("unit", "Window unit", "day"), _select("order", "Step order", "ordered"),
          _select("breakdown", "Breakdown", "")), _funnel),
    Page("paths", "Channel paths", "How people move between channels (or events): a Sankey of their first moves.",
         (*PERIOD, _select("kind", "Moves", "channel"),
          Field("max_steps", "Moves shown", "number", default="4", extra='min="1" max="10"')), _paths),
    Page("retention", "Retention", "Customers by the month (or week) of their first purchase, and the share who "
         "bought again in each later one.",
         (*PERIOD, _select("cohort", "Cohort by", "month"),
          Field("periods", "Periods", "number", default="6", extra='min="1" max="24"'),
          Field("channel", "First purchase in", hint="a channel, e.g. web, store; empty: any",
                extra='maxlength="64"')), _retention),
    Page("attribution", "Attribution", "What each channel is worth: orders and revenue credited to each channel by "
         "first touch, last touch, linear, time decay, position based, Markov chain and Shapley value.",
         (*PERIOD, Field("lookback_days", "Lookback (days)", "number", default="30", extra='min="1" max="365"'),
          _select("markov_order", "Markov order", "1")), _attribution),
    Page("clv", "Customer lifetime value", "BG/NBD and Gamma-Gamma fitted on the orders of every channel: how many "
         "customers are worth how much.",
         (*PERIOD, Field("calibration_end", "Calibration end", "date", hint="orders up to this day fit the models; "
                         "empty: the last order's day"),
          Field("horizon_weeks", "Horizon (weeks)", "number", default="52", extra='min="1" max="520"')), _clv),
)}


# ---------------------------------------------------------------- charts kept for a minute

_cache: dict[tuple[Any, ...], tuple[float, list[Any]]] = {}
_cache_lock = threading.Lock()


def _charts(request: Request, page: Page, values: dict[str, str]) -> list[Any]:
    """The page's charts for these values: built, or kept from the last minute (the CSV export of what a page
    showed gives the same rows, at once)."""
    from omnijourney.analytics.api import request_tables

    key = (request.app.state.db.url, page.slug, tuple(sorted(values.items())))
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and now - hit[0] < CACHE_S:
            return hit[1]
    with request_tables(request) as tables:
        built = page.build(tables, values)
    with _cache_lock:
        for old in [k for k, (at, _) in _cache.items() if now - at >= CACHE_S]:
            del _cache[old]
        while len(_cache) >= CACHE_SIZE:
            del _cache[next(iter(_cache))]
        _cache[key] = (now, built)
    return built


def _values(request: Request, page: Page) -> dict[str, str]:
    values = {}
    for f in page.fields:
        values[f.name] = query(request, f.name) or f.default
    if page.slug == "funnel" and not any(values[f"step{i}"] for i in range(1, MAX_STEPS + 1)):
        from omnijourney.analytics.charts import DEFAULT_STEPS

        values.update({f"step{i + 1}": name for i, name in enumerate(DEFAULT_STEPS)})
    return values


def _field_of(exc: OmniError, page: Page) -> str:
    """The form's control that an analysis' error names (``steps[1].event`` is the control "Step 2")."""
    field = exc.field or "_"
    if field.startswith("steps[") and "]" in field:
        field = f"step{int(field[6:field.index(']')]) + 1}"
    field = {"window_unit": "unit"}.get(field, field)
    return field if field in {f.name for f in page.fields} else "_"


def _event_options(request: Request, values: dict[str, str]) -> list[tuple[str, str]]:
    """The events a funnel step may be: those tracked (the most frequent first), and the shop's defaults."""
    from omnijourney.analytics import queries
    from omnijourney.analytics.api import request_tables
    from omnijourney.analytics.charts import DEFAULT_STEPS
    from omnijourney.analytics.schemas import Period

    names: dict[str, str] = {}
    try:
        with request_tables(request) as tables:
            for row in queries.event_names(tables, Period()).head(200).itertuples():
                names[row.name] = f"{row.name} ({row.events:,})"
    except Invalid:  # no events yet: the defaults only
        pass
    for name in DEFAULT_STEPS:
        names.setdefault(name, name)
    for i in range(1, MAX_STEPS + 1):  # what the address asks for stays chosen, even if unknown (then refused)
        chosen = values.get(f"step{i}")
        if chosen:
            names.setdefault(chosen, chosen)
    return list(names.items())


def _show(request: Request, page: Page) -> Response:
    from omnijourney.analytics.charts import kpi_cards, table_html

    errors = Errors()
    values: dict[str, str] = {}
    built: list[Any] = []
    status = 200
    try:
        values = _values(request, page)
        built = _charts(request, page, values)
    except OmniError as exc:
        errors[_field_of(exc, page)] = exc.message
        status = exc.status
    params = {k: v for k, v in values.items() if v}
    figures = {c.key: json_block_figure(c.figure) for c in built if c.figure is not None}
    tables = {f"{c.key}.{t.name}": Markup(table_html(t, limit=TABLE_ROWS, table_id=f"{c.key}-{t.name}"))
              for c in built for t in c.tables}
    kpi = next((c for c in built if c.key == "kpis" and c.tables), None)
    events = _event_options(request, values) if page.slug == "funnel" else []
    groups: dict[str, list[dict[str, Any]]] = {}
    for f in page.fields:
        options = list(f.options)
        if f.name.startswith("step"):
            options = ([("", "— no step —")] if f.name not in ("step1", "step2") else []) + events
        groups.setdefault(f.group, []).append({"name": f.name, "label": f.label, "kind": f.kind, "hint": f.hint,
                                               "options": options, "value": values.get(f.name, f.default),
                                               "extra": f.extra})
    return render(request, "analytics.html", status=status, title=page.title, page=page, groups=groups,
                  errors=errors, charts=built, figures=figures, tables=tables, long_table=LONG_TABLE,
                  cards=kpi_cards(kpi.table("summary").frame) if kpi is not None else [],
                  csv=lambda table: csv_url(f"{PREFIX}/analytics/{page.csv_name}.csv", params, table))


def json_block_figure(figure: Any) -> Markup:
    """A Plotly figure as JSON for a ``<script type="application/json">`` block (console.js draws it)."""
    import orjson

    return json_block(orjson.loads(figure.to_json()))


@router.get("/analytics")
def dashboard_page(request: Request, _: Reader) -> Response:
    """The KPIs of the period as cards, and their trends per week (day, month), for all channels or each."""
    return _show(request, PAGES[""])


@router.get("/analytics/journey-map")
def journey_map_page(request: Request, _: Reader) -> Response:
    """Touchpoints per stage and channel, with the conversion to the next stage."""
    return _show(request, PAGES["journey-map"])


@router.get("/analytics/funnel")
def funnel_page(request: Request, _: Reader) -> Response:
    """A funnel built from the events tracked: steps, window, order, breakdown."""
    return _show(request, PAGES["funnel"])


@router.get("/analytics/paths")
def paths_page(request: Request, _: Reader) -> Response:
    """The channel (or event) Sankey."""
    return _show(request, PAGES["paths"])


@router.get("/analytics/retention")
def retention_page(request: Request, _: Reader) -> Response:
    """The retention heatmap of first-purchase cohorts."""
    return _show(request, PAGES["retention"])


@router.get("/analytics/attribution")
def attribution_page(request: Request, _: Reader) -> Response:
    """Every attribution model's credit per channel, side by side."""
    return _show(request, PAGES["attribution"])


@router.get("/analytics/clv")
def clv_page(request: Request, _: Reader) -> Response:
    """The distribution of customers' lifetime value, with the fitted models."""
    return _show(request, PAGES["clv"])


@router.get("/analytics/{name}.csv")
def csv_export(name: str, request: Request, _: Reader) -> Response:
    """One table of a page as CSV: the page's question in the address, ``table`` naming which (all its rows)."""
    page = next((p for p in PAGES.values() if p.csv_name == name), None)
    if page is None:
        raise NotFound(f"no analytics page {name[:40]!r}", field="name")
    wanted = query(request, "table", max_len=64)
    values = _values(request, page)
    built = _charts(request, page, values)
    found = [t for c in built for t in c.tables if t.name == wanted]
    if not found:
        missing = "; ".join(c.missing for c in built if c.missing)
        names = [t.name for c in built for t in c.tables]
        if not names and missing:
            raise NotFound(f"nothing to export: {missing}", field="table")
        raise Invalid(f"no table {wanted!r} on this page: one of {', '.join(names)}", field="table")
    filename = f"omnijourney-{page.csv_name}-{wanted}.csv"
    return Response(found[0].csv(), media_type="text/csv; charset=utf-8",
                    headers={**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'})


def csv_url(base: str, params: dict[str, str], table: str) -> str:
    """The address of one table's CSV for the question ``params``."""
    return f"{base}?{urlencode({**params, 'table': table})}"
