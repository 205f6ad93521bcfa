"""``/api/v1/analytics``: what an analyst can ask (scope ``analytics:read``; forcing a sync ``analytics:write``).

A thin router: each route opens the configured backend (``analytics.tables.open_tables``) and returns the table of
the function it calls as a list of rows. A bad question is a 422 naming the field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from omnijourney.analytics.schemas import FunnelQuery, Period
from omnijourney.api.deps import require
from omnijourney.auth.service import Principal

if TYPE_CHECKING:
    import pandas as pd

router = APIRouter(prefix="/analytics", tags=["analytics"])
Reader = Annotated[Principal, Depends(require("analytics:read"))]
Since = Annotated[datetime | None, Query(description="inclusive; ISO 8601")]
Until = Annotated[datetime | None, Query(description="exclusive; ISO 8601")]


class Table(BaseModel):
    """Rows of a result table (column names as keys)."""

    rows: list[dict[str, Any]]


class JourneyMap(BaseModel):
    stages: list[dict[str, Any]]
    touchpoints: list[dict[str, Any]]


def rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    """A DataFrame as JSON-ready rows (NaN as null, times in ISO 8601)."""
    return json.loads(df.to_json(orient="records", date_format="iso"))


@contextmanager
def request_tables(request: Request) -> Iterator[Any]:
    """The app's analytics tables for one request (the API's and the console's pages'), starting the sync chain
    on the first request if start-up found nothing to sync."""
    from omnijourney.analytics.tables import open_tables

    state = request.app.state
    if not getattr(state, "analytics_scheduled", False):  # the sync chain, if start-up found nothing to sync
        from omnijourney.analytics.jobs import schedule

        schedule(state.db, state.settings, only_with_events=False)
        state.analytics_scheduled = True
    with open_tables(state.db, state.settings.analytics) as tables:
        yield tables


@router.post("/funnels", response_model=Table)
def funnel(request: Request, _: Reader, body: FunnelQuery) -> Table:
    """A funnel: people, conversion and time per step and breakdown value (see docs/analytics.md)."""
    from omnijourney.analytics import funnels

    with request_tables(request) as t:
        return Table(rows=rows(funnels.funnel(t, body)))


@router.post("/funnels/time-to-convert", response_model=Table)
def time_to_convert(request: Request, _: Reader, body: FunnelQuery, from_step: int = 0, to_step: int | None = None,
                    bins: Annotated[int, Query(ge=1, le=200)] = 10) -> Table:
    """The time-to-convert histogram between two steps of a funnel."""
    from omnijourney.analytics import funnels

    with request_tables(request) as t:
        return Table(rows=rows(funnels.time_to_convert(t, body, from_step=from_step, to_step=to_step, bins=bins)))


@router.post("/funnels/people", response_model=Table)
def funnel_people(request: Request, _: Reader, body: FunnelQuery, step: int,
                  dropped: bool = True, limit: Annotated[int, Query(ge=1, le=100_000)] = 1000) -> Table:
    """The people who reached ``step`` and dropped off there (or, ``dropped=false``, all who reached it)."""
    from omnijourney.analytics import funnels

    with request_tables(request) as t:
        return Table(rows=rows(funnels.people(t, body, step=step, dropped=dropped, limit=limit)))


@router.get("/journey-map", response_model=JourneyMap)
def journey_map(request: Request, _: Reader, since: Since = None, until: Until = None,
                channel: str | None = None) -> JourneyMap:
    """Touchpoints before, during and after the purchase: volumes, channels, conversion to the next stage."""
    from omnijourney.analytics import queries

    with request_tables(request) as t:
        stages, touch = queries.journey_map(t, Period(since=since, until=until), channel=channel)
    return JourneyMap(stages=rows(stages), touchpoints=rows(touch))


@router.get("/lifecycle", response_model=Table)
def lifecycle(request: Request, _: Reader, since: Since = None, until: Until = None,
              interval: Literal["day", "week", "month"] = "week", channel: str | None = None) -> Table:
    """New, returning, resurrecting and dormant people per interval (optionally in one channel)."""
    from omnijourney.analytics import queries

    with request_tables(request) as t:
        return Table(rows=rows(queries.lifecycle(t, Period(since=since, until=until), interval=interval,
                                                 channel=channel)))


@router.get("/stickiness", response_model=Table)
def stickiness(request: Request, _: Reader, since: Since = None, until: Until = None,
               interval: Literal["day", "week", "month"] = "day") -> Table:
    """Per channel: people by the number of intervals they were active in."""
    from omnijourney.analytics import queries

    with request_tables(request) as t:
        return Table(rows=rows(queries.stickiness(t, Period(since=since, until=until), interval=interval)))


@router.get("/paths", response_model=Table)
def paths(request: Request, _: Reader, since: Since = None, until: Until = None,
          kind: Literal["channel", "event"] = "channel", start: str | None = None, end: str | None = None,
          max_steps: Annotated[int, Query(ge=1, le=20)] = 5) -> Table:
    """Channel-to-channel or step-to-step transitions (a Sankey's links), from or to a chosen event."""
    from omnijourney.analytics import queries

    with request_tables(request) as t:
        return Table(rows=rows(queries.paths(t, Period(since=since, until=until), kind=kind, start=start, end=end,
                                             max_steps=max_steps)))


@router.get("/retention", response_model=Table)
def retention(request: Request, _: Reader, since: Since = None, until: Until = None,
              cohort: Literal["week", "month"] = "month", periods: Annotated[int, Query(ge=1, le=60)] = 6,
              channel: str | None = None) -> Table:
    """Cohorts by first purchase (week or month, optionally of one channel) and the share buying again."""
    from omnijourney.analytics import queries

    with request_tables(request) as t:
        return Table(rows=rows(queries.retention(t, Period(since=since, until=until), cohort=cohort,
                                                 periods=periods, channel=channel)))


@router.get("/repeat-purchase", response_model=Table)
def repeat_purchase(request: Request, _: Reader, since: Since = None, until: Until = None) -> Table:
    """The share of buyers in the period who bought more than once, overall and per channel."""
    from omnijourney.analytics import queries

    with request_tables(request) as t:
        return Table(rows=rows(queries.repeat_purchase(t, Period(since=since, until=until))))


@router.get("/kpis", response_model=Table)
def kpis(request: Request, _: Reader, since: Since = None, until: Until = None,
         kpi: Annotated[list[str] | None, Query(description="repeat for several; default all")] = None,
         interval: Literal["day", "week", "month", "period"] = "period", by_channel: bool = False,
         lookback_days: float = 30.0) -> Table:
    """KPIs per bucket and channel; a KPI without data says why (``status``, ``reason``)."""
    from omnijourney.analytics import kpis as k

    with request_tables(request) as t:
        return Table(rows=rows(k.kpis(t, Period(since=since, until=until), names=kpi, interval=interval,
                                      by_channel=by_channel, lookback_days=lookback_days)))


@router.get("/attribution")
def attribution(request: Request, _: Reader, since: Since = None, until: Until = None,
                lookback_days: Annotated[float, Query(gt=0, le=365, description="days before the conversion a "
                                                                                "touch may be")] = 30.0,
                order: Annotated[int, Query(ge=1, le=4, description="the Markov chain's order")] = 1,
                by: Annotated[Literal["channel", "campaign"], Query(description="credit channels or campaigns")]
                = "channel") -> dict[str, Any]:
    """Conversions and revenue credited to each channel (or campaign) by every model: first and last touch, linear,
    time decay, position based, Markov chain (removal effect) and Shapley value, over the platform's journeys."""
    from omnijourney.analytics import journeys

    with request_tables(request) as t:
        return finite(journeys.attribution(t, Period(since=since, until=until), lookback_days=lookback_days,
                                           order=order, by=by))


CalibrationEnd = Annotated[date, Query(description="the last day of the orders the models are fitted on")]
HoldoutEnd = Annotated[date | None, Query(description="the last day of the holdout: predicted against actual "
                                                      "purchases after calibration_end")]
Unit = Annotated[Literal["days", "weeks"], Query(description="the models' time unit")]
Horizon = Annotated[float | None, Query(gt=0, description="CLV horizon in units [default: a year]")]
Discount = Annotated[float, Query(gt=-1, le=10, description="annual discount rate of the CLV")]


@router.get("/clv")
def clv(request: Request, _: Reader, calibration_end: CalibrationEnd, holdout_end: HoldoutEnd = None,
        since: Since = None, until: Until = None, unit: Unit = "weeks", horizon: Horizon = None,
        annual_discount_rate: Discount = 0.1) -> dict[str, Any]:
    """BG/NBD and Gamma-Gamma fitted on the orders of every channel: parameters, log-likelihoods, the
    calibration/holdout check (with ``holdout_end``), expected purchases and CLV in total and per segment (the
    channel of each customer's first order)."""
    from omnijourney.analytics import journeys

    with request_tables(request) as t:
        return finite(journeys.clv(t, Period(since=since, until=until), calibration_end=calibration_end,
                                   holdout_end=holdout_end, unit=unit, horizon=horizon,
                                   annual_discount_rate=annual_discount_rate))


@router.get("/clv/customers", response_model=Table)
def clv_customers(request: Request, _: Reader, calibration_end: CalibrationEnd, holdout_end: HoldoutEnd = None,
                  since: Since = None, until: Until = None, unit: Unit = "weeks", horizon: Horizon = None,
                  annual_discount_rate: Discount = 0.1, segment: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=100_000)] = 1000) -> Table:
    """Per customer, the most valuable first: the calibration summary, purchases in the holdout, expected purchases,
    P(alive), expected spend and CLV (the same fit as ``/clv``); optionally of one segment."""
    from omnijourney.analytics import journeys

    with request_tables(request) as t:
        return Table(rows=rows(journeys.clv_customers(
            t, Period(since=since, until=until), calibration_end=calibration_end, holdout_end=holdout_end, unit=unit,
            horizon=horizon, annual_discount_rate=annual_discount_rate, segment=segment, limit=limit)))


def finite(value: Any) -> Any:
    """``value`` with every figure no JSON number can be (NaN, infinity: a degenerate fit) as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


@router.get("/sync")
def sync_status(request: Request, _: Reader) -> dict[str, Any]:
    """Where the DuckDB store is: events held, feed position, last sync, backlog. 409 no_analytics_store when
    analytics run on the application database (PostgreSQL)."""
    return _sync(request, run=False)


@router.post("/sync")
def sync_now(request: Request, _: Annotated[Principal, Depends(require("analytics:write"))]) -> dict[str, Any]:
    """Copy what the feed has now (the background job does it every few seconds anyway). 409 no_analytics_store
    when analytics run on the application database (PostgreSQL)."""
    return _sync(request, run=True)


def _sync(request: Request, *, run: bool) -> dict[str, Any]:
    from omnijourney.analytics import sync
    from omnijourney.analytics.settings import effective_backend
    from omnijourney.analytics.store import default_path, open_store
    from omnijourney.core.errors import Conflict

    state = request.app.state
    settings = state.settings.analytics
    if effective_backend(settings, state.db.dialect) != "duckdb":
        raise Conflict("analytics run on the application database: there is no store to sync",
                       field="analytics.backend", code="no_analytics_store")
    store = open_store(default_path(state.db.url, settings))
    out: dict[str, Any] = {}
    if run:
        result = sync.sync(state.db, store, batch_pages=settings.batch_pages)
        out["copied"] = {"events": result.events, "merges": result.merges}
    status = sync.status(store)
    status["backlog"] = sync.backlog(state.db, store)
    return json.loads(json.dumps(out | status, default=str))
