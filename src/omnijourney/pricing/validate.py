"""Input checks shared by the pricing services: codes, windows, channel types, money in a currency."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation

from pydantic import ValidationError

from omnijourney.core.channels import CHANNELS
from omnijourney.core.errors import Invalid
from omnijourney.core.time import parse_ts
from omnijourney.pricing.money import check_currency, to_minor

_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def code(value: str, *, field: str = "code") -> str:
    """A code: 1-64 letters, digits, dot, dash or underscore, starting with a letter or digit."""
    if not isinstance(value, str) or not _CODE.match(value):
        raise Invalid(f"{field} {value!r} must be 1-64 letters, digits, '.', '-' or '_'", field=field)
    return value


def window(valid_from: datetime | str | None, valid_to: datetime | str | None) -> tuple[datetime | None,
                                                                                        datetime | None]:
    """Aware UTC bounds with ``valid_from`` before ``valid_to``."""
    start, end = parse_ts(valid_from), parse_ts(valid_to)
    if start is not None and end is not None and start >= end:
        raise Invalid("valid_from must be before valid_to", field="valid_to")
    return start, end


def channel_types(values: Iterable[str]) -> list[str]:
    out = sorted(set(values))
    for v in out:
        if v not in CHANNELS:
            raise Invalid(f"unknown channel type {v!r}: one of {', '.join(sorted(CHANNELS))}", field="channel_types")
    return out


def names(values: Iterable[str], *, field: str) -> list[str]:
    """Distinct, sorted, non-empty strings (channel codes, segments)."""
    out = sorted(set(values))
    if any(not v or len(v) > 64 for v in out):
        raise Invalid(f"{field} must hold names of 1-64 characters", field=field)
    return out


def decimal(value: object, *, field: str) -> Decimal:
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise Invalid(f"{value!r} is not a decimal number", field=field) from None
    if not amount.is_finite():
        raise Invalid(f"{value!r} is not a decimal number", field=field)
    return amount


def money_minor(value: object, currency: str, *, field: str, allow_zero: bool = True) -> int:
    """Integer minor units of a non-negative amount that is exact in ``currency``."""
    amount = decimal(value, field=field)
    if amount < 0 or (amount == 0 and not allow_zero):
        raise Invalid(f"{field} must be {'zero or more' if allow_zero else 'more than zero'}", field=field)
    return to_minor(amount, check_currency(currency), field=field)


def rate_ppm(value: object, *, field: str) -> int:
    """A tax rate (0.20 = 20 %) as parts per million."""
    rate = decimal(value, field=field)
    if not 0 <= rate < 1:
        raise Invalid(f"tax rate {rate} must be a fraction between 0 and 1 (0.20 = 20 %)", field=field)
    ppm = rate * 1_000_000
    if ppm != ppm.to_integral_value():
        raise Invalid(f"tax rate {rate} has more than 6 decimals", field=field)
    return int(ppm)


def pydantic_error(exc: ValidationError, *, prefix: str) -> Invalid:
    """The first pydantic error as ``Invalid`` naming the field under ``prefix``."""
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"] if not str(x).endswith("_rule") and x not in (
        "percent_off", "amount_off", "buy_x_get_y", "bundle", "free_shipping"))
    field = f"{prefix}.{loc}" if loc else prefix
    return Invalid(f"{field}: {err['msg']}", field=field)
