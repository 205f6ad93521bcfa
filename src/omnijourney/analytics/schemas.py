"""What an analyst asks, as pydantic models (the API's bodies, the CLI's options parsed into the same)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

WindowUnit = Literal["minute", "hour", "day", "week", "month"]
UNIT_SECONDS: dict[str, int] = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400,
                                "month": 30 * 86400}  # a month is 30 days, as PostHog counts it

FilterOp = Literal["eq", "neq", "in", "not_in", "gt", "gte", "lt", "lte", "contains", "is_set", "is_not_set"]


class PropertyFilter(BaseModel):
    """One condition on an event: a property (``properties.<key>``; ``channel`` and ``store_code`` are the event's own
    columns). Numbers compare as numbers (also when sent as text, "12.50"), anything else as text."""

    key: str = Field(min_length=1, max_length=200)
    op: FilterOp = "eq"
    value: Any = None


class Step(BaseModel):
    """A funnel step: any event, with property filters, optionally only in some channels (a store visit, a call)."""

    event: str = Field(min_length=1, max_length=200)
    filters: list[PropertyFilter] = Field(default_factory=list)
    channels: list[str] | None = None
    optional: bool = False  # people who skip it still count in later steps
    label: str | None = None


class Exclusion(BaseModel):
    """People who did ``event`` between step ``from_step`` and step ``to_step`` (0-based; default: the last) of their
    conversion are left out of the funnel altogether."""

    event: str = Field(min_length=1, max_length=200)
    filters: list[PropertyFilter] = Field(default_factory=list)
    from_step: int = 0
    to_step: int | None = None


class Period(BaseModel):
    """``since`` inclusive, ``until`` exclusive; either may be open."""

    since: datetime | None = None
    until: datetime | None = None


class FunnelQuery(Period):
    """A funnel as PostHog defines one, with channels as first-class steps and breakdowns."""

    steps: list[Step]
    window: float = 14  # the conversion window, from the first step to the last
    window_unit: WindowUnit = "day"
    order: Literal["ordered", "strict", "unordered"] = "ordered"
    exclusions: list[Exclusion] = Field(default_factory=list)
    reference: Literal["first", "previous"] = "first"  # conversion against the first step or the previous one
    # channel, store, channel_mix (the journey's channels in order: "web only", "web > store"), property:<key>
    breakdown: str | None = None
    attribution: Literal["first_touch", "last_touch", "step"] = "first_touch"
    attribution_step: int | None = None  # with attribution=step (0-based)
    breakdown_limit: int = Field(default=25, ge=1, le=500)  # the largest values; the rest are "(other)"

    def window_s(self) -> int:
        return int(self.window * UNIT_SECONDS[self.window_unit])
