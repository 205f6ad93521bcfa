"""Channels: the web shop, the app, each store, the call center, marketplaces; each with a currency, a market
and a default price list. Functions take a ``Session``, flush and never commit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from omnijourney.catalog.models import Channel
from omnijourney.core.channels import CHANNELS
from omnijourney.core.errors import Conflict, Invalid, NotFound
from omnijourney.core.time import utcnow


def _check_currency(currency: str) -> str:
    if len(currency) != 3 or not currency.isascii() or not currency.isalpha() or not currency.isupper():
        raise Invalid(f"currency {currency!r} is not a three-letter ISO 4217 code such as EUR", field="currency")
    return currency


def _check_market(market: str) -> str:
    if not (2 <= len(market) <= 8) or not market.isascii() or not market.replace("-", "").isalnum() \
            or market != market.upper():
        raise Invalid(f"market {market!r} is not an upper-case country code such as DE", field="market")
    return market


def create_channel(session: Session, *, code: str, name: str, type: str, currency: str, market: str,
                   default_price_list: str | None = None, address: str | None = None,
                   latitude: float | None = None, longitude: float | None = None) -> Channel:
    """Register a channel; a store channel's ``code`` is the ``store_code`` its POS sources send."""
    if type not in CHANNELS:
        raise Invalid(f"unknown channel type {type!r}: one of {', '.join(sorted(CHANNELS))}", field="type")
    if (latitude is None) != (longitude is None):
        raise Invalid("give latitude and longitude together", field="latitude" if latitude is None else "longitude")
    if type != "store" and (address or latitude is not None):
        raise Invalid("only store channels have an address and coordinates", field="address")
    if session.get(Channel, code) is not None:
        raise Conflict(f"a channel with code {code!r} exists already", field="code")
    now = utcnow()
    channel = Channel(code=code, name=name.strip(), type=type, currency=_check_currency(currency),
                      market=_check_market(market), default_price_list=default_price_list, address=address,
                      latitude=latitude, longitude=longitude, active=True, created_at=now, updated_at=now)
    session.add(channel)
    try:
        session.flush()
    except IntegrityError:  # created by a concurrent request since the check above
        raise Conflict(f"a channel with code {code!r} exists already", field="code")
    return channel


def get_channel(session: Session, *, code: str, field: str = "channel") -> Channel:
    """The channel ``code``, or ``NotFound`` naming ``field``."""
    channel = session.get(Channel, code)
    if channel is None:
        raise NotFound(f"no channel {code!r}", field=field)
    return channel


def update_channel(session: Session, *, code: str, changes: Mapping[str, Any]) -> Channel:
    """Change the given fields of a channel (``code`` and ``type`` are fixed)."""
    channel = get_channel(session, code=code, field="code")
    changes = dict(changes)
    if "currency" in changes:
        _check_currency(changes["currency"])
    if "market" in changes:
        _check_market(changes["market"])
    if channel.type != "store" and any(changes.get(k) is not None for k in ("address", "latitude", "longitude")):
        raise Invalid("only store channels have an address and coordinates", field="address")
    for key, value in changes.items():
        if key not in ("name", "currency", "market", "default_price_list", "address", "latitude", "longitude",
                       "active"):
            raise Invalid(f"{key} cannot be changed", field=key)
        setattr(channel, key, value)
    if (channel.latitude is None) != (channel.longitude is None):
        raise Invalid("give latitude and longitude together", field="latitude")
    channel.updated_at = utcnow()
    session.flush()
    return channel


def list_channels(session: Session, *, type: str | None = None) -> list[Channel]:
    q = select(Channel).order_by(Channel.code)
    if type:
        q = q.where(Channel.type == type)
    return list(session.scalars(q))
