"""Customer 360 routes: the customer list and search, lookups by any identifier, a profile, the timeline."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session

from omnijourney.api.deps import SessionDep, SettingsDep, require
from omnijourney.auth.service import Principal
from omnijourney.core.channels import CHANNELS
from omnijourney.core.errors import Invalid
from omnijourney.customers import service
from omnijourney.customers.models import Customer
from omnijourney.customers.schemas import CustomerRead, CustomerSummary, TimelinePage
from omnijourney.tracking.messages import MESSAGE_TYPES

router = APIRouter(prefix="/customers", tags=["customers"])
CanRead = Annotated[Principal, Depends(require("customers:read"))]

_LIST_DESCRIPTION = f"""\
Customers, newest first (by `created_at`, when the person was first seen), merged profiles never listed.

Give at most one search: `name` (start of the first name, last name or name, any case; `ann sm` also finds first
name Ann with last name Sm...), `email_prefix` (at least {service.MIN_EMAIL_PREFIX} characters), `phone_prefix`
(at least {service.MIN_PHONE_DIGITS} digits, international or as dialled in the default region), or an exact
identifier: `email`, `phone` (also WhatsApp), `user_id`, `anonymous_id`, `identifier=TYPE:VALUE` (any type, e.g.
`loyalty_card:LC123`); exact lookups answer the profiles owning it, whole.

The answer is a JSON array. When there is more, the `Link` header has the next page (`rel="next"`) and
`X-Next-Cursor` its cursor: pass it back as `cursor` with the same search."""
_PAGE_HEADERS = {
    "Link": {"description": 'the next page: `<url>; rel="next"` (absent on the last page)',
             "schema": {"type": "string"}},
    "X-Next-Cursor": {"description": "the next page's `cursor` (absent on the last page)",
                      "schema": {"type": "string"}},
}
_EXACT = ("email", "phone", "user_id", "anonymous_id", "identifier")


@router.get("", response_model=list[CustomerSummary], description=_LIST_DESCRIPTION,
            responses={200: {"headers": _PAGE_HEADERS}})
def list_customers(request: Request, response: Response, session: SessionDep, settings: SettingsDep, _: CanRead,
                   name: str | None = None, email: str | None = None,
                   email_prefix: str | None = None, phone: str | None = None, phone_prefix: str | None = None,
                   user_id: str | None = None, anonymous_id: str | None = None,
                   identifier: Annotated[str | None, Query(description="TYPE:VALUE, e.g. loyalty_card:LC123")] = None,
                   limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
                   cursor: Annotated[str | None, Query(description="`X-Next-Cursor` of the previous page")] = None,
                   ) -> list[Customer]:
    """The customer list and search (the OpenAPI description is ``_LIST_DESCRIPTION``)."""
    given = {k: v for k, v in {"name": name, "email": email, "email_prefix": email_prefix, "phone": phone,
                               "phone_prefix": phone_prefix, "user_id": user_id, "anonymous_id": anonymous_id,
                               "identifier": identifier}.items() if v is not None}
    if len(given) > 1:
        raise Invalid(f"give at most one of {', '.join(given)}", field="query")
    (key, value), = given.items() if given else ((None, None),)
    if key in _EXACT:
        assert value is not None
        if key == "identifier":
            key, sep, value = value.partition(":")
            if not sep or not key or not value:
                raise Invalid("identifier must look like TYPE:VALUE", field="identifier")
        found = service.find(session, id_type=key, value=value, settings=settings.identity)
        return sorted(found, key=lambda c: (c.created_at, c.id), reverse=True)
    query = service.CustomerSearch(name=name, email_prefix=email_prefix, phone_prefix=phone_prefix)
    rows, next_cursor = service.search(session, query=query, settings=settings.identity, limit=limit, cursor=cursor)
    if next_cursor is not None:
        response.headers["Link"] = f'<{request.url.include_query_params(cursor=next_cursor)}>; rel="next"'
        response.headers["X-Next-Cursor"] = next_cursor
    return rows


def customer_orders(session: Session, customer_id: str) -> dict[str, Any]:
    # the orders domain answers for its own rows; the customer 360 only shows them
    from omnijourney.orders.orders import customer_summary

    return customer_summary(session, customer_id)


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
        orders=customer_orders(session, c.id),
    )


@router.get("/{customer_id}/timeline", response_model=TimelinePage)
def get_timeline(customer_id: str, session: SessionDep, _: CanRead,
                 limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50, cursor: str | None = None,
                 channel: Annotated[str | None, Query(
                     description="a kind of channel (a catalog channel's code goes in `channel_code`)",
                     json_schema_extra={"enum": sorted(CHANNELS)})] = None,
                 channel_code: Annotated[str | None, Query(
                     description="a catalog channel's code, e.g. web or S01: a store's events are those with its "
                                 "store code, another channel's those of its kind")] = None,
                 type: Annotated[str | None, Query(description="the message type",
                                                   json_schema_extra={"enum": list(MESSAGE_TYPES)})] = None,
                 event: Annotated[str | None, Query(description="event name, e.g. Order Completed")] = None,
                 ) -> TimelinePage:
    """Everything the person did in every channel, newest first; follow ``next_cursor`` for more."""
    customer, events, next_cursor = service.timeline(session, customer_id=customer_id, limit=limit, cursor=cursor,
                                                     channel=channel, channel_code=channel_code, type=type,
                                                     event=event)
    return TimelinePage(customer_id=customer.id, items=[service.event_dict(e) for e in events],
                        next_cursor=next_cursor)
