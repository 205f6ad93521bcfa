"""Payments' tables and background work, registered by importing this module (``omnijourney.models`` does).

Every payments job calls a provider, so each is ``external``: it runs with no transaction open and opens its own
short ones (see ``jobs.handler``); all are idempotent through the providers' idempotency keys.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from decimal import Decimal
from typing import Any

from omnijourney import jobs
from omnijourney.core.errors import Conflict, NotFound
from omnijourney.db import Database
from omnijourney.jobs import service as job_service
from omnijourney.payments import models, refunds, webhooks  # noqa: F401  (tables; the whole service)
from omnijourney.payments.providers import ProviderUnavailable
from omnijourney.payments.service import CAPTURE_JOB, RECONCILE_JOB, REFUND_JOB, VOID_JOB, capture, void

log = logging.getLogger(__name__)

@jobs.handler(RECONCILE_JOB, external=True)
def _reconcile(db: Database, args: dict[str, Any]) -> None:
    """Void what a checkout's payments still hold without an order at the deadline (the order never committed)."""
    with suppress(NotFound):  # nothing of it was committed
        void(db, args["payment_ids"], only_orphans=True)


@jobs.handler(VOID_JOB, external=True)
def _void_job(db: Database, args: dict[str, Any]) -> None:
    void(db, args["payment_ids"], only_orphans=bool(args.get("only_orphans")))


@jobs.handler(CAPTURE_JOB, external=True)
def _capture_job(db: Database, args: dict[str, Any]) -> None:
    amount = Decimal(args["amount"]) if args.get("amount") is not None else None
    try:
        # the job ends in the transaction that records the capture: one commit, not two
        capture(db, args["payment_id"], amount=amount, also=job_service.complete)
    except Conflict as exc:  # nothing to capture, or refused for good: recorded on the payment, retrying cannot help
        log.warning("capture of payment %s not done: %s", args["payment_id"], exc.message)


@jobs.handler(REFUND_JOB, external=True)
def _refund_job(db: Database, args: dict[str, Any]) -> None:
    results = refunds.send_refunds(db, args["requests"])
    if waiting := [r for r in results if r.status == "pending"]:
        raise ProviderUnavailable(waiting[0].code or "unavailable", f"{len(waiting)} refund(s) not answered yet")
