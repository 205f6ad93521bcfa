"""Locations and the channels each one feeds. Functions take a ``Session``, flush and never commit."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from omnijourney.catalog.models import Channel
from omnijourney.core.errors import Conflict, Invalid, NotFound
from omnijourney.core.time import utcnow
from omnijourney.inventory.models import LOCATION_TYPES, Location, LocationFeed

ONLINE_TYPES = ("web", "app", "call_center", "marketplace")  # channels that sell for delivery or collection


def _default_feeds(session: Session, type: str, channel_code: str | None) -> list[str]:
    """A warehouse feeds every online channel and every store (endless aisle: order in store, deliver home); a
    store feeds itself and the online channels (above its online floor); transit and quarantine feed nothing."""
    if type in ("transit", "quarantine"):
        return []
    channels = session.execute(select(Channel.code, Channel.type).where(Channel.active.is_(True))).all()
    online = [code for code, kind in channels if kind in ONLINE_TYPES]
    if type == "warehouse":
        return sorted(online + [code for code, kind in channels if kind == "store"])
    return sorted({*online, *([channel_code] if channel_code else [])})


def _check_feeds(session: Session, feeds: Iterable[str]) -> list[str]:
    wanted = sorted(set(feeds))
    known = set(session.scalars(select(Channel.code).where(Channel.code.in_(wanted))))
    for i, code in enumerate(wanted):
        if code not in known:
            raise NotFound(f"no channel {code!r}", field=f"feeds[{i}]")
    return wanted


def _check_settings(online_floor: int, handling_hours: int) -> None:
    if online_floor < 0:
        raise Invalid("online_floor cannot be negative", field="online_floor")
    if not 0 <= handling_hours <= 24 * 60:
        raise Invalid("handling_hours must be between 0 and 1440", field="handling_hours")


def create_location(session: Session, *, code: str, name: str, type: str, channel_code: str | None = None,
                    address: str | None = None, latitude: float | None = None, longitude: float | None = None,
                    online_floor: int = 0, ships: bool | None = None, pickup: bool | None = None,
                    handling_hours: int | None = None, feeds: Sequence[str] | None = None) -> Location:
    """Register a location. A store names its store channel (``channel_code``) and takes its address and
    coordinates unless given; ``feeds`` defaults by type (see ``_default_feeds``)."""
    if type not in LOCATION_TYPES:
        raise Invalid(f"unknown location type {type!r}: one of {', '.join(LOCATION_TYPES)}", field="type")
    code = code.strip()
    if not code or len(code) > 64:
        raise Invalid("a location code of 1 to 64 characters is needed", field="code")
    if (latitude is None) != (longitude is None):
        raise Invalid("give latitude and longitude together", field="latitude" if latitude is None else "longitude")
    channel = None
    if channel_code is not None:
        channel = session.get(Channel, channel_code)
        if channel is None:
            raise NotFound(f"no channel {channel_code!r}", field="channel_code")
        if type != "store" or channel.type != "store":
            raise Invalid("only a store location belongs to a (store) channel", field="channel_code")
        if session.scalar(select(Location.code).where(Location.channel_code == channel_code)) is not None:
            raise Conflict(f"store channel {channel_code} has a location already", field="channel_code")
    elif type == "store":
        raise Invalid("a store location names its store channel", field="channel_code")
    if session.get(Location, code) is not None:
        raise Conflict(f"a location with code {code!r} exists already", field="code")
    is_store = type == "store"
    handling = handling_hours if handling_hours is not None else (2 if is_store else 24)
    _check_settings(online_floor, handling)
    now = utcnow()
    location = Location(
        code=code, name=name.strip(), type=type, channel_code=channel_code,
        address=address if address is not None else (channel.address if channel else None),
        latitude=latitude if latitude is not None else (channel.latitude if channel else None),
        longitude=longitude if longitude is not None else (channel.longitude if channel else None),
        online_floor=online_floor, ships=ships if ships is not None else type == "warehouse",
        pickup=pickup if pickup is not None else is_store, handling_hours=handling, active=True,
        created_at=now, updated_at=now)
    session.add(location)
    session.flush()
    wanted = _check_feeds(session, feeds) if feeds is not None else _default_feeds(session, type, channel_code)
    session.add_all([LocationFeed(location_code=code, channel_code=c) for c in wanted])
    session.flush()
    return location


def get_location(session: Session, code: str, *, field: str = "location") -> Location:
    """The location ``code``, or ``NotFound`` naming ``field``."""
    location = session.get(Location, code)
    if location is None:
        raise NotFound(f"no location {code!r}", field=field)
    return location


def update_location(session: Session, *, code: str, changes: Mapping[str, Any]) -> Location:
    """Change settings of a location (``code``, ``type`` and ``channel_code`` are fixed); ``feeds`` replaces the
    channels it feeds."""
    location = get_location(session, code, field="code")
    changes = dict(changes)
    feeds = changes.pop("feeds", None)
    for key, value in changes.items():
        if key not in ("name", "address", "latitude", "longitude", "online_floor", "ships", "pickup",
                       "handling_hours", "active"):
            raise Invalid(f"{key} cannot be changed", field=key)
        setattr(location, key, value)
    if (location.latitude is None) != (location.longitude is None):
        raise Invalid("give latitude and longitude together", field="latitude")
    _check_settings(location.online_floor, location.handling_hours)
    if feeds is not None:
        wanted = _check_feeds(session, feeds)
        session.execute(delete(LocationFeed).where(LocationFeed.location_code == code))
        session.add_all([LocationFeed(location_code=code, channel_code=c) for c in wanted])
    location.updated_at = utcnow()
    session.flush()
    return location


def list_locations(session: Session, *, type: str | None = None) -> list[Location]:
    q = select(Location).order_by(Location.code)
    if type:
        q = q.where(Location.type == type)
    return list(session.scalars(q))


def feeds_of(session: Session, codes: Iterable[str]) -> dict[str, list[str]]:
    """The channels each location feeds."""
    out: dict[str, list[str]] = {c: [] for c in codes}
    for loc, ch in session.execute(select(LocationFeed.location_code, LocationFeed.channel_code)
                                   .where(LocationFeed.location_code.in_(list(out)))
                                   .order_by(LocationFeed.channel_code)):
        out[loc].append(ch)
    return out


def feeding(session: Session, channel_code: str) -> list[Location]:
    """The active locations whose stock the channel may promise (a store channel: its own shelf first)."""
    q = (select(Location).join(LocationFeed, LocationFeed.location_code == Location.code)
         .where(LocationFeed.channel_code == channel_code, Location.active.is_(True)).order_by(Location.code))
    return list(session.scalars(q))
