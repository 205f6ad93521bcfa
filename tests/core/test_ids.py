"""Ids: time-ordered and unique; reproducible inside ``seeded_ids`` only, and nowhere else."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta

from omnijourney.core.ids import new_id, new_ids, seeded_ids
from omnijourney.core.time import clock

AT = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
UUID7 = re.compile(r"^[0-9a-f]{12}7[0-9a-f]{19}$")


def ms(id_: str) -> int:
    """The millisecond an id was made at (its first 48 bits, UUIDv7 layout)."""
    return int(id_[:12], 16)


def epoch_ms(dt: datetime) -> int:
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def test_production_ids_are_random_time_ordered_and_unique() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(1000)] + new_ids(100_000)
    after = time.time_ns() // 1_000_000
    assert all(UUID7.match(i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert all(before <= ms(i) <= after for i in ids)
    assert new_ids(0) == []


def test_same_seed_and_clock_same_ids_in_the_same_order() -> None:
    def made(seed: int | str) -> list[str]:
        with clock(lambda: AT), seeded_ids(seed):
            return [new_id(), *new_ids(5), new_id(), *new_ids(1024)]

    a = made(7)
    assert a == made(7)
    assert set(a).isdisjoint(made(8))
    assert set(a).isdisjoint(made("7"))
    assert all(UUID7.match(i) for i in a) and len(set(a)) == len(a)
    assert {ms(i) for i in a} == {epoch_ms(AT)}  # the time part is the installed clock's, not the wall clock's


def test_seeded_ids_are_time_ordered_by_their_clock_and_unique() -> None:
    now = AT
    made = []
    with seeded_ids(1, now=lambda: now):
        for _ in range(200):
            made.append(new_id())
            now += timedelta(milliseconds=1)
        many = new_ids(100_000)  # one millisecond: unique by their random part alone
    assert made == sorted(made)
    assert [ms(i) for i in made] == [epoch_ms(AT) + k for k in range(200)]
    assert len(set(many)) == len(many) and all(UUID7.match(i) for i in many)


def test_production_ids_come_back_after_the_block_and_blocks_nest() -> None:
    with clock(lambda: AT):
        with seeded_ids(1):
            outer = new_id()
            with seeded_ids(2):
                inner = new_id()
            outer_again = new_id()
        free = new_ids(2)
    with clock(lambda: AT), seeded_ids(1):
        assert [new_id(), new_id()] == [outer, outer_again]
    with clock(lambda: AT), seeded_ids(2):
        assert new_id() == inner
    # outside the block: the wall clock and fresh randomness again, though the demo's clock is still installed
    assert all(abs(ms(i) - time.time_ns() // 1_000_000) < 60_000 for i in free)
    assert free[0] != free[1] and not {outer, inner, outer_again} & set(free)


def test_another_thread_keeps_production_ids_while_a_block_is_open() -> None:
    # the server's threads must never draw guessable ids because the demo or a test opened a block
    seen: list[str] = []
    with clock(lambda: AT), seeded_ids(1):
        thread = threading.Thread(target=lambda: seen.extend([new_id(), *new_ids(3)]))
        thread.start()
        thread.join()
        assert ms(new_id()) == epoch_ms(AT)
    assert len(seen) == 4
    assert all(abs(ms(i) - time.time_ns() // 1_000_000) < 60_000 for i in seen)
