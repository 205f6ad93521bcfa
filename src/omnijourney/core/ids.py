"""Identifiers."""

from __future__ import annotations

import os
import time


def new_id() -> str:
    """A time-ordered 32-hex-char id (UUIDv7 layout) so new rows land at the end of indexes."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | rand
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    return f"{value:032x}"
