"""Text that every database can store: PostgreSQL refuses the NUL character (``\\u0000``) in ``text`` and in
``jsonb``, SQLite keeps it. The API refuses it on both engines alike, in one place (``api.deps.reject_nul``)."""

from __future__ import annotations

from typing import Any

from omnijourney.core.errors import Invalid

NUL = "\x00"


def nul_path(value: Any, path: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """Where the first NUL character of a decoded JSON value is (keys of the objects and indexes of the arrays that
    lead to the string holding it; a key holding one names its own path), or None when there is none."""
    if isinstance(value, str):
        return path if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if NUL in key:
                return (*path, key.replace(NUL, "\\u0000"))
            found = nul_path(item, (*path, key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = nul_path(item, (*path, i))
            if found is not None:
                return found
    return None


def nul_error(field: str) -> Invalid:
    """The error for a NUL character in ``field``."""
    return Invalid(f"{field} contains the NUL character (\\u0000), which text cannot hold", field=field)
