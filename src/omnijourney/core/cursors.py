"""Opaque page cursors: what a list API hands out as ``next_cursor`` and takes back as ``cursor``."""

from __future__ import annotations

import base64

from omnijourney.core.errors import Invalid


def encode_cursor(*parts: object) -> str:
    """The parts (their ``str``, none containing ``|``) as one URL-safe token."""
    return base64.urlsafe_b64encode("|".join(map(str, parts)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, parts: int) -> list[str]:
    """The ``parts`` strings of a cursor made by :func:`encode_cursor`; a clear 400 for anything else (the
    caller converts them, and raises :func:`bad_cursor` when that fails)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except ValueError:
        raise bad_cursor() from None
    values = raw.split("|")
    if len(values) != parts:
        raise bad_cursor()
    return values


def bad_cursor() -> Invalid:
    return Invalid("cursor is not one this API gave out", field="cursor")
