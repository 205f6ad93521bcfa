"""Cheap argon2 parameters for these tests: still argon2id through pwdlib, but a login costs a millisecond instead
of a tenth of a second (the production parameters, the library's, are checked in test_sessions.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from omnijourney.auth import passwords

_CHEAP = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),))
_DUMMY = _CHEAP.hash("dummy")


def use_cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "_hasher", lambda: _CHEAP)
    monkeypatch.setattr(passwords, "_dummy_hash", lambda: _DUMMY)


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    use_cheap_hashes(monkeypatch)
    yield
