"""What every analysis shares: checking the question (a clear 422 naming the field), periods, property filters."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import ibis
import ibis.expr.types as ir

from omnijourney.analytics.schemas import Period, PropertyFilter
from omnijourney.analytics.tables import Tables, json_number, json_text
from omnijourney.core.errors import Invalid
from omnijourney.core.time import utcnow
from omnijourney.tracking import names
from omnijourney.tracking.spec import ECOMMERCE_EVENTS, canonical_event_name

# names every deployment may ask about before it has seen one: the spec's, the platform's, page and screen views
KNOWN_EVENTS = frozenset(ECOMMERCE_EVENTS) | names.REGISTRY | {"Page Viewed", "Screen Viewed"}
NONE = "(none)"
OTHER = "(other)"


def epoch(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


def check_period(period: Period, field_prefix: str = "") -> tuple[int | None, int | None]:
    """(since, until) in epoch seconds; 422 for an empty or reversed period."""
    since, until = epoch(period.since), epoch(period.until)
    if since is not None and until is not None and until <= since:
        raise Invalid("until must be after since (the period is empty)", field=f"{field_prefix}until")
    if since is not None and since > int(utcnow().timestamp()):
        raise Invalid("since is in the future: the period holds nothing yet", field=f"{field_prefix}since")
    return since, until


def in_period(e: ir.Table, since: int | None, until: int | None) -> ir.Table:
    if since is not None:
        e = e.filter(e.t >= since)
    if until is not None:
        e = e.filter(e.t < until)
    return e


class NoEvents(Invalid):
    """The period holds no event at all (a 422 naming ``since``): an empty answer would look like a measured
    zero. A chart catches it to say so instead of drawing nothing."""


def no_events(since: int | None, until: int | None) -> NoEvents:
    """The error for a period without any event."""
    if since is None and until is None:
        return NoEvents("there are no events yet (is the analytics store synced? `omni analytics sync`)",
                        field="since")
    return NoEvents("no event at all falls between since and until", field="since")


def check_data(tables: Tables, events: ir.Table, since: int | None, until: int | None) -> None:
    """422 when the period holds no event at all: an empty answer would look like a measured zero."""
    if in_period(events, since, until).limit(1).count().execute() == 0:
        raise no_events(since, until)


def event_name(tables: Tables, events: ir.Table, name: str, field: str) -> str:
    """The canonical spelling of ``name``; 422 naming ``field`` when it is neither a name the platform knows nor
    one that appears in the data (a typo must not look like a funnel nobody entered)."""
    canonical = canonical_event_name(name.strip())
    if canonical in KNOWN_EVENTS:
        return canonical
    if events.filter(events.name == canonical).limit(1).count().execute() == 0:
        raise Invalid(f"unknown event {name!r}: no such event has been tracked", field=field)
    return canonical


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def predicate(e: ir.Table, f: PropertyFilter, field: str) -> ir.BooleanValue:
    """The condition of one property filter on events ``e``."""
    if f.key in ("channel", "store_code", "name"):
        text: ir.StringValue = e[f.key]
        number: ir.FloatingValue | None = None
        present = text.notnull()
    else:
        raw = e.properties[f.key]
        text, number = json_text(raw), json_number(raw)
        present = text.notnull()
    op, value = f.op, f.value
    if op == "is_set":
        return present
    if op == "is_not_set":
        return ~present
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise Invalid(f"{op} takes a non-empty list", field=f"{field}.value")
        if all(_number(v) for v in value) and number is not None:
            cond = number.isin([float(v) for v in value])
        else:
            cond = text.isin([str(v) for v in value])
        return cond if op == "in" else (present & ~cond)
    if value is None:
        raise Invalid(f"{op} needs a value", field=f"{field}.value")
    if op == "contains":
        return text.contains(str(value))
    if op in ("gt", "gte", "lt", "lte"):
        if not _number(value) or number is None:
            raise Invalid(f"{op} compares numbers: value must be a number", field=f"{field}.value")
        v = float(value)
        return {"gt": number > v, "gte": number >= v, "lt": number < v, "lte": number <= v}[op]
    if _number(value) and number is not None:
        cond = number == float(value)
    else:
        cond = text == (("true" if value else "false") if isinstance(value, bool) else str(value))
    return cond if op == "eq" else (present & ~cond)


def step_filter(e: ir.Table, name: str, filters: list[PropertyFilter], channels: list[str] | None,
                field: str) -> ir.Table:
    """Events ``name`` passing every filter, in ``channels`` if given."""
    out = e.filter(e.name == name)
    for i, f in enumerate(filters):
        out = out.filter(predicate(out, f, f"{field}.filters[{i}]"))
    if channels:
        out = out.filter(out.channel.isin(channels))
    return out


def breakdown_value(e: ir.Table, breakdown: str | None, field: str = "breakdown") -> ir.StringValue:
    """The value an event gives a breakdown: channel, store, or property:<key>."""
    if breakdown is None or breakdown == "channel_mix":
        return e.channel
    if breakdown == "channel":
        return e.channel
    if breakdown == "store":
        return e.store_code
    if breakdown.startswith("property:") and len(breakdown) > len("property:"):
        return json_text(e.properties[breakdown[len("property:"):]])
    raise Invalid("breakdown is channel, store, channel_mix or property:<key>", field=field)


def label_none(value: ir.StringValue) -> ir.StringValue:
    return ibis.coalesce(value, NONE)
