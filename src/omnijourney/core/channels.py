"""The kinds of channel a brand meets its customers in."""

from __future__ import annotations

from enum import StrEnum


class ChannelType(StrEnum):
    web = "web"
    app = "app"
    store = "store"
    call_center = "call_center"
    email = "email"
    chat = "chat"
    whatsapp = "whatsapp"
    messenger = "messenger"
    sms = "sms"
    social = "social"
    marketplace = "marketplace"


CHANNELS: frozenset[str] = frozenset(c.value for c in ChannelType)
