"""Identifiers."""

from __future__ import annotations

import os
import time

_VERSION_MASK = ~(0xF << 76)
_VERSION_7 = 0x7 << 76


def new_id() -> str:
    """A time-ordered 32-hex-char id (UUIDv7 layout) so new rows land at the end of indexes."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | rand
    return f"{(value & _VERSION_MASK) | _VERSION_7:032x}"


def new_ids(n: int) -> list[str]:
    """``n`` ids like :func:`new_id`, with one clock read and one system call for the randomness."""
    prefix = (time.time_ns() // 1_000_000) << 80
    noise = os.urandom(10 * n)
    return [f"{((prefix | int.from_bytes(noise[i:i + 10], 'big')) & _VERSION_MASK) | _VERSION_7:032x}"
            for i in range(0, 10 * n, 10)]
