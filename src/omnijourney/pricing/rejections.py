"""Why a price list, promotion or voucher does not apply: a stable code and a sentence for people."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from omnijourney.core.time import iso

if TYPE_CHECKING:
    from omnijourney.pricing.engine import Context
    from omnijourney.pricing.promotions import Voucher


@dataclass(frozen=True, slots=True)
class Rejected:
    code: str  # outside_window, channel, segment, currency, voucher_*, exclusive, stacking_group, no_match, ...
    reason: str


class Targeted(Protocol):
    @property
    def valid_from(self) -> datetime | None: ...
    @property
    def valid_to(self) -> datetime | None: ...
    @property
    def channel_codes(self) -> frozenset[str]: ...
    @property
    def channel_types(self) -> frozenset[str]: ...
    @property
    def segments(self) -> frozenset[str]: ...


def window_problem(valid_from: datetime | None, valid_to: datetime | None, at: datetime) -> str | None:
    """A sentence when ``at`` is outside [valid_from, valid_to), else None."""
    if (valid_from is not None and at < valid_from) or (valid_to is not None and at >= valid_to):
        span = " ".join(s for s in (f"from {iso(valid_from)}" if valid_from else "",
                                    f"until {iso(valid_to)}" if valid_to else "") if s)
        return f"outside validity window ({span})"
    return None


def check_context(item: Targeted, ctx: Context) -> Rejected | None:
    """Validity window, channel targeting (code or type), segment targeting, in that order."""
    window = window_problem(item.valid_from, item.valid_to, ctx.at)
    if window:
        return Rejected("outside_window", window)
    if (item.channel_codes or item.channel_types) and ctx.channel_code not in item.channel_codes \
            and ctx.channel_type not in item.channel_types:
        return Rejected("channel", f"not for channel {ctx.channel_code}")
    if item.segments and item.segments.isdisjoint(ctx.segments):
        return Rejected("segment", f"customer not in segment {' or '.join(sorted(item.segments))}")
    return None


def check_voucher(v: Voucher, ctx: Context) -> Rejected | None:
    """Problems of the voucher itself (not of its promotion): inactive, currency, window, usage limits."""
    if not v.active:
        return Rejected("voucher_inactive", f"voucher {v.code} is disabled")
    if v.currency is not None and v.currency != ctx.currency:
        # its amounts (a fixed discount, a threshold) are in another currency: it can never apply here
        return Rejected("voucher_currency", f"voucher {v.code} is for baskets in {v.currency}, not {ctx.currency}")
    window = window_problem(v.valid_from, v.valid_to, ctx.at)
    if window:
        return Rejected("voucher_expired", f"voucher {v.code} {window}")
    if v.max_uses is not None and v.used >= v.max_uses:
        return Rejected("voucher_exhausted", f"voucher {v.code} exhausted ({v.used} of {v.max_uses} uses)")
    if v.per_customer_limit is not None and v.used_by_customer >= v.per_customer_limit:
        return Rejected("voucher_customer_limit",
                        f"per-customer limit reached for voucher {v.code} ({v.per_customer_limit})")
    return None
