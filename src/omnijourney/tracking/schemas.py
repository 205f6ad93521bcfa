"""Request and response shapes of the sources API and its debugger."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

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


class RejectionRead(BaseModel):
    """A message the tracking API refused for the source, as the batch answer listed it, plus what was sent;
    or a warning about a message it stored (a ``warning_*`` code: an event time replaced by the clock-skew
    rule, an email or phone trait that is not one)."""

    model_config = ConfigDict(populate_by_name=True)

    at: datetime = Field(description="when the request was received (UTC)")
    message_id: str | None = Field(alias="messageId")
    code: str
    message: str
    field: str | None
    sample: Any = Field(description="the message as received: an object, or its text cut to 2 KB when it was "
                                    "not an object or was bigger")

    @computed_field(description="true for a warning (a warning_* code): the message was stored anyway")  # type: ignore[prop-decorator]
    @property
    def stored(self) -> bool:
        return self.code.startswith("warning_")


class RejectionsPage(BaseModel):
    source_id: str
    kept: int = Field(description="how many of the latest rejections are kept per source")
    items: list[RejectionRead]


class SourceEventRead(BaseModel):
    message_id: str
    type: str
    event: str | None
    channel: str
    store: str | None
    user_id: str | None
    anonymous_id: str | None
    customer_id: str | None
    timestamp: datetime
    received_at: datetime
    properties: dict[str, Any]
    traits: dict[str, Any] | None
    context: dict[str, Any] | None


class SourceEventsPage(BaseModel):
    source_id: str
    window: int = Field(description="only the latest this many events (by id, all sources together) are looked at")
    items: list[SourceEventRead]
    next_cursor: str | None
