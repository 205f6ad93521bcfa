"""The test provider's "bank page": where a shopper completes a pending (3-D Secure) test payment.

``GET /payments/test-provider/authenticate/{ref}`` shows the amount and two buttons, "Authenticate" and "Fail", that
POST back to the same URL. The test provider then changes its own state and, after the answer is sent, delivers the
signed event to our webhook endpoint over HTTP (``OMNI_PAYMENTS__TEST_WEBHOOK_URL``, default
``{OMNI_PUBLIC_URL or this page's base URL}/api/v1/payments/webhooks/test``), exactly as a provider calls back: the
endpoint verifies the signature like any other. An event the endpoint does not acknowledge stays in the test
provider's outbox and goes with the next delivery.

``POST /payments/test-provider/api/authenticate/{ref}`` does the same for tests and scripts, and answers the signed
webhook (url, headers, body) so a test can deliver it itself (``"deliver": false``) or replay it.

Only while ``OMNI_PAYMENTS__TEST_PROVIDER`` is on (the default; switch it off in production).
"""

from __future__ import annotations

from html import escape
from urllib.parse import parse_qs

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse

from omnijourney.config import Settings
from omnijourney.core.errors import Conflict, Invalid, NotFound
from omnijourney.payments import providers
from omnijourney.payments.providers import ProviderError
from omnijourney.payments.schemas import SignedWebhook, TestAuthentication, TestAuthenticationRead
from omnijourney.payments.simulator import PAGE_PATH, TestProvider
from omnijourney.pricing.money import from_minor

router = APIRouter(tags=["test provider"], include_in_schema=False)
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"}
_STYLE = """body{font-family:system-ui,sans-serif;margin:0;padding:1rem;background:#f4f4f6;color:#222}
main{max-width:26rem;margin:2rem auto;background:#fff;padding:1.5rem;border-radius:.5rem}
button{font-size:1.05rem;padding:.7rem 1rem;border:0;border-radius:.4rem;margin:.3rem 0;width:100%}
.ok{background:#1a7f37;color:#fff}.no{background:#c62828;color:#fff}small{color:#666}"""


def _provider(request: Request) -> TestProvider:
    settings: Settings = request.app.state.settings
    if not providers.settings().payments.test_provider or not settings.payments.test_provider:
        raise NotFound("the test provider is switched off", field="ref")
    provider = providers.get("test", request.app.state.db)
    assert isinstance(provider, TestProvider)
    return provider


def webhook_url(request: Request) -> str:
    settings: Settings = request.app.state.settings
    if settings.payments.test_webhook_url:
        return settings.payments.test_webhook_url
    base = (settings.public_url or str(request.base_url)).rstrip("/")
    return f"{base}/api/v1/payments/webhooks/test"


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
                        f'content="width=device-width, initial-scale=1"><title>{escape(title)}</title>'
                        f"<style>{_STYLE}</style></head>\n<body><main><h1>{escape(title)}</h1>\n{body}\n"
                        "</main></body></html>\n", status_code=status, headers=_HEADERS)


def _intent(provider: TestProvider, ref: str) -> dict:
    try:
        return provider.intent(ref)
    except ProviderError:
        raise NotFound(f"no test payment {ref!r}", field="ref") from None


@router.get(PAGE_PATH + "{ref}", response_class=HTMLResponse)
def bank_page(ref: str, request: Request) -> HTMLResponse:
    pi = _intent(_provider(request), ref)
    amount = f"{from_minor(pi['amount'], pi['currency'].upper())} {pi['currency'].upper()}"
    card = pi["payment_method"]["card"]
    if pi["status"] != "requires_action":
        return _page("Nothing to confirm", f"<p>This payment of {escape(amount)} is not waiting for you "
                                           f"(<small>{escape(pi['status'])}</small>).</p>")
    return _page("Confirm your payment", (
        f"<p>Test bank: confirm the payment of <strong>{escape(amount)}</strong> with the {escape(card['brand'])} "
        f"card ending {escape(card['last4'])}.</p>"
        '<form method="post"><button class="ok" name="action" value="authenticate">Authenticate</button>'
        '<button class="no" name="action" value="fail">Fail</button></form>'
        "<p><small>No real bank is asked: this is Omnijourney's test provider.</small></p>"))


def _complete(request: Request, ref: str, action: str, background: BackgroundTasks, deliver: bool):
    provider = _provider(request)
    _intent(provider, ref)
    if action not in ("authenticate", "fail"):
        raise Invalid("action is authenticate or fail", field="action")
    try:
        event = provider.complete(ref, success=action == "authenticate")
    except ProviderError as exc:
        raise Conflict(exc.message, field="ref", code="not_pending") from None
    url = webhook_url(request)
    if deliver:  # after the answer, as a provider calls back on its own
        background.add_task(provider.deliver, url)
    return provider, event, url


@router.post(PAGE_PATH + "{ref}", response_class=HTMLResponse)
async def bank_page_answer(ref: str, request: Request, background: BackgroundTasks) -> HTMLResponse:
    form = parse_qs((await request.body()).decode(errors="replace"))
    action = (form.get("action") or [""])[0]
    try:
        _complete(request, ref, action, background, deliver=True)
    except Conflict as exc:
        return _page("Nothing to confirm", f"<p>{escape(exc.message)}</p>", status=409)
    done = "confirmed" if action == "authenticate" else "refused"
    return _page(f"Payment {done}", "<p>You can go back to the shop now.</p>")


@router.post("/payments/test-provider/api/authenticate/{ref}", response_model=TestAuthenticationRead)
def authenticate_api(ref: str, body: TestAuthentication, request: Request,
                     background: BackgroundTasks) -> TestAuthenticationRead:
    provider, event, url = _complete(request, ref, body.action, background, deliver=body.deliver)
    return TestAuthenticationRead(event_id=event.id, payment_intent=provider.intent(ref),
                                  webhook=SignedWebhook(url=url, headers=event.headers, body=event.body.decode()))


