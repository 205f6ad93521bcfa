"""Provider events, applied in the webhook's transaction (the route has verified the signature)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from omnijourney import jobs, locks
from omnijourney.core.ids import new_id
from omnijourney.core.time import utcnow
from omnijourney.db import dialect_insert
from omnijourney.payments import refunds
from omnijourney.payments.models import Payment, PaymentOperation
from omnijourney.payments.providers import WebhookEvent
from omnijourney.payments.service import _CAPTURED, _HOLDING, VOID_JOB, _changed, find
from omnijourney.pricing.money import to_minor


def apply_event(session: Session, *, provider: str, event: WebhookEvent) -> str:
    """Apply a verified provider event in the webhook's transaction; returns what happened: ``applied``,
    ``duplicate`` (this event id was applied before), ``ignored`` (nothing to change) or ``unknown`` (not a payment
    of ours). Listeners (:func:`on_change`) hear of a pending payment's end."""
    p = None
    if event.payment_id:
        p = session.get(Payment, event.payment_id)
        if p is not None and p.provider != provider:
            p = None
    if p is None and event.provider_ref:
        p = session.scalar(select(Payment).where(Payment.provider == provider,
                                                 Payment.provider_ref == event.provider_ref))
    if p is None:
        return "unknown"
    event_key = f"{provider}:{event.id}"[:200]
    claimed = session.execute(dialect_insert(session, PaymentOperation.__table__).values(
        id=new_id(), payment_id=p.id, kind="webhook", phase="event", status=event.status or "ignored",
        event_id=event_key, provider_ref=event.provider_ref, code=event.decline_code,
        message=(event.decline_reason or "")[:1000] or None, details={"type": event.type}, created_at=utcnow(),
    ).on_conflict_do_nothing(index_elements=["event_id"]).returning(PaymentOperation.id)).first()
    if claimed is None:  # a replay (or its concurrent twin, which waited for this one's commit)
        return "duplicate"
    p = locks.row(session, Payment, p.id)
    if event.status == "refund_failed":
        done = refunds.failed_later(session, p, refund_ref=event.refund_ref or "", code=event.decline_code,
                                    reason=event.decline_reason)
        return "applied" if done is not None else "ignored"
    before = p.status
    if event.status == "authorised" and before in ("new", "pending"):
        p.status, p.next_action_url = "authorised", None
        p.authorised_minor = to_minor(event.amount, p.currency) if event.amount else p.amount_minor
    elif event.status == "declined" and before in ("new", "pending"):
        p.status = "declined"
        p.decline_code = (event.decline_code or "declined")[:100]
        p.decline_reason = (event.decline_reason or "The payment was declined.")[:500]
    elif event.status == "voided" and before in _HOLDING:
        p.status = "voided"
    else:
        return "ignored"
    p.provider_ref = p.provider_ref or event.provider_ref
    p.updated_at = utcnow()
    session.flush()
    if p.status in ("declined", "voided") and p.order_id is None:
        # the checkout cannot complete: what its other tenders hold goes back (a job: no provider call here)
        others = [q.id for q in find(session, ref=p.ref) if q.id != p.id and q.order_id is None
                  and (q.status in _HOLDING or q.status in _CAPTURED)]
        if others:
            jobs.enqueue(session, VOID_JOB, {"payment_ids": others, "only_orphans": True})
    if before != "new" and p.void_requested_at is None:
        _changed(session, p)
    return "applied"


