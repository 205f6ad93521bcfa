"""``omni analytics ...``: the attribution and CLV models on CSV files from any system.

This module holds the sub-app ``app`` and the two model commands; the engine's commands (sync, funnels, ...)
are added to ``app`` by another module. Importing it is cheap: numpy and the models load inside the commands.

Bad input (a missing file or column, a malformed CSV, a value that is not a number or a date, an empty file, a
calibration end outside the data) is one line on stderr naming the line and column, and exit code 1.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

app = typer.Typer(no_args_is_help=True, help="Analytics: measure the journey; attribution and CLV models on CSV files.")
err = Console(stderr=True, soft_wrap=True)


class BadInput(Exception):
    """A problem with the user's input, said in one line."""


def _fail(message: str) -> NoReturn:
    err.print(Text.assemble(("error: ", "red"), message), highlight=False)
    raise typer.Exit(1)


def _print_json(result: dict) -> None:
    """JSON on stdout; a figure no float can be (NaN, infinity, from a degenerate fit) is printed as null."""

    def clean(v: Any) -> Any:
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    print(json.dumps(clean(result), indent=2))


def _number(text: str, where: str, *, empty_is_zero: bool = False) -> float:
    text = text.strip()
    if not text and empty_is_zero:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise BadInput(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise BadInput(f"{where}: {text!r} is not a finite number")
    if value < 0:
        raise BadInput(f"{where}: {text!r} is negative")
    return value


def _rows(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> Iterator[tuple[int, dict]]:
    """(line number, {column: text}) for each data row; the header checked first. Raises BadInput."""
    if not path.exists():
        raise BadInput(f"{path}: no such file")
    if path.is_dir():
        raise BadInput(f"{path}: is a folder, not a CSV file")
    try:
        f = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise BadInput(f"{path}: cannot be read ({exc.strerror})") from None
    with f:
        reader = csv.reader(f, strict=True)
        try:
            header = next(reader, None)
            if header is None or not any(h.strip() for h in header):
                raise BadInput(f"{path} is empty: the first line must name the columns ({', '.join(required)})")
            names = [h.strip() for h in header]
            missing = [c for c in required if c not in names]
            if missing:
                raise BadInput(f"{path} line 1: missing column {', '.join(missing)} (the header has "
                               f"{', '.join(names)}; needed: {', '.join(required)})")
            dupes = sorted({n for n in names if names.count(n) > 1 and n in required + optional})
            if dupes:
                raise BadInput(f"{path} line 1: column {', '.join(dupes)} appears twice")
            index = {c: names.index(c) for c in required + optional if c in names}
            seen = 0
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                if len(row) != len(names):
                    raise BadInput(f"{path} line {line}: {len(row)} fields, the header has {len(names)}")
                seen += 1
                yield line, {c: row[i] for c, i in index.items()}
            if not seen:
                raise BadInput(f"{path} has a header but no rows")
        except csv.Error as exc:
            raise BadInput(f"{path} line {reader.line_num}: malformed CSV ({exc})") from None
        except UnicodeDecodeError:
            raise BadInput(f"{path}: not UTF-8 text") from None


# -- attribution -----------------------------------------------------------------------------------------------

_ATTRIBUTION_HELP = (
    "Attribute conversions and value to channels with every model: first touch, last touch, linear, time decay, "
    "position based, Markov chain (removal effect, exact) and Shapley value. Prints JSON.\n\n"
    "The CSV has the columns path (channels in time order joined by ' > '), conversions, and optionally value "
    "(revenue of those conversions), nulls (journeys on that path that did not convert) and days_before (for each "
    "touch, the days before the conversion, joined by ' > ': needed by time decay and --lookback-days). A row is "
    "one journey or many identical ones; other columns are ignored.\n\n"
    "Without --paths: the platform's own journeys (each order ends one; the touches since the person's previous "
    "order, from every channel), per channel or --by campaign, over --since/--until, with a 30-day lookback unless "
    "--lookback-days says otherwise."
)


class By(StrEnum):
    channel = "channel"
    campaign = "campaign"


@app.command("attribution", help=_ATTRIBUTION_HELP)
def attribution_command(
    paths: Annotated[Path | None, typer.Option("--paths", metavar="FILE.csv", help="journeys: path, conversions, "
                                                "... [default: the platform's own journeys]", show_default=False)]
    = None,
    lookback_days: Annotated[float | None, typer.Option(help="drop touches older than this many days before the "
                                                             "conversion (a file needs days_before) [default: none "
                                                             "for a file, 30 for the platform's journeys]",
                                                        show_default=False)] = None,
    order: Annotated[int, typer.Option(min=1, max=10, help="Markov chain order (states of k channels)")] = 1,
    half_life_days: Annotated[float, typer.Option(help="time decay: a touch this much older counts half")] = 7.0,
    position: Annotated[str, typer.Option(help="position based: first,last shares (the middle gets the rest)")]
    = "0.4,0.4",
    by: Annotated[By, typer.Option(help="the platform's journeys: credit channels or campaigns")] = By.channel,
    since: Annotated[datetime | None, typer.Option(help="the platform's journeys: from (inclusive), e.g. "
                                                        "2026-03-01", show_default=False)] = None,
    until: Annotated[datetime | None, typer.Option(help="the platform's journeys: to (exclusive)",
                                                   show_default=False)] = None,
) -> None:
    """See ``_ATTRIBUTION_HELP``."""
    try:
        first_last = tuple(float(p) for p in position.split(","))
        if len(first_last) != 2 or min(first_last) < 0 or sum(first_last) > 1:
            raise ValueError
    except ValueError:
        _fail(f"--position {position!r}: two shares 'first,last', each >= 0, adding up to at most 1")
    if lookback_days is not None and not lookback_days > 0:
        _fail("--lookback-days must be more than 0")
    if not half_life_days > 0:
        _fail("--half-life-days must be more than 0")
    if paths is None:
        _print_json(_own_attribution(since, until, lookback_days=30.0 if lookback_days is None else lookback_days,
                                     order=order, half_life_days=half_life_days,
                                     position=(first_last[0], first_last[1]), by=by.value))
        return
    _only_own(since=since, until=until, by=None if by is By.channel else by, file="--paths")
    try:
        journeys = read_paths(paths)
    except BadInput as exc:
        _fail(str(exc))
    if lookback_days is not None and journeys.ages is None:
        _fail(f"--lookback-days needs touch times: {paths} has no days_before column")
    from omnijourney.analytics.attribution import attribute_all
    from omnijourney.core.errors import OmniError

    try:
        result = attribute_all(journeys, lookback_days=lookback_days, order=order, half_life_days=half_life_days,
                               position=(first_last[0], first_last[1]))
    except OmniError as exc:
        _fail(exc.message)
    _print_json(result)


def _own_attribution(since: datetime | None, until: datetime | None, **kw: Any) -> dict[str, Any]:
    """Every model on the platform's journeys (``analytics.journeys.attribution``); a bad option is one line."""
    from omnijourney.analytics import journeys
    from omnijourney.analytics.commands import _period, _tables

    with _tables() as t:
        return journeys.attribution(t, _period(since, until), **kw)


def _only_own(*, file: str, **options: Any) -> None:
    """Options that only the platform's own data takes: one line when given with a file."""
    given = [f"--{name.replace('_', '-')}" for name, value in options.items() if value is not None]
    if given:
        _fail(f"{', '.join(given)}: only for the platform's own data (without {file}); filter the file instead")


def read_paths(path: Path):
    """Journeys from an attribution CSV (see ``_ATTRIBUTION_HELP``); identical paths without times are merged
    while reading, so a file of a million journeys becomes a few thousand rows. Raises BadInput."""
    from omnijourney.analytics.attribution import Journeys

    timed: list[tuple[list[str], float, float, float, list[float]]] = []
    merged: dict[str, list[float]] = {}
    first_line: dict[str, int] = {}
    has_times = None
    for line, row in _rows(path, ("path", "conversions"), ("value", "nulls", "days_before")):
        if has_times is None:
            has_times = "days_before" in row
        conv = _number(row["conversions"], f"{path} line {line}, column conversions")
        value = _number(row.get("value", ""), f"{path} line {line}, column value", empty_is_zero=True)
        nulls = _number(row.get("nulls", ""), f"{path} line {line}, column nulls", empty_is_zero=True)
        text = row["path"]
        if has_times:
            channels = _channels(text, f"{path} line {line}, column path")
            ages = [_number(a, f"{path} line {line}, column days_before") for a in row["days_before"].split(">")] \
                if row["days_before"].strip() else []
            if len(ages) != len(channels):
                raise BadInput(f"{path} line {line}, column days_before: {len(ages)} times for "
                               f"{len(channels)} channels")
            if any(later > earlier for earlier, later in itertools.pairwise(ages)):
                raise BadInput(f"{path} line {line}, column days_before: touches must be in time order "
                               "(days before the conversion decreasing)")
            timed.append((channels, conv, value, nulls, ages))
        else:
            acc = merged.get(text)
            if acc is None:
                merged[text] = [conv, value, nulls]
                first_line[text] = line
            else:
                acc[0] += conv
                acc[1] += value
                acc[2] += nulls
    if has_times:
        return Journeys.from_paths([t[0] for t in timed], [t[1] for t in timed], [t[2] for t in timed],
                                   [t[3] for t in timed], ages=[t[4] for t in timed])
    channels = [_channels(text, f"{path} line {first_line[text]}, column path") for text in merged]
    sums = list(merged.values())
    return Journeys.from_paths(channels, [s[0] for s in sums], [s[1] for s in sums], [s[2] for s in sums])


def _channels(text: str, where: str) -> list[str]:
    if not text.strip():
        raise BadInput(f"{where}: the path is empty")
    channels = [c.strip() for c in text.split(">")]
    if any(not c for c in channels):
        raise BadInput(f"{where}: {text!r} has an empty channel name (channels are joined by ' > ')")
    return channels


# -- CLV -------------------------------------------------------------------------------------------------------


class Unit(StrEnum):
    weeks = "weeks"
    days = "days"


_CLV_HELP = (
    "Fit BG/NBD (purchase frequency, P(alive)) and Gamma-Gamma (spend) to orders, by maximum likelihood as in "
    "Fader, Hardie & Lee (2005). Prints JSON: the parameters r, alpha, a, b and p, q, v, the log-likelihoods, the "
    "holdout check (with --holdout-end) and the expected purchases and CLV over --horizon.\n\n"
    "The CSV has the columns customer_id, timestamp (a date or an ISO 8601 time; with a zone it is taken in UTC) "
    "and amount (the order's value, not negative), and optionally segment (a customer's segment is that of their "
    "first order). Orders on the same day are one purchase. Orders up to --calibration-end (inclusive) fit the "
    "models; those after it, up to --holdout-end, are compared with the predictions.\n\n"
    "Without --orders: the platform's own orders from every channel over --since/--until, each customer's segment "
    "the channel of their first order."
)


@app.command("clv", help=_CLV_HELP)
def clv_command(
    calibration_end: Annotated[str, typer.Option(help="last day of the calibration period (YYYY-MM-DD)",
                                                 show_default=False)],
    orders: Annotated[Path | None, typer.Option("--orders", metavar="FILE.csv", help="orders: customer_id, "
                                                 "timestamp, amount [default: the platform's own orders]",
                                                 show_default=False)] = None,
    unit: Annotated[Unit, typer.Option(help="time unit of the model (alpha and T are in it)")] = Unit.weeks,
    holdout_end: Annotated[str | None, typer.Option(help="last day of the holdout period: predicted against "
                                                         "actual purchases")] = None,
    horizon: Annotated[float | None, typer.Option(help="CLV horizon in units [default: a year]")] = None,
    discount_rate: Annotated[float, typer.Option(help="annual discount rate of the CLV")] = 0.1,
    out: Annotated[Path | None, typer.Option(help="write per-customer predictions (expected purchases, P(alive), "
                                                  "expected spend, CLV) to this CSV")] = None,
    since: Annotated[datetime | None, typer.Option(help="the platform's orders: from (inclusive), e.g. 2026-03-01",
                                                   show_default=False)] = None,
    until: Annotated[datetime | None, typer.Option(help="the platform's orders: to (exclusive)",
                                                   show_default=False)] = None,
) -> None:
    """See ``_CLV_HELP``."""
    cal = _day(calibration_end, "--calibration-end")
    hold = _day(holdout_end, "--holdout-end") if holdout_end is not None else None
    if hold is not None and hold <= cal:
        _fail(f"--holdout-end {holdout_end} must be after --calibration-end {calibration_end}")
    if discount_rate <= -1:
        _fail("--discount-rate must be more than -1")
    if horizon is not None and not horizon > 0:
        _fail("--horizon must be more than 0")
    if orders is None:
        _own_clv(since, until, calibration_end=date.fromordinal(cal),
                 holdout_end=None if hold is None else date.fromordinal(hold), unit=unit.value, horizon=horizon,
                 annual_discount_rate=discount_rate, out=out)
        return
    _only_own(since=since, until=until, file="--orders")
    try:
        ids, days, amounts, segments = read_orders(orders)
    except BadInput as exc:
        _fail(str(exc))
    first, last = min(days), max(days)
    if not first <= cal <= last:
        _fail(f"--calibration-end {calibration_end} is outside the orders ({_iso(first)} to {_iso(last)})")
    import numpy as np

    from omnijourney.analytics import clv
    from omnijourney.core.errors import OmniError

    warnings: list[str] = []
    if hold is not None and hold > last:
        warnings.append(f"the orders end on {_iso(last)}, before --holdout-end {holdout_end}: the holdout's "
                        "actual purchases may be undercounted")
    try:
        summary = clv.summarise(ids, np.array(days, dtype=np.int64), amounts, cal, hold, unit=unit.value,
                                segments=segments)
        model = clv.fit(summary)
        per_year = clv.DAYS_PER_YEAR / clv.UNITS[unit.value]
        horizon_units = horizon if horizon is not None else round(per_year, 4)
        report = model.report(horizon=horizon_units, annual_discount_rate=discount_rate)
    except OmniError as exc:
        _fail(exc.message)
    warnings += model.warnings()
    info = summary.info
    result: dict[str, Any] = {
        "orders": info["orders"],
        "purchase_days": info["purchase_days"],
        "first_order": _iso(first),
        "last_order": _iso(last),
        "calibration_end": _iso(cal),
        "customers_first_seen_after_calibration": info["customers_after_calibration"],
    }
    if hold is not None:
        result["holdout_end"] = _iso(hold)
    result |= report
    if warnings:
        result["warnings"] = warnings
    if out is not None:
        _write_predictions(out, model, horizon_units, discount_rate)
        result["predictions_file"] = str(out)
    _print_json(result)


def _own_clv(since: datetime | None, until: datetime | None, *, out: Path | None, **kw: Any) -> None:
    """The report of ``analytics.journeys.clv`` on the platform's orders, and per customer to ``out``."""
    from omnijourney.analytics import journeys
    from omnijourney.analytics.commands import _period, _tables

    with _tables() as t:
        period = _period(since, until)
        result = journeys.clv(t, period, **kw)
        if out is not None:
            customers = journeys.clv_customers(t, period, limit=100_000, **kw)
    if out is not None:
        try:
            customers.to_csv(out, index=False)
        except OSError as exc:
            _fail(f"--out {out}: cannot write ({exc.strerror})")
        result["predictions_file"] = str(out)
    _print_json(result)


def _iso(day: int) -> str:
    return date.fromordinal(day).isoformat()


def _day(text: str, where: str) -> int:
    day = _parse_day(text)
    if day is None:
        _fail(f"{where}: {text!r} is not a date (YYYY-MM-DD)")
    return day


def _parse_day(text: str) -> int | None:
    """The calendar day (proleptic ordinal) of a date or ISO 8601 time; a time with a zone is taken in UTC."""
    text = text.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text).toordinal()
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.date().toordinal()


def read_orders(path: Path) -> tuple[list[str], list[int], list[float], list[str] | None]:
    """(customer ids, days, amounts, segments or None) from an orders CSV. Raises BadInput."""
    ids: list[str] = []
    days: list[int] = []
    amounts: list[float] = []
    segments: list[str] | None = None
    cache: dict[str, int | None] = {}
    for line, row in _rows(path, ("customer_id", "timestamp", "amount"), ("segment",)):
        customer = row["customer_id"].strip()
        if not customer:
            raise BadInput(f"{path} line {line}, column customer_id: empty")
        stamp = row["timestamp"]
        day = cache.get(stamp, -1)
        if day == -1:
            day = cache[stamp] = _parse_day(stamp)
        if day is None:
            raise BadInput(f"{path} line {line}, column timestamp: {stamp!r} is not a date or time "
                           "(ISO 8601, e.g. 2024-03-01 or 2024-03-01T14:30:00Z)")
        amounts.append(_number(row["amount"], f"{path} line {line}, column amount"))
        ids.append(customer)
        days.append(day)
        if "segment" in row:
            if segments is None:
                segments = []
            segments.append(row["segment"].strip())
    return ids, days, amounts, segments


def _write_predictions(path: Path, model, horizon: float, discount_rate: float) -> None:
    pred = model.predict(horizon=horizon, annual_discount_rate=discount_rate)
    columns = [c for c in ("customer_id", "expected_purchases", "p_alive", "expected_spend", "clv") if c in pred]
    try:
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for i in range(len(pred["customer_id"])):
                writer.writerow([pred["customer_id"][i]] + [f"{float(pred[c][i]):.6g}" for c in columns[1:]])
    except OSError as exc:
        _fail(f"--out {path}: cannot write ({exc.strerror})")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
