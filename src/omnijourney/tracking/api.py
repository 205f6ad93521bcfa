"""Sources API (``/api/v1/sources``) and installation of the Segment-compatible ``/v1`` paths."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI

from omnijourney.api.deps import SessionDep, require
from omnijourney.auth.service import Principal
from omnijourney.tracking import sources
from omnijourney.tracking.models import Source
from omnijourney.tracking.schemas import SourceCreate, SourceRead

router = APIRouter(prefix="/sources", tags=["sources"])


@router.post("", status_code=201, response_model=SourceRead)
def create_source(body: SourceCreate, session: SessionDep,
                  _: Annotated[Principal, Depends(require("sources:write"))]) -> Source:
    return sources.create_source(session, name=body.name, channel=body.channel.value, store_code=body.store)


@router.get("", response_model=list[SourceRead])
def list_sources(session: SessionDep,
                 _: Annotated[Principal, Depends(require("sources:read"))]) -> list[Source]:
    return sources.list_sources(session)


def install(app: FastAPI) -> None:
    """Mount the Segment HTTP Tracking API paths on ``app``."""
    from omnijourney.tracking.segment_api import install as install_segment

    install_segment(app)
