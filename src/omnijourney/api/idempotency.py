"""``Idempotency-Key``: a retried request changes nothing a second time and gets the first answer again.

A client that lost an answer (a dropped connection, a double click, a POS that timed out) sends the same request
with the same key. The first request claims the key in its own transaction (an insert, so a concurrent twin waits
for it on the primary key) and stores its answer there; it commits with the change, or rolls back with it, in which
case the key was never used. A retry then gets the stored answer (header ``Idempotent-Replayed: true``); the same
key with a different request is refused (422 ``idempotency_key_reused``). Keys are per caller and route, and kept
for ``api.models.KEEP``; a job prunes older ones.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from omnijourney import jobs
from omnijourney.api.deps import SessionDep, current_principal
from omnijourney.api.models import PRUNE_JOB, IdempotentRequest
from omnijourney.auth.service import Principal
from omnijourney.core.errors import Conflict, Invalid
from omnijourney.core.time import utcnow
from omnijourney.db import dialect_insert

HEADER = "Idempotency-Key"
M = TypeVar("M", bound=BaseModel)


class Replay(Exception):  # the stored answer, to be sent again: not an error
    """The request was answered before: send the stored answer."""

    def __init__(self, status_code: int, body: Any) -> None:
        self.status_code, self.body = status_code, body


def replay_response(exc: Replay) -> JSONResponse:
    return JSONResponse(exc.body, status_code=exc.status_code, headers={"Idempotent-Replayed": "true"})


class Idempotency:
    """The request's key, claimed (or none was sent): :meth:`done` stores the answer with the change."""

    def __init__(self, session: Session, scope: str | None = None, key: str | None = None) -> None:
        self.session, self.scope, self.key = session, scope, key

    def done(self, answer: M, status_code: int = 200) -> M:
        """Keep ``answer`` for retries with this key (in the request's transaction); returns it."""
        if self.key is not None:
            row = self.session.get(IdempotentRequest, (self.scope, self.key))
            assert row is not None  # claimed by the dependency in this transaction
            row.status_code, row.body = status_code, answer.model_dump(mode="json")
            self.session.flush()
        return answer


async def _fingerprint(request: Request) -> str | None:
    """The request's key, checked, and a digest of what it asks (read here: the body is only awaitable)."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= 200 or not key.isprintable():
        raise Invalid(f"{HEADER} must be 1 to 200 printable characters", field=HEADER)
    body = await request.body()
    return hashlib.sha256(b"\n".join([request.url.path.encode(), request.url.query.encode(), body])).hexdigest()


def _idempotency(request: Request, session: SessionDep, fingerprint: Annotated[str | None, Depends(_fingerprint)],
                 principal: Annotated[Principal, Depends(current_principal)]) -> Idempotency:
    # not async: claiming may wait for a concurrent twin's transaction, which must not block the event loop
    if fingerprint is None:
        return Idempotency(session)
    key = request.headers[HEADER]
    route = request.scope.get("route")
    scope = f"{principal.kind}:{principal.id}:{request.method} {getattr(route, 'path_format', request.url.path)}"
    claimed = session.execute(
        dialect_insert(session, IdempotentRequest.__table__)
        .values(scope=scope, key=key, fingerprint=fingerprint, status_code=0, body={},
                created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["scope", "key"])
        .returning(IdempotentRequest.key)
    ).first() is not None
    if claimed:
        jobs.enqueue(session, PRUNE_JOB, delay_s=3600, unique_key=PRUNE_JOB)  # at most one pending
        return Idempotency(session, scope, key)
    stored = session.scalar(select(IdempotentRequest).where(IdempotentRequest.scope == scope,
                                                             IdempotentRequest.key == key))
    if stored is None or stored.status_code == 0:  # its transaction ended while we looked
        raise Conflict("a request with this Idempotency-Key is in progress; retry shortly", field=HEADER,
                       code="idempotency_key_in_use")
    if stored.fingerprint != fingerprint:
        raise Invalid(f"this {HEADER} was used for another request; use a new key for a new request", field=HEADER,
                      code="idempotency_key_reused")
    raise Replay(stored.status_code, stored.body)


IdempotencyDep = Annotated[Idempotency, Depends(_idempotency)]
