"""Request and response shapes of the sources API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from omnijourney.core.channels import ChannelType


class SourceCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    channel: ChannelType
    store: str | None = Field(default=None, max_length=64)


class SourceRead(BaseModel):
    id: str
    name: str
    channel: str
    store_code: str | None
    write_key: str
    enabled: bool
    created_at: datetime
