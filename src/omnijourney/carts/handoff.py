"""Handing a cart to another device or a store's POS: a short single-use code and its QR code.

Codes are 8 characters from an alphabet without look-alikes (no 0/O, 1/I/L), ~8.5e11 possibilities, so they
can be read aloud at a counter or typed on a phone. A code expires (``OMNI_CART_HANDOFF_TTL_S``, default 15
minutes) and is claimed at most once: the claim is one conditional ``UPDATE ... WHERE claimed_at IS NULL AND
expires_at > now``, so two devices claiming at once cannot both win.
"""

from __future__ import annotations

import io
import secrets
from datetime import timedelta
from functools import lru_cache

import segno
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import update
from sqlalchemy.orm import Session

from omnijourney.carts import service
from omnijourney.carts.models import CartHandoff
from omnijourney.core.errors import Conflict, Invalid, NotFound, OmniError
from omnijourney.core.time import utcnow

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8
MIN_TTL_S, MAX_TTL_S = 60, 24 * 3600


class Gone(OmniError):
    status = 410
    code = "gone"


class HandoffSettings(BaseSettings):
    """``OMNI_CART_HANDOFF_TTL_S``: how long a handoff code stays valid."""

    model_config = SettingsConfigDict(env_prefix="OMNI_CART_", extra="ignore")

    handoff_ttl_s: int = Field(default=900, ge=MIN_TTL_S, le=MAX_TTL_S)


@lru_cache
def handoff_settings() -> HandoffSettings:
    return HandoffSettings()


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(raw: str) -> str:
    """What a person typed, as stored: upper case, without spaces or dashes."""
    return raw.strip().upper().replace("-", "").replace(" ", "")


def link(code: str, public_url: str | None) -> str:
    """What the QR code holds: a link that opens the cart when a public URL is configured, else the code
    itself (a POS scanner types it into the claim form)."""
    return f"{public_url.rstrip('/')}/handoff/{code}" if public_url else code


def create_handoff(session: Session, *, cart_id: str, channel_code: str, ttl_seconds: int | None = None
                   ) -> CartHandoff:
    """A new code for the cart, valid for ``ttl_seconds`` (default from settings)."""
    ttl = handoff_settings().handoff_ttl_s if ttl_seconds is None else ttl_seconds
    if not MIN_TTL_S <= ttl <= MAX_TTL_S:
        raise Invalid(f"ttl_seconds must be from {MIN_TTL_S} to {MAX_TTL_S}", field="ttl_seconds")
    view = service.cart_view(session, cart_id=cart_id)
    if view.cart.status != "active":
        raise Conflict(f"cart {cart_id} is {view.cart.status}", field="cart_id", code="cart_not_active")
    channel = service.catalog.get_channel(session, code=channel_code, field="channel")
    code = new_code()
    while session.get(CartHandoff, code) is not None:  # astronomically rare; cheap to rule out
        code = new_code()
    now = utcnow()
    row = CartHandoff(code=code, cart_id=cart_id, channel_code=channel.code, created_at=now,
                      expires_at=now + timedelta(seconds=ttl))
    session.add(row)
    session.flush()
    return row


def valid_handoff(session: Session, *, code: str) -> CartHandoff:
    """The handoff ``code`` if it can still be claimed; else 404, 409 ``handoff_claimed`` or 410 ``handoff_expired``."""
    row = session.get(CartHandoff, normalise_code(code))
    if row is None:
        raise NotFound(f"no handoff code {code!r}", field="code", code="handoff_not_found")
    if row.claimed_at is not None:
        raise Conflict(f"handoff code {row.code} was claimed already", field="code", code="handoff_claimed")
    if row.expires_at <= utcnow():
        raise Gone(f"handoff code {row.code} expired", field="code", code="handoff_expired")
    return row


def claim(session: Session, *, code: str, channel_code: str) -> service.CartView:
    """Open the cart behind ``code`` in ``channel_code`` (another device, a POS); the code is used up.

    Records "Cart Viewed" in the claiming channel with ``handoff_code`` and ``handed_off_from``.
    """
    code = normalise_code(code)
    now = utcnow()
    won = session.execute(
        update(CartHandoff)
        .where(CartHandoff.code == code, CartHandoff.claimed_at.is_(None), CartHandoff.expires_at > now)
        .values(claimed_at=now, claimed_channel=channel_code)
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:
        valid_handoff(session, code=code)  # raises the reason
        raise Conflict(f"handoff code {code} was claimed already", field="code", code="handoff_claimed")
    row = session.get(CartHandoff, code, populate_existing=True)
    assert row is not None
    cart, channel = service.lock_for_change(session, cart_id=row.cart_id, channel_code=channel_code)
    service.touch(session, cart=cart, channel=channel)
    view = service.view_of(session, cart=cart, channel_code=channel.code)
    service.record_view(session, view=view, channel_code=channel.code,
                        extra={"handoff_code": code, "handed_off_from": row.channel_code})
    return view


def qr(content: str) -> segno.QRCode:
    """A standard QR code of ``content``, never a Micro QR code.

    ``segno.make`` picks a Micro QR symbol for short content (a bare 8-character code fits one), which phone
    cameras and most POS scanners cannot read; ``make_qr`` always makes the standard symbol.
    """
    return segno.make_qr(content, error="m")


def qr_svg(content: str) -> bytes:
    """The QR code of ``content`` as an SVG document (no XML declaration, so it can be inlined in HTML)."""
    out = io.BytesIO()
    qr(content).save(out, kind="svg", scale=4, xmldecl=False)
    return out.getvalue()


def qr_png(content: str) -> bytes:
    """The QR code of ``content`` as a PNG image."""
    out = io.BytesIO()
    qr(content).save(out, kind="png", scale=6)
    return out.getvalue()


def qr_png_data_uri(content: str) -> str:
    """The QR code of ``content`` as a ``data:image/png;base64,...`` URI."""
    return qr(content).png_data_uri(scale=6)
