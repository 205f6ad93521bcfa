"""``omni analytics ...``: the engine's commands (sync, funnel, journey map, KPIs, ...), added to the sub-app of
``omnijourney.analytics.cli`` (which holds the CSV model commands). Each prints a Rich table, or JSON with ``--json``;
a bad question is one line naming the option (exit 1), as every ``omni`` error.

Importing this module is cheap: Ibis, DuckDB and pandas load inside the commands.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table as RichTable

try:  # the sub-app `omni analytics` (registered by omnijourney.cli)
    from omnijourney.analytics.cli import app
except ImportError:  # pragma: no cover - only while the models' module is absent
    app = typer.Typer(no_args_is_help=True, help="Analytics: measure the journey.")

if TYPE_CHECKING:
    import pandas as pd

    from omnijourney.analytics.tables import Tables
    from omnijourney.db import Database

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

Since = Annotated[datetime | None, typer.Option(help="from (inclusive), e.g. 2026-03-01", show_default=False)]
Until = Annotated[datetime | None, typer.Option(help="to (exclusive)", show_default=False)]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def _database() -> Database:
    from omnijourney.cli import use_database
    from omnijourney.config import get_settings
    from omnijourney.db import Database

    use_database()
    return Database(get_settings().database_url)


@contextmanager
def _tables() -> Iterator[Tables]:
    from omnijourney.analytics.tables import open_tables
    from omnijourney.config import get_settings
    from omnijourney.core.errors import Invalid

    db = _database()
    settings = get_settings().analytics
    try:
        with open_tables(db, settings) as tables:
            yield tables
    except Invalid as exc:  # one line that names what to change
        raise Invalid(f"{_option(exc.field)}: {exc.message}" if exc.field else exc.message, field=exc.field) from None
    finally:
        db.dispose()


def _option(field: str) -> str:
    """An API field as the CLI's option: window -> --window, steps[1].event -> step 1 (its event)."""
    if field.startswith("steps[") and "]" in field:
        return f"step {field[6:field.index(']')]}"
    return "--" + field.split(".")[0].split("[")[0].replace("_", "-")


def _period(since: datetime | None, until: datetime | None) -> Any:
    from datetime import UTC

    from omnijourney.analytics.schemas import Period

    def utc(v: datetime | None) -> datetime | None:
        return None if v is None else (v.replace(tzinfo=UTC) if v.tzinfo is None else v)

    return Period(since=utc(since), until=utc(until))


def _show(df: pd.DataFrame, as_json: bool, title: str | None = None) -> None:
    if as_json:
        print(df.to_json(orient="records", date_format="iso", indent=2))
        return
    table = RichTable(title=title, show_lines=False)
    for col in df.columns:
        numeric = df[col].dtype.kind in "iuf"
        table.add_column(str(col), justify="right" if numeric else "left")
    for row in df.itertuples(index=False):
        table.add_row(*("" if _missing(v) else _fmt(v) for v in row))
    console.print(table)


def _missing(v: Any) -> bool:
    try:
        return v is None or v != v  # NaN
    except (TypeError, ValueError):
        return False


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.4f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v)


@app.command("sync")
def sync_command(
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress bar")] = False,
) -> None:
    """Copy what the event feed has into the DuckDB analytics store now (the background job of `omni serve` does it
    every few seconds), with a progress bar. Fails in one line while another process (omni serve) holds the
    store: its job keeps the store current, or ask it through POST /api/v1/analytics/sync."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from omnijourney.analytics import sync
    from omnijourney.analytics.settings import effective_backend
    from omnijourney.analytics.store import close_store, default_path, open_store
    from omnijourney.config import get_settings
    from omnijourney.core.errors import Invalid

    db = _database()
    settings = get_settings().analytics
    if effective_backend(settings, db.dialect) != "duckdb":
        raise Invalid("analytics read the application database (PostgreSQL; OMNI_ANALYTICS__BACKEND): nothing to sync",
                      field="analytics.backend")
    path = default_path(db.url, settings)
    store = open_store(path)
    try:
        todo = sync.backlog(db, store)
        with Progress(TextColumn("syncing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                      disable=quiet) as bar:
            task = bar.add_task("events", total=max(todo, 1))
            result = sync.sync(db, store, batch_pages=settings.batch_pages,
                               progress=lambda n: bar.advance(task, n))
            bar.update(task, completed=max(todo, result.events, 1))
        status = sync.status(store)
    finally:
        close_store(path)
        db.dispose()
    err.print(f"{result.events:,} events and {result.merges:,} merges copied to {path}; the store holds "
              f"{status['events']:,} events", highlight=False)


@app.command("status")
def status_command(as_json: AsJson = False) -> None:
    """Where the DuckDB analytics store is: events held, feed position, last sync, backlog."""
    from omnijourney.analytics import sync
    from omnijourney.analytics.settings import effective_backend
    from omnijourney.analytics.store import close_store, default_path, open_store
    from omnijourney.config import get_settings
    from omnijourney.core.errors import Invalid

    db = _database()
    if effective_backend(get_settings().analytics, db.dialect) != "duckdb":
        raise Invalid("analytics read the application database (PostgreSQL; OMNI_ANALYTICS__BACKEND): no store",
                      field="analytics.backend")
    path = default_path(db.url, get_settings().analytics)
    store = open_store(path)
    try:
        out = sync.status(store) | {"backlog": sync.backlog(db, store)}
    finally:
        close_store(path)
        db.dispose()
    print(json.dumps(out, default=str, indent=2 if as_json else None))


def _funnel_query(steps: list[str], spec: Path | None, **kw: Any) -> Any:
    from omnijourney.analytics.schemas import FunnelQuery
    from omnijourney.core.errors import Invalid

    if spec is not None:
        try:
            body = json.loads(spec.read_text())
        except (OSError, ValueError) as exc:
            raise Invalid(f"--spec {spec}: {exc}", field="spec") from None
        return FunnelQuery(**body)
    body: dict[str, Any] = {"steps": []}
    where: dict[int, list[dict[str, Any]]] = {}
    for i, w in enumerate(kw.pop("where") or []):
        try:
            step, cond = w.split(":", 1)
            key, value = cond.split("=", 1)
            where.setdefault(int(step), []).append({"key": key, "value": _value(value)})
        except ValueError:
            raise Invalid(f"--where {w!r}: write STEP:KEY=VALUE, e.g. 0:sku=TEE-M", field=f"where[{i}]") from None
    channels: dict[int, list[str]] = {}
    for i, c in enumerate(kw.pop("step_channel") or []):
        try:
            step, chans = c.split(":", 1)
            channels[int(step)] = chans.split(",")
        except ValueError:
            raise Invalid(f"--step-channel {c!r}: write STEP:CHANNEL[,CHANNEL], e.g. 2:store",
                          field=f"step_channel[{i}]") from None
    optional = set(kw.pop("optional") or [])
    for i, name in enumerate(steps):
        body["steps"].append({"event": name, "filters": where.get(i, []), "channels": channels.get(i),
                              "optional": i in optional})
    body["exclusions"] = [{"event": x} for x in kw.pop("exclude") or []]
    body.update({k: v for k, v in kw.items() if v is not None})
    return FunnelQuery(**body)


def _value(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


@app.command("funnel")
def funnel_command(
    steps: Annotated[list[str] | None, typer.Argument(help="the steps' events, in order", show_default=False)] = None,
    window: Annotated[float, typer.Option(help="the conversion window")] = 14,
    unit: Annotated[str, typer.Option(help="minute, hour, day, week or month")] = "day",
    order: Annotated[str, typer.Option(help="ordered, strict or unordered")] = "ordered",
    breakdown: Annotated[str | None, typer.Option(help="channel, store, channel_mix or property:KEY")] = None,
    attribution: Annotated[str, typer.Option(help="first_touch, last_touch or step")] = "first_touch",
    attribution_step: Annotated[int | None, typer.Option(help="with --attribution step")] = None,
    reference: Annotated[str, typer.Option(help="conversion against the first or the previous step")] = "first",
    where: Annotated[list[str] | None, typer.Option(help="STEP:KEY=VALUE, a property filter (repeat)")] = None,
    step_channel: Annotated[list[str] | None, typer.Option(help="STEP:CHANNEL[,..] (a step in a store, a call)")]
    = None,
    optional: Annotated[list[int] | None, typer.Option(help="an optional step's number (repeat)")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="drop people who did this between the steps")] = None,
    time_to_convert: Annotated[bool, typer.Option("--time-to-convert", help="the histogram instead")] = False,
    dropped: Annotated[int | None, typer.Option(help="list the people who dropped off after this step")] = None,
    spec: Annotated[Path | None, typer.Option(help="a JSON file: the body of POST /api/v1/analytics/funnels")] = None,
    since: Since = None, until: Until = None, as_json: AsJson = False,
) -> None:
    """A funnel, as PostHog's: e.g. omni analytics funnel "Product Viewed" "Product Added" "Order Completed"
    --window 7 --breakdown channel. Steps are numbered from 0."""
    from omnijourney.analytics import funnels

    p = _period(since, until)
    q = _funnel_query(steps or [], spec, window=window, window_unit=unit, order=order, breakdown=breakdown,
                      attribution=attribution, attribution_step=attribution_step, reference=reference, where=where,
                      step_channel=step_channel, optional=optional, exclude=exclude, since=p.since, until=p.until)
    with _tables() as t:
        if time_to_convert:
            _show(funnels.time_to_convert(t, q), as_json, "time to convert")
        elif dropped is not None:
            _show(funnels.people(t, q, step=dropped), as_json, f"dropped off after step {dropped}")
        else:
            df = funnels.funnel(t, q)
            if not as_json:  # what a terminal has room for
                df = df.drop(columns=[c for c in ("label", "optional", "avg_seconds") if c in df.columns])
                if q.breakdown is None:
                    df = df.drop(columns="breakdown")
            _show(df, as_json, "funnel")


@app.command("journey-map")
def journey_map_command(since: Since = None, until: Until = None,
                        channel: Annotated[str | None, typer.Option(help="people who used this channel")] = None,
                        as_json: AsJson = False) -> None:
    """Touchpoints before, during and after the purchase: volumes, channels, conversion to the next stage."""
    from omnijourney.analytics import queries

    with _tables() as t:
        stages, touch = queries.journey_map(t, _period(since, until), channel=channel)
    if as_json:
        print(json.dumps({"stages": json.loads(stages.to_json(orient="records")),
                          "touchpoints": json.loads(touch.to_json(orient="records"))}, indent=2))
        return
    _show(stages, False, "journey stages")
    _show(touch, False, "touchpoints")


@app.command("lifecycle")
def lifecycle_command(since: Since = None, until: Until = None,
                      interval: Annotated[str, typer.Option(help="day, week or month")] = "week",
                      channel: Annotated[str | None, typer.Option(help="activity in this channel only")] = None,
                      as_json: AsJson = False) -> None:
    """New, returning, resurrecting and dormant people per interval."""
    from omnijourney.analytics import queries

    with _tables() as t:
        _show(queries.lifecycle(t, _period(since, until), interval=interval, channel=channel),
              as_json, "lifecycle")


@app.command("stickiness")
def stickiness_command(since: Since = None, until: Until = None,
                       interval: Annotated[str, typer.Option(help="day, week or month")] = "day",
                       as_json: AsJson = False) -> None:
    """Per channel: people by the number of days (weeks) they were active."""
    from omnijourney.analytics import queries

    with _tables() as t:
        _show(queries.stickiness(t, _period(since, until), interval=interval), as_json, "stickiness")


@app.command("paths")
def paths_command(since: Since = None, until: Until = None,
                  kind: Annotated[str, typer.Option(help="channel or event")] = "channel",
                  start: Annotated[str | None, typer.Option(help="from this event on")] = None,
                  end: Annotated[str | None, typer.Option(help="up to this event")] = None,
                  max_steps: Annotated[int, typer.Option(help="levels of the Sankey")] = 5,
                  as_json: AsJson = False) -> None:
    """Channel-to-channel (or event-to-event) transitions: the links of a Sankey."""
    from omnijourney.analytics import queries

    with _tables() as t:
        _show(queries.paths(t, _period(since, until), kind=kind, start=start, end=end,
                            max_steps=max_steps), as_json, "paths")


@app.command("retention")
def retention_command(since: Since = None, until: Until = None,
                      cohort: Annotated[str, typer.Option(help="week or month of the first purchase")] = "month",
                      periods: Annotated[int, typer.Option(help="periods after the first purchase")] = 6,
                      channel: Annotated[str | None, typer.Option(help="first purchase in this channel")] = None,
                      as_json: AsJson = False) -> None:
    """Retention cohorts by first purchase: who bought again in each later period."""
    from omnijourney.analytics import queries

    with _tables() as t:
        _show(queries.retention(t, _period(since, until), cohort=cohort, periods=periods,
                                channel=channel), as_json, "retention")


@app.command("repeat")
def repeat_command(since: Since = None, until: Until = None, as_json: AsJson = False) -> None:
    """The share of buyers who bought more than once in the period, overall and per channel."""
    from omnijourney.analytics import queries

    with _tables() as t:
        _show(queries.repeat_purchase(t, _period(since, until)), as_json, "repeat purchases")


@app.command("kpis")
def kpis_command(since: Since = None, until: Until = None,
                 kpi: Annotated[list[str] | None, typer.Option(help="a KPI's name (repeat); default all")] = None,
                 interval: Annotated[str, typer.Option(help="day, week, month or period")] = "period",
                 by_channel: Annotated[bool, typer.Option("--by-channel", help="one row per channel")] = False,
                 as_json: AsJson = False) -> None:
    """KPIs (each defined in docs/analytics.md); one without data says why."""
    from omnijourney.analytics import kpis

    with _tables() as t:
        df = kpis.kpis(t, _period(since, until), names=kpi, interval=interval, by_channel=by_channel)
    if not as_json:
        df = df.drop(columns=["numerator", "denominator"])
    _show(df, as_json, "KPIs")


@app.command("journeys")
def journeys_command(
    out: Annotated[Path, typer.Option("--csv", help="write the paths CSV that `omni analytics attribution "
                                                    "--paths` reads")],
    since: Since = None, until: Until = None,
) -> None:
    """Export the platform's journeys (channel paths ending in an order or a null) as a paths CSV."""
    from omnijourney.analytics import journeys

    with _tables() as t:
        table = journeys.paths_table(journeys.touches(t, _period(since, until)))
    table.to_csv(out, index=False)
    err.print(f"{len(table):,} paths written to {out}", highlight=False)


@app.command("orders")
def orders_command(
    out: Annotated[Path, typer.Option("--csv", help="write the orders CSV that `omni analytics clv --orders` reads")],
    since: Since = None, until: Until = None,
) -> None:
    """Export the platform's orders from every channel (customer_id, timestamp, amount) for the CLV models."""
    from omnijourney.analytics import journeys

    with _tables() as t:
        df = journeys.orders(t, _period(since, until))
    df.rename(columns={"day": "timestamp"})[["customer_id", "timestamp", "amount"]].to_csv(out, index=False)
    err.print(f"{len(df):,} orders written to {out}", highlight=False)


@app.command("report")
def report_command(
    out: Annotated[Path, typer.Option("--out", help="the HTML file to write", show_default=False)],
    since: Since = None, until: Until = None,
    step: Annotated[list[str] | None, typer.Option(help="a funnel step's event (repeat, in order) [default: Product "
                                                        "Viewed, Product Added, Order Completed]",
                                                   show_default=False)] = None,
    window: Annotated[float, typer.Option(help="the funnel's conversion window")] = 14,
    unit: Annotated[str, typer.Option(help="the window's unit: minute, hour, day, week or month")] = "day",
    breakdown: Annotated[str | None, typer.Option(help="the funnel's breakdown: channel, store, channel_mix or "
                                                       "property:KEY")] = None,
    interval: Annotated[str, typer.Option(help="KPI trends per day, week or month")] = "week",
    by_channel: Annotated[bool, typer.Option("--by-channel", help="KPI trends per channel")] = False,
    cohort: Annotated[str, typer.Option(help="retention cohorts by week or month of the first purchase")] = "month",
    lookback_days: Annotated[float, typer.Option(help="attribution: touches this many days before an order")] = 30,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress bar")] = False,
) -> None:
    """One self-contained HTML file (Plotly inlined, no network needed to open it) with the journey's charts: KPI
    trends, journey map, funnel, channel Sankey, retention heatmap, attribution comparison and CLV distribution,
    each with the table behind it; a chart without data says why."""
    from datetime import UTC
    from datetime import datetime as dt

    from pydantic import ValidationError
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from omnijourney.analytics import charts, common, report
    from omnijourney.core.errors import Invalid

    if interval not in ("day", "week", "month"):
        raise Invalid(f"--interval {interval!r}: day, week or month", field="interval")
    if cohort not in ("week", "month"):
        raise Invalid(f"--cohort {cohort!r}: week or month", field="cohort")
    if not 0 < lookback_days <= 365:
        raise Invalid("--lookback-days: more than 0 and at most 365", field="lookback_days")
    period = _period(since, until)
    q = charts.ReportQuestion(period=period, steps=tuple(step) if step else charts.DEFAULT_STEPS, window=window,
                              window_unit=unit, breakdown=breakdown, interval=interval, by_channel=by_channel,
                              cohort=cohort, lookback_days=lookback_days)  # type: ignore[arg-type]
    try:
        q.funnel()  # the funnel's options checked before the queries run
    except ValidationError as exc:
        where = exc.errors()[0]["loc"][0]
        raise Invalid(f"{'--unit' if where == 'window_unit' else '--' + str(where)}: {exc.errors()[0]['msg']}",
                      field=str(where)) from None
    with _tables() as t, Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=err, disable=quiet, transient=False) as bar:
        events = t.events()
        for i, name in enumerate(q.steps):  # a misspelt step fails now, not after the charts before the funnel
            common.event_name(t, events, name, f"steps[{i}].event")
        task = bar.add_task("building charts", total=charts.REPORT_CHARTS)
        built = charts.report_charts(t, q, progress=lambda title: bar.update(task, advance=1, description=title))
        backend = t.backend
    html = report.render(built, period=period, backend=backend, generated_at=dt.now(UTC))
    try:
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise Invalid(f"--out {out}: cannot write ({exc.strerror})", field="out") from None
    empty = [c.title for c in built if c.missing]
    err.print(f"{out}: {len(built) - len(empty)} of {len(built)} charts, {len(html) / 1e6:.1f} MB"
              + (f"; without data (each says why): {', '.join(empty)}" if empty else ""), highlight=False)
