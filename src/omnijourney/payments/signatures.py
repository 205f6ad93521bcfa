"""Stripe's webhook signature scheme (``Stripe-Signature: t=<unix time>,v1=<hex>[,v1=<hex>...]``).

The signed payload is ``"{t}.{raw body}"``; each ``v1`` is the hex HMAC-SHA256 of it with the endpoint's secret.
A receiver accepts the event when any ``v1`` matches (several appear while a secret is rolled), compares in constant
time, and refuses a timestamp older than its tolerance (300 s by default), so a captured request cannot be replayed
later. Other schemes in the header (``v0`` test signatures) are ignored. The built-in test provider signs its events
the same way, with its own secret.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

from omnijourney.payments.providers import WebhookInvalid

HEADER = "Stripe-Signature"
SCHEME = "v1"


def compute(timestamp: int, body: bytes, secret: str) -> str:
    """The hex ``v1`` signature of ``body`` sent at ``timestamp``."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header value for ``body`` (now, unless ``timestamp`` is given)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},{SCHEME}={compute(t, body, secret)}"


def verify(header: str | None, body: bytes, secrets: Sequence[str], *, tolerance_s: int,
           now: float | None = None) -> int:
    """Check ``header`` against ``body`` with any of ``secrets``; returns the signed timestamp, or raises
    :class:`WebhookInvalid` with the reason (no header, malformed, no v1 signature, too old, no match)."""
    if not header:
        raise WebhookInvalid(f"no {HEADER} header")
    if not secrets:
        raise WebhookInvalid("no webhook secret is configured for this provider")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        prefix, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if prefix == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise WebhookInvalid(f"{HEADER}: the timestamp {value!r} is not a number") from None
        elif prefix == SCHEME:
            signatures.append(value)
    if timestamp is None:
        raise WebhookInvalid(f"{HEADER}: no timestamp (t=)")
    if not signatures:
        raise WebhookInvalid(f"{HEADER}: no {SCHEME} signature")
    now = time.time() if now is None else now
    if timestamp < now - tolerance_s:
        raise WebhookInvalid(f"{HEADER}: signed {int(now - timestamp)} s ago, more than the {tolerance_s} s allowed "
                             "(a replayed request?)")
    expected = [compute(timestamp, body, s) for s in secrets]
    # every candidate is compared, each in constant time: how far a guess matches is never visible in the timing
    matched = False
    for sig in signatures:
        for exp in expected:
            matched |= hmac.compare_digest(sig.encode(), exp.encode())
    if not matched:
        raise WebhookInvalid(f"{HEADER}: no signature matches the body with this endpoint's secret")
    return timestamp
