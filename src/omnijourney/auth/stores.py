"""Store scoping: a store associate acts only in their own stores.

A principal's ``stores`` (None: every store) names store channel codes. Routes that act in a channel check that
code with ``Principal.check_store``; routes that act at a location check the store the location belongs to with
:func:`check_location` (a warehouse, transit or quarantine belongs to no store, so a store-scoped principal may
not act there). Both answer 403 ``store_not_allowed`` naming the request's field.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from omnijourney.auth.service import Principal


def store_of_location(session: Session, code: str | None) -> str | None:
    """The store channel a location belongs to; None for another kind of location or an unknown code."""
    from omnijourney.inventory.models import Location

    location = session.get(Location, code) if code else None
    return location.channel_code if location is not None else None


def check_location(session: Session, principal: Principal, code: str | None, *, field: str) -> None:
    """403 ``store_not_allowed`` on ``field`` unless the location ``code`` is in one of the principal's stores (a
    principal of every store passes without a look-up)."""
    if principal.stores is not None:
        principal.check_store(store_of_location(session, code), field=field, place=code)
