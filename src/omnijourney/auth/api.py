"""Keys API: create, list, revoke server keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy import select

from omnijourney.api.deps import SessionDep, require
from omnijourney.auth import service
from omnijourney.auth.models import ApiKey
from omnijourney.auth.schemas import KeyCreate, KeyCreated, KeyRead
from omnijourney.auth.service import Principal

router = APIRouter(prefix="/keys", tags=["keys"])


@router.post("", status_code=201, response_model=KeyCreated)
def create_key(body: KeyCreate, session: SessionDep,
               _: Annotated[Principal, Depends(require("keys:write"))]) -> KeyCreated:
    row, plain = service.create_key(session, name=body.name, scopes=body.scopes)
    return KeyCreated(**KeyRead.model_validate(row, from_attributes=True).model_dump(), key=plain)


@router.get("", response_model=list[KeyRead])
def list_keys(session: SessionDep, _: Annotated[Principal, Depends(require("keys:read"))]) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


@router.delete("/{key_id}", status_code=204)
def revoke_key(key_id: str, session: SessionDep,
               _: Annotated[Principal, Depends(require("keys:write"))]) -> None:
    service.revoke_key(session, key_id=key_id)
