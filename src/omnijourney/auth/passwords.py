"""Staff passwords: argon2id hashes through pwdlib, one-time passwords, and the rules a new password follows.

A password is never stored, logged or returned: only its hash is kept, and a one-time password is shown once
(``omni staff add`` / ``reset``). Checking an unknown email costs the same as checking a wrong password
(:func:`verify_dummy`), so timing does not tell which emails have accounts.
"""

from __future__ import annotations

import secrets
from functools import cache

from pwdlib import PasswordHash

from omnijourney.core.errors import Invalid

MIN_LENGTH = 12
MAX_LENGTH = 256  # argon2 takes any length; a cap keeps a megabyte "password" from costing a hash of it
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read from a screen and typed on a till
_GROUPS, _GROUP = 4, 5  # 20 characters of 31: 99 bits


@cache
def _hasher() -> PasswordHash:
    return PasswordHash.recommended()  # argon2id with the library's current parameters


@cache
def _dummy_hash() -> str:
    return _hasher().hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (salted: two hashes of one password differ)."""
    return _hasher().hash(password)


def verify(password: str, hashed: str) -> tuple[bool, str | None]:
    """Whether ``password`` matches ``hashed``, and a new hash when the stored one uses older parameters."""
    try:
        return _hasher().verify_and_update(password, hashed)
    except Exception:  # a malformed stored hash matches nothing (and tells nothing)
        return False, None


def verify_dummy(password: str) -> None:
    """Spend the time of a real check, for an email without an account (the answer is ignored)."""
    verify(password, _dummy_hash())


def one_time_password() -> str:
    """A random password to be shown once and changed at the first login, e.g. ``k7qmz-3xw9p-hv2ta-n8rcd``."""
    return "-".join("".join(secrets.choice(_ALPHABET) for _ in range(_GROUP)) for _ in range(_GROUPS))


def check_new_password(password: str, *, email: str, current: str | None = None) -> str:
    """``password`` if it may replace ``current``, else ``Invalid`` on ``new_password`` saying why."""
    if len(password) < MIN_LENGTH:
        raise Invalid(f"a password has at least {MIN_LENGTH} characters", field="new_password",
                      code="weak_password")
    if len(password) > MAX_LENGTH:
        raise Invalid(f"a password has at most {MAX_LENGTH} characters", field="new_password", code="weak_password")
    if current is not None and password == current:
        raise Invalid("the new password must differ from the current one", field="new_password",
                      code="weak_password")
    lowered = password.lower()
    if lowered == email.lower() or lowered == email.partition("@")[0].lower() or len(set(password)) < 4:
        raise Invalid("choose a password that is not your email or a repeated character", field="new_password",
                      code="weak_password")
    return password
