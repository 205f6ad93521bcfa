"""Sources API (``/api/v1/sources``), each source's debugger (its rejections and latest events) and
installation of the Segment-compatible ``/v1`` paths."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query

from omnijourney.api.deps import SessionDep, require
from omnijourney.auth.service import Principal
from omnijourney.tracking import debugger, sources
from omnijourney.tracking.models import Source
from omnijourney.tracking.schemas import (
    RejectionRead,
    RejectionsPage,
    SourceCreate,
    SourceEventRead,
    SourceEventsPage,
    SourceRead,
)

router = APIRouter(prefix="/sources", tags=["sources"])


@router.post("", status_code=201, response_model=SourceRead)
def create_source(body: SourceCreate, session: SessionDep,
                  _: Annotated[Principal, Depends(require("sources:write"))]) -> Source:
    return sources.create_source(session, name=body.name, channel=body.channel.value, store_code=body.store)


@router.get("", response_model=list[SourceRead])
def list_sources(session: SessionDep,
                 _: Annotated[Principal, Depends(require("sources:read"))]) -> list[Source]:
    return sources.list_sources(session)


CanRead = Annotated[Principal, Depends(require("sources:read"))]
_NOT_FOUND = {404: {"description": "No source has this id"}}


@router.get("/{source_id}", response_model=SourceRead, responses=_NOT_FOUND)
def get_source(source_id: str, session: SessionDep, _: CanRead) -> Source:
    return sources.get_source(session, source_id)


@router.get("/{source_id}/rejections", response_model=RejectionsPage, responses=_NOT_FOUND)
def list_rejections(source_id: str, session: SessionDep, _: CanRead,
                    limit: Annotated[int, Query(ge=1, le=debugger.MAX_REJECTIONS_PAGE)] = 50) -> RejectionsPage:
    """The messages the tracking API refused for this source, newest first: in a batch (answered 200 with
    them in ``rejected``) and in single calls (answered 400). The latest 1,000 per source are kept. Calls
    with an unknown write key belong to no source and are not recorded."""
    rows = debugger.latest_rejections(session, source_id=source_id, limit=limit)
    return RejectionsPage(source_id=source_id, kept=debugger.REJECTIONS_KEPT, items=[
        RejectionRead(at=r.at, message_id=r.message_id, code=r.code, message=r.message, field=r.field,
                      sample=r.sample) for r in rows])


_EVENTS_DESCRIPTION = (
    "The events this source sent lately, newest first (by id); follow `next_cursor` for more.\n\n"
    f"Only the latest {debugger.EVENTS_WINDOW:,} events of all sources together (`window`) are looked at, so a "
    "quiet source among busy ones may show few or none: `events` has no index by source, on purpose (it is the "
    "hottest insert path). The window is fixed by the first page; a page that finds nothing has no cursor."
)


@router.get("/{source_id}/events", response_model=SourceEventsPage, responses=_NOT_FOUND,
            description=_EVENTS_DESCRIPTION)
def list_events(source_id: str, session: SessionDep, _: CanRead,
                limit: Annotated[int, Query(ge=1, le=debugger.MAX_EVENTS_PAGE)] = 50,
                cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
                ) -> SourceEventsPage:
    """The source's latest events (the OpenAPI description is ``_EVENTS_DESCRIPTION``)."""
    rows, next_cursor = debugger.latest_events(session, source_id=source_id, limit=limit, cursor=cursor)
    return SourceEventsPage(source_id=source_id, window=debugger.EVENTS_WINDOW, next_cursor=next_cursor, items=[
        SourceEventRead(message_id=e.message_id, type=e.type, event=e.event, channel=e.channel, store=e.store_code,
                        user_id=e.user_id, anonymous_id=e.anonymous_id, customer_id=e.customer_id,
                        timestamp=e.timestamp, received_at=e.received_at, properties=e.properties,
                        traits=e.traits, context=e.context) for e in rows])


def install(app: FastAPI) -> None:
    """Mount the Segment HTTP Tracking API paths on ``app``."""
    from omnijourney.tracking.segment_api import install as install_segment

    install_segment(app)
