"""The page a phone opens after scanning a handoff QR code (``{OMNI_PUBLIC_URL}/handoff/{code}``).

``GET /handoff/{code}`` shows what the cart holds and a "Continue with this cart here" button; the button POSTs
to the same URL, which claims the code (channel ``web``) and gives this device the cart in the ``omni_cart``
cookie. GET never claims: link previewers and scanners fetch links before anyone taps them. No API key: the
single-use, short-lived code is the credential. Plain HTML escaped with ``html.escape``, no JavaScript.

The storefront and POS will replace these pages; they are kept small on purpose.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from omnijourney.api.deps import DatabaseDep, SessionDep, SettingsDep
from omnijourney.carts import handoff, service
from omnijourney.carts.models import CartHandoff
from omnijourney.config import Settings
from omnijourney.core.errors import Conflict, OmniError
from omnijourney.pricing.money import fmt

router = APIRouter(tags=["handoff pages"], include_in_schema=False)

CLAIM_CHANNEL = "web"  # a phone that scanned the code continues in the web shop
CART_COOKIE = "omni_cart"
CART_COOKIE_MAX_AGE_S = 30 * 24 * 3600  # the cart outlives a browser restart
# the code is in the URL: keep it out of caches and Referer headers; no script may run on these pages
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"}

_STYLE = """body{font-family:system-ui,sans-serif;margin:0;padding:1rem;color:#222;background:#fafafa}
main{max-width:32rem;margin:0 auto}table{width:100%;border-collapse:collapse;margin:1rem 0}
th,td{padding:.4rem;border-bottom:1px solid #ddd;text-align:left}td.n,th.n{text-align:right}
small{color:#666}button{font-size:1.1rem;padding:.8rem 1.2rem;width:100%;border:0;border-radius:.4rem;
background:#1a5fb4;color:#fff}"""

# what a shopper reads for the reasons a code cannot be used (title, explanation)
_REASONS = {
    "handoff_not_found": ("Unknown code", "There is no cart for this code. Check the code, or ask for a new one."),
    "handoff_claimed": ("Code already used", "This cart was opened on another device already: each code works "
                                             "once. Ask for a new code to open it here."),
    "handoff_expired": ("Code expired", "This code is no longer valid. Ask for a new code to open the cart here."),
    "cart_not_active": ("Cart closed", "This cart can no longer be opened here: it was checked out or combined "
                                       "with another cart."),
}


def _document(title: str, body: str, *, status: int = 200) -> HTMLResponse:
    html = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n"
            f"<body><main>\n<h1>{escape(title)}</h1>\n{body}\n</main></body></html>\n")
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _cart_table(view: service.CartView) -> str:
    if not view.lines:
        return "<p>This cart is empty.</p>"
    currency, rows = view.cart.currency, []
    for ln in view.lines:
        info, quoted = view.items.get(ln.sku), view.quoted(ln.sku)
        name = escape(info.title) if info and info.title else escape(ln.sku)
        if quoted is not None and quoted.total is not None:
            price = escape(fmt(quoted.total, currency))
        else:
            price = f"<small>{escape(quoted.problem if quoted and quoted.problem else 'no price')}</small>"
        rows.append(f'<tr><td>{name}<br><small>{escape(ln.sku)}</small></td><td class="n">{ln.quantity}</td>'
                    f'<td class="n">{price}</td></tr>')
    total = view.quote.total
    total_cell = escape(fmt(total, currency)) if total is not None else "<small>priced at checkout</small>"
    return ('<table><thead><tr><th>Item</th><th class="n">Qty</th><th class="n">Price</th></tr></thead>\n'
            "<tbody>" + "\n".join(rows) + "</tbody>\n"
            f'<tfoot><tr><th colspan="2">Total</th><td class="n"><strong>{total_cell}</strong></td></tr></tfoot>'
            "</table>")


def _error_page(exc: OmniError) -> HTMLResponse:
    title, text = _REASONS.get(exc.code, ("This cart cannot be opened", exc.message))
    return _document(title, f"<p>{escape(text)}</p>", status=exc.status)


def _opened_page(view: service.CartView) -> HTMLResponse:
    return _document("Your cart is here", "<p>This cart is now open on this device.</p>\n" + _cart_table(view))


def _held_here(session: Session, request: Request, code: str) -> service.CartView | None:
    """The cart behind a used ``code`` when this device is the one that claimed it (its cookie holds the cart):
    reloading the confirmation page is not a second claim."""
    row = session.get(CartHandoff, handoff.normalise_code(code))
    if row is None or row.claimed_at is None or request.cookies.get(CART_COOKIE) != row.cart_id:
        return None
    return service.cart_view(session, cart_id=row.cart_id, channel_code=CLAIM_CHANNEL)


@router.get("/handoff/{code}", response_class=HTMLResponse)
def handoff_page(code: str, request: Request, session: SessionDep) -> HTMLResponse:
    """What the cart behind ``code`` holds and a button to continue with it here; claims nothing."""
    try:
        row = handoff.valid_handoff(session, code=code)
        view = service.cart_view(session, cart_id=row.cart_id, channel_code=CLAIM_CHANNEL)
        if view.cart.status != "active":  # checked out or merged since the code was made: the claim would fail
            raise Conflict(f"cart {view.cart.id} is {view.cart.status}", field="cart_id", code="cart_not_active")
    except OmniError as exc:
        held = _held_here(session, request, code) if exc.code == "handoff_claimed" else None
        return _opened_page(held) if held is not None else _error_page(exc)
    # no action attribute: the form posts to this very URL, whatever prefix the public URL has
    form = ('<form method="post"><button type="submit">Continue with this cart here</button></form>\n'
            "<p><small>The code works once and expires "
            f'<time datetime="{row.expires_at.isoformat()}">{row.expires_at:%H:%M} UTC</time>.</small></p>')
    return _document("A cart for you", _cart_table(view) + "\n" + form)


@router.post("/handoff/{code}", response_class=HTMLResponse)
def claim_here(code: str, request: Request, db: DatabaseDep, settings: SettingsDep) -> HTMLResponse:
    """Claim ``code`` for this device: the cart is opened in the web channel and kept in the ``omni_cart`` cookie."""
    try:
        # a transaction of its own, so that a claim failing half-way rolls back before the error page is chosen
        with db.transaction() as session:
            view = handoff.claim(session, code=code, channel_code=CLAIM_CHANNEL)
            page = _opened_page(view)
    except OmniError as exc:
        with db.transaction(write=False) as session:
            held = _held_here(session, request, code) if exc.code == "handoff_claimed" else None
            return _opened_page(held) if held is not None else _error_page(exc)
    page.set_cookie(CART_COOKIE, view.cart.id, max_age=CART_COOKIE_MAX_AGE_S, path="/", httponly=True,
                    samesite="lax", secure=_secure(settings))
    return page


def _secure(settings: Settings) -> bool:
    return bool(settings.public_url and settings.public_url.lower().startswith("https://"))
