"""Customer 360 routes: a profile, lookups by any identifier, the timeline."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from omnijourney.api.deps import SessionDep, SettingsDep, require
from omnijourney.auth.service import Principal
from omnijourney.core.errors import Invalid
from omnijourney.customers import service
from omnijourney.customers.schemas import CustomerRead, CustomerSummary, TimelinePage

router = APIRouter(prefix="/customers", tags=["customers"])
CanRead = Annotated[Principal, Depends(require("customers:read"))]


@router.get("", response_model=list[CustomerSummary])
def find_customers(session: SessionDep, settings: SettingsDep, _: CanRead,
                   email: str | None = None, phone: str | None = None, user_id: str | None = None,
                   anonymous_id: str | None = None,
                   identifier: Annotated[str | None, Query(description="TYPE:VALUE, e.g. loyalty_card:LC123")] = None,
                   ) -> list[object]:
    """The profiles that own an identifier (merged profiles answer with their survivor)."""
    given = {k: v for k, v in {"email": email, "phone": phone, "user_id": user_id,
                               "anonymous_id": anonymous_id, "identifier": identifier}.items() if v}
    if len(given) != 1:
        raise Invalid("give exactly one of email, phone, user_id, anonymous_id, identifier", field="query")
    (key, value), = given.items()
    if key == "identifier":
        key, sep, value = value.partition(":")
        if not sep or not key or not value:
            raise Invalid("identifier must look like TYPE:VALUE", field="identifier")
    return service.find(session, id_type=key, value=value, settings=settings.identity)


@router.get("/{customer_id}", response_model=CustomerRead)
def get_customer(customer_id: str, session: SessionDep, _: CanRead) -> CustomerRead:
    """Customer 360: traits, identities, consent, channels seen, first and last seen, merge history."""
    p = service.profile(session, customer_id=customer_id)
    c = p.customer
    return CustomerRead(
        id=c.id, traits=c.traits, trait_meta=c.trait_meta, consent=c.consent, created_at=c.created_at,
        identities=[{"type": i.type, "value": i.value, "first_seen": i.first_seen, "source_id": i.source_id}
                    for i in p.identities],
        channels=p.channels, first_seen=p.first_seen, last_seen=p.last_seen, events=p.events,
        merged_from=[{"merged_id": m.merged_id, "at": m.at, "message_id": m.message_id, "source_id": m.source_id,
                      "identifiers": m.identifiers, "reason": m.reason} for m in p.merged_from],
    )


@router.get("/{customer_id}/timeline", response_model=TimelinePage)
def get_timeline(customer_id: str, session: SessionDep, _: CanRead,
                 limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50, cursor: str | None = None,
                 channel: str | None = None,
                 type: Annotated[str | None, Query(description="track, identify, page, screen, ...")] = None,
                 event: Annotated[str | None, Query(description="event name, e.g. Order Completed")] = None,
                 ) -> TimelinePage:
    """Everything the person did in every channel, newest first; follow ``next_cursor`` for more."""
    customer, events, next_cursor = service.timeline(session, customer_id=customer_id, limit=limit, cursor=cursor,
                                                     channel=channel, type=type, event=event)
    return TimelinePage(customer_id=customer.id, items=[service.event_dict(e) for e in events],
                        next_cursor=next_cursor)
