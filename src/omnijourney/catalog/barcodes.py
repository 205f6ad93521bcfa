"""GTIN (EAN-8, UPC-A, EAN-13, GTIN-14) check digits. Pure: no database, no web."""

from __future__ import annotations

GTIN_LENGTHS = (8, 12, 13, 14)


def check_digit(body: str) -> int:
    """The GS1 check digit of ``body`` (all digits but the last): weights 3,1,3,... from the right."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def gtin_problem(code: str) -> str | None:
    """Why ``code`` is not a valid GTIN, or None when it is."""
    if not code.isascii() or not code.isdigit():
        return "a barcode has digits only"
    if len(code) not in GTIN_LENGTHS:
        return f"a barcode has 8, 12, 13 or 14 digits, not {len(code)}"
    expected = check_digit(code[:-1])
    if int(code[-1]) != expected:
        return f"check digit of {code} should be {expected}"
    return None
