"""The FastAPI application: routers of every domain, one error format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from omnijourney import __version__
from omnijourney.api.idempotency import Replay, replay_response
from omnijourney.api.openapi import install as install_openapi
from omnijourney.config import Settings, get_settings
from omnijourney.core.errors import OmniError, TooBusy
from omnijourney.db import Database

_RETRYABLE = {"40P01", "40001", "55P03"}  # deadlock_detected, serialization_failure, lock_not_available


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    from omnijourney.jobs.worker import embedded

    worker = embedded(app.state.db, app.state.settings.jobs)  # background work, nothing else to start
    from omnijourney.analytics.jobs import schedule as schedule_analytics
    schedule_analytics(app.state.db, app.state.settings)  # the analytics store follows the timeline (a job chain)
    try:
        yield
    finally:
        if worker is not None:
            worker.stop()


def create_app(db: Database | None = None, settings: Settings | None = None) -> FastAPI:
    """Build the app around ``db`` (default: ``OMNI_DATABASE_URL``)."""
    settings = settings or get_settings()
    app = FastAPI(title="Omnijourney", version=__version__, lifespan=_lifespan)
    app.state.settings = settings
    app.state.db = db or Database(settings.database_url)

    @app.exception_handler(OmniError)
    async def _omni_error(_: Request, exc: OmniError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooBusy) else None
        return JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)

    @app.exception_handler(DBAPIError)
    async def _database_refused(request: Request, exc: DBAPIError) -> JSONResponse:
        # PostgreSQL ended the transaction because of a concurrent one (a deadlock it broke, a serialisation
        # failure, a lock it could not take): nothing was written, and the same request can simply be sent again
        if getattr(exc.orig, "sqlstate", None) not in _RETRYABLE:
            raise exc
        return JSONResponse({"code": "try_again", "message": "the database refused this change because of a "
                             "concurrent one; nothing was changed: send the request again"},
                            status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(Replay)
    async def _replay(_: Request, exc: Replay) -> JSONResponse:
        return replay_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own answers in our format: a body that is not JSON text (not UTF-8, say) is refused as invalid
        # JSON is, 422 naming the body; the rest (an unknown path, a method the path has not) keep their status
        if exc.status_code == 400 and str(exc.detail).startswith("There was an error parsing the body"):
            message = "body: not JSON text (a request body is UTF-8 JSON)"
            return JSONResponse({"code": "invalid", "message": message, "field": "body",
                                 "errors": [{"field": "body", "message": message}]}, status_code=422)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, f"http_{exc.status_code}")
        return JSONResponse({"code": code, "message": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()]
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        return JSONResponse(
            {"code": "invalid", "message": f"{first['field']}: {first['message']}", "field": first["field"],
             "errors": errors},
            status_code=422,
        )

    from omnijourney.auth.api import router as keys_router
    from omnijourney.auth.session_api import router as session_router
    from omnijourney.carts.api import router as carts_router
    from omnijourney.carts.handoff_pages import router as handoff_pages_router
    from omnijourney.catalog.api import router as catalog_router
    from omnijourney.customers.api import router as customers_router
    from omnijourney.inventory.api import locations_router
    from omnijourney.inventory.api import router as inventory_router
    from omnijourney.orders.api import checkout_router
    from omnijourney.orders.api import router as orders_router
    from omnijourney.payments.api import router as payments_router
    from omnijourney.payments.simulator_pages import router as test_provider_router
    from omnijourney.pricing.api import router as pricing_router
    from omnijourney.tracking.api import install as install_tracking
    from omnijourney.tracking.api import router as sources_router
    from omnijourney.tracking.feed_api import router as feed_router

    install_tracking(app)  # Segment-compatible /v1/* paths, with CORS for shops on other origins
    for router in (keys_router, sources_router, customers_router, catalog_router, pricing_router, carts_router,
                   feed_router, locations_router, inventory_router, checkout_router, orders_router,
                   payments_router):
        app.include_router(router, prefix="/api/v1")
    app.include_router(session_router, prefix="/api/v1")  # staff login: a session cookie with a CSRF token
    from omnijourney.analytics.api import router as analytics_router
    app.include_router(analytics_router, prefix="/api/v1")  # /api/v1/analytics
    app.include_router(handoff_pages_router)  # /handoff/{code}: the page a phone opens after scanning a QR code
    app.include_router(test_provider_router)  # /payments/test-provider/...: the test provider's bank page

    from omnijourney.console import install as install_console
    install_console(app)  # /console: the staff console's pages (errors there answered as pages)
    from omnijourney.shop import install as install_shop
    install_shop(app)  # /shop, /app, /pos: the demo channels (storefront, app view, till)
    install_openapi(app)  # key schemes and error answers of every route, for /docs

    @app.get("/health", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
