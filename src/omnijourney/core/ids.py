"""Identifiers: time-ordered, random; or, inside :func:`seeded_ids`, reproducible (the demo)."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta

from omnijourney.core.time import utcnow

_VERSION_MASK = ~(0xF << 76)
_VERSION_7 = 0x7 << 76
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class _Seeded:
    """The time and random parts of ids under :func:`seeded_ids`."""

    __slots__ = ("now", "rng")

    def __init__(self, rng: random.Random, now: Callable[[], datetime]) -> None:
        self.rng, self.now = rng, now

    def draw(self, n: int) -> tuple[int, bytes]:
        # integer arithmetic: a float timestamp could round the same moment to two different milliseconds
        return ((self.now() - _EPOCH) // _MS) << 80, self.rng.randbytes(10 * n)


# A context variable like core.time's clock: a seeded block in one request or thread never leaks into another.
# Threads started inside the block do not inherit it (they would make production ids).
_seeded: ContextVar[_Seeded | None] = ContextVar("omni_seeded_ids", default=None)


def new_id() -> str:
    """A time-ordered 32-hex-char id (UUIDv7 layout) so new rows land at the end of indexes."""
    seeded = _seeded.get()
    if seeded is None:
        ms = time.time_ns() // 1_000_000
        rand = int.from_bytes(os.urandom(10), "big")
        value = (ms << 80) | rand
    else:
        prefix, noise = seeded.draw(1)
        value = prefix | int.from_bytes(noise, "big")
    return f"{(value & _VERSION_MASK) | _VERSION_7:032x}"


def new_ids(n: int) -> list[str]:
    """``n`` ids like :func:`new_id`, with one clock read and one system call for the randomness."""
    seeded = _seeded.get()
    if seeded is None:
        prefix = (time.time_ns() // 1_000_000) << 80
        noise = os.urandom(10 * n)
    else:
        prefix, noise = seeded.draw(n)
    return [f"{((prefix | int.from_bytes(noise[i:i + 10], 'big')) & _VERSION_MASK) | _VERSION_7:032x}"
            for i in range(0, 10 * n, 10)]


@contextmanager
def seeded_ids(seed: int | str, *, now: Callable[[], datetime] = utcnow) -> Iterator[None]:
    """Make :func:`new_id` and :func:`new_ids` reproducible within the block (demo data, tests).

    The time part is ``now()`` (by default :func:`core.time.utcnow`, i.e. the clock installed with
    :func:`core.time.clock`), the random part comes from ``random.Random(seed)``: the same seed, clock and
    sequence of calls give the same ids in every process. They are as unique as production ids (76 random bits
    per millisecond) but guessable, so secrets (API keys, write keys, handoff codes) must never be made from them.
    """
    token = _seeded.set(_Seeded(random.Random(seed), now))
    try:
        yield
    finally:
        _seeded.reset(token)
