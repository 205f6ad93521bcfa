"""The staff console under ``/console``: server-rendered pages (Jinja2) with a little of our own JavaScript and CSS,
no build step, no third-party code in the repository (Plotly's bundle is served from the installed package).

:func:`install` adds the pages to the app, our static files, and error pages: a domain error, a refused form or an
unknown address under ``/console`` is answered with a page (a redirect to the login page when nobody is logged in),
everywhere else with the API's JSON as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from omnijourney.console import web
from omnijourney.core.errors import OmniError

assets = APIRouter(prefix=web.PREFIX, include_in_schema=False)


def plotly_bundle() -> Path:
    """plotly.min.js as the installed ``plotly`` package ships it."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@assets.get("/assets/plotly.min.js")
def plotly_js() -> Response:
    """Plotly's browser bundle, from the installed package (never copied into the repository); the page's URL
    carries the package's version, so browsers may keep it for long."""
    return FileResponse(plotly_bundle(), media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=604800", "X-Content-Type-Options": "nosniff"})


def _wrap(app: FastAPI, kind: type[Exception], console_answer: Any) -> None:
    api_answer = app.exception_handlers[kind]

    async def handler(request: Request, exc: Any) -> Response:
        if web.is_console(request):
            return console_answer(request, exc)
        return await api_answer(request, exc)

    app.exception_handlers[kind] = handler


def install(app: FastAPI) -> None:
    """Serve the console under ``/console`` (after the app's own error handlers are in place)."""
    from omnijourney.console import analytics_pages, auth_pages, catalog, customers, operations, returns

    for router in (assets, auth_pages.router, customers.router, catalog.router, operations.router,
                   returns.router, analytics_pages.router):
        app.include_router(router)
    app.mount(f"{web.PREFIX}/static", StaticFiles(directory=web.HERE / "static"), name="console-static")
    _wrap(app, OmniError, web.on_error)
    _wrap(app, RequestValidationError, lambda request, exc: web.on_validation_error(request, exc.errors()))
    _wrap(app, StarletteHTTPException, lambda request, exc: web.on_http_error(request, exc.status_code,
                                                                              str(exc.detail)))
