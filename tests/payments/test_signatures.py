"""Webhook signatures as Stripe documents them: ``t=...,v1=...`` over ``"{t}.{raw body}"``, HMAC-SHA256."""

from __future__ import annotations

import pytest

from omnijourney.payments import signatures
from omnijourney.payments.providers import WebhookInvalid

# computed independently of our code: printf '%s' '1492774577.{body}' | openssl dgst -sha256 -hmac whsec_test_secret
BODY = b'{"id": "evt_test_webhook", "object": "event"}'
T = 1492774577
V1 = "c137b1b62277d523cf8fed4dfbd0170a9a5b8a380e00cc3711d4bf0652f2ce7a"
SECRET = "whsec_test_secret"


def test_a_documented_signature_verifies() -> None:
    assert signatures.compute(T, BODY, SECRET) == V1
    assert signatures.verify(f"t={T},v1={V1}", BODY, [SECRET], tolerance_s=300, now=T + 10) == T
    # other schemes (v0 test signatures) are ignored; any of several v1 signatures may match (secret rotation)
    header = f"t={T},v1={'0' * 64},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39,v1={V1}"
    assert signatures.verify(header, BODY, [SECRET], tolerance_s=300, now=T) == T
    # the endpoint may hold several secrets while rolling them
    assert signatures.verify(f"t={T},v1={V1}", BODY, ["whsec_new", SECRET], tolerance_s=300, now=T) == T


@pytest.mark.parametrize(("header", "body", "secret", "now", "reason"), [
    (f"t={T},v1={V1}", BODY.replace(b"webhook", b"webhooK"), SECRET, T, "no signature matches"),
    (f"t={T},v1={V1}", BODY, "whsec_wrong", T, "no signature matches"),
    (f"t={T},v1={V1}", BODY, SECRET, T + 301, "more than the 300 s allowed"),
    (f"t={T + 1},v1={V1}", BODY, SECRET, T, "no signature matches"),  # the timestamp is signed too
    (f"t={T}", BODY, SECRET, T, "no v1 signature"),
    (f"v1={V1}", BODY, SECRET, T, "no timestamp"),
    (f"t=yesterday,v1={V1}", BODY, SECRET, T, "not a number"),
    (None, BODY, SECRET, T, "no Stripe-Signature header"),
])
def test_a_bad_signature_is_refused_with_its_reason(header: str | None, body: bytes, secret: str, now: int,
                                                    reason: str) -> None:
    with pytest.raises(WebhookInvalid, match=reason):
        signatures.verify(header, body, [secret], tolerance_s=300, now=now)


def test_sign_makes_what_verify_accepts() -> None:
    header = signatures.sign(BODY, SECRET)
    assert signatures.verify(header, BODY, [SECRET], tolerance_s=300) > 0
