"""The demo channels: a storefront (``/shop``, channel web), the same shop as a phone app (``/app``, channel app) and
a store's POS (``/pos``), each tracking through our own Segment-compatible API with the real analytics.js.

A package of its own rather than part of the console: the shop's visitors are shoppers, not staff (no staff session,
a look of their own, public pages), and the channels are the platform's clients, reaching the domains the way a
channel's backend would; only the POS shares the console's staff session and its login page.

:func:`install` adds the pages, our static files, analytics.js from its cache, and error pages instead of JSON under
the three prefixes (a POS page without a session sends the browser to the console's login and back).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from omnijourney.core.errors import OmniError
from omnijourney.shop import analytics_js, web

PREFIXES = ("/shop", "/app", "/pos")
assets = APIRouter(prefix=web.ASSETS, include_in_schema=False)

_TITLES = {400: "Bad request", 403: "Not allowed", 404: "Not found", 405: "Not allowed here",
           409: "Cannot do that now", 410: "Gone", 422: "Check what you typed", 429: "Too busy"}


@assets.get("/analytics.js")
def analytics(request: Request) -> Response:
    """analytics.js (``@segment/analytics-next``, pinned) from its cache; 404 when it is not cached (the pages then
    do not ask for it, and say that tracking is off)."""
    bundle = web.state(request).bundle
    if bundle.js is None:
        return Response(bundle.reason, status_code=404, media_type="text/plain")
    return Response(bundle.js, media_type="text/javascript",
                    headers={"Cache-Control": "public, max-age=604800", "X-Content-Type-Options": "nosniff"})


def _ours(request: Request) -> str | None:
    path = request.url.path
    return next((p for p in PREFIXES if path == p or path.startswith(p + "/")), None)


def _page(request: Request, status: int, message: str, code: str) -> Response:
    prefix = _ours(request) or "/shop"
    home = {"/pos": "/pos", "/app": "/app"}.get(prefix, "/shop")
    return web.render("error.html", status=status, title=_TITLES.get(status, "Something went wrong"),
                      message=message, code=code, home=home, app=prefix == "/app")


def _on_error(request: Request, exc: OmniError) -> Response:
    if exc.status == 401 or exc.code == "password_change_required":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        params = {"next": target if request.method == "GET" else "/pos"}
        if exc.code == "session_expired":
            params["reason"] = "session_expired"
        return RedirectResponse(f"/console/login?{urlencode(params)}", status_code=303)
    message = exc.message
    if exc.code == "csrf_failed":
        message = "This form was sent without its security token: go back, reload the page and send it again."
    elif exc.code == "missing_scope":
        message = f"Your role does not open the till ({exc.message})."
    return _page(request, exc.status, message, exc.code)


def _wrap(app: FastAPI, kind: type[Exception], ours: Any) -> None:
    before = app.exception_handlers[kind]

    async def handler(request: Request, exc: Any) -> Response:
        if _ours(request):
            return ours(request, exc)
        return await before(request, exc)

    app.exception_handlers[kind] = handler


def install(app: FastAPI) -> None:
    """Serve the demo channels (after the console, whose error handlers these wrap)."""
    from omnijourney.shop import pos, storefront

    app.state.shop = web.new_state()
    for router in (assets, *storefront.ROUTERS, pos.router):
        app.include_router(router)
    app.mount(f"{web.ASSETS}/static", StaticFiles(directory=web.HERE / "static"), name="shop-static")
    _wrap(app, OmniError, _on_error)
    _wrap(app, RequestValidationError, lambda request, exc: _page(request, 422, "check what you typed", "invalid"))
    _wrap(app, StarletteHTTPException, lambda request, exc: _page(
        request, exc.status_code, {404: "There is no page at this address.",
                                   405: "This address does not answer that kind of request."}.get(
            exc.status_code, str(exc.detail)), {404: "not_found"}.get(exc.status_code, f"http_{exc.status_code}")))


__all__ = ["analytics_js", "install"]
