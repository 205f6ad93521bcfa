"""Exact money: ``Decimal`` amounts rounded to the currency's minor unit, never floats.

Rounding is *half-up* (commercial rounding: 0.005 -> 0.01), the rule shoppers and most tax authorities
expect on a receipt; it is applied once per computed amount (a line's discount, a line's tax), never to
intermediate products. Minor units follow ISO 4217: most currencies have 2 decimals, the exceptions are
listed below. Storage uses integer minor units (``to_minor``/``from_minor``).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from omnijourney.core.errors import Invalid

# ISO 4217 currencies whose minor unit is not 2 decimals.
_ZERO = ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV",
         "XAF", "XOF", "XPF")
_THREE = ("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND")
MINOR_UNITS: dict[str, int] = {**dict.fromkeys(_ZERO, 0), **dict.fromkeys(_THREE, 3)}
_EXPONENTS = {n: Decimal(1).scaleb(-n) for n in range(4)}  # 0 -> 1, 2 -> 0.01, 3 -> 0.001
ZERO = Decimal(0)


def minor_units(currency: str) -> int:
    """Decimals of ``currency`` (ISO 4217): 0 for JPY, 3 for KWD, 2 for most."""
    return MINOR_UNITS.get(currency, 2)


def check_currency(currency: str, *, field: str = "currency") -> str:
    """A three-letter upper-case ISO 4217 code, or ``Invalid``."""
    if len(currency) != 3 or not currency.isascii() or not currency.isalpha() or not currency.isupper():
        raise Invalid(f"currency {currency!r} is not a three-letter ISO 4217 code such as EUR", field=field)
    return currency


def quantize(amount: Decimal, currency: str) -> Decimal:
    """``amount`` rounded half-up to the minor unit of ``currency``."""
    return amount.quantize(_EXPONENTS[minor_units(currency)], rounding=ROUND_HALF_UP)


def to_minor(amount: Decimal, currency: str, *, field: str = "amount") -> int:
    """Integer minor units of an amount that is already exact in ``currency`` (else ``Invalid``)."""
    exp = _EXPONENTS[minor_units(currency)]
    if amount != amount.quantize(exp, rounding=ROUND_DOWN):
        raise Invalid(f"{amount} has more decimals than {currency} allows ({minor_units(currency)})", field=field)
    return int(amount.scaleb(minor_units(currency)))


def from_minor(minor: int, currency: str) -> Decimal:
    """The ``Decimal`` amount of ``minor`` minor units of ``currency``."""
    return Decimal(minor).scaleb(-minor_units(currency)).quantize(_EXPONENTS[minor_units(currency)])


def fmt(amount: Decimal, currency: str) -> str:
    """``100.00 EUR`` (for explanations)."""
    return f"{quantize(amount, currency)} {currency}"


def allocate(total: Decimal, weights: Sequence[Decimal], currency: str) -> list[Decimal]:
    """Split ``total`` (exact in ``currency``) over ``weights`` proportionally, exactly.

    Largest remainder: every share is floored to the minor unit, then the leftover units go one by one
    to the shares with the largest remainders (ties: the earlier share), so the shares always sum to
    ``total`` and the split is deterministic.
    """
    weight_sum = sum(weights, ZERO)
    if weight_sum <= 0 or total == 0:
        return [ZERO] * len(weights)
    exp = _EXPONENTS[minor_units(currency)]
    raw = [total * w / weight_sum for w in weights]
    shares = [r.quantize(exp, rounding=ROUND_DOWN) for r in raw]
    leftover = int(((total - sum(shares, ZERO)) / exp).to_integral_value())
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - shares[i]), i))
    for i in order[:leftover]:
        shares[i] += exp
    return shares
