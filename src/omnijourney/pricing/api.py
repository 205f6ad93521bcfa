"""Pricing routes under ``/api/v1/pricing``: quotes that explain themselves, the consistency check, and the
management of price lists, tax markets, promotions and vouchers (thin: parse, call the service, shape)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from omnijourney.api.deps import DatabaseDep, SessionDep, require
from omnijourney.auth.service import Principal
from omnijourney.pricing import consistency, service
from omnijourney.pricing.models import Promotion
from omnijourney.pricing.offers import promotion_spec
from omnijourney.pricing.schemas import (
    ConsistencyRead,
    MarketRead,
    MarketSet,
    PriceListCreate,
    PriceListRead,
    PriceListUpdate,
    PricesRead,
    PricesSet,
    PromotionCreate,
    PromotionRead,
    PromotionUpdate,
    QuoteRead,
    QuoteRequest,
    RedemptionCreate,
    RedemptionRead,
    VoucherCreate,
    VoucherRead,
    VoucherUpdate,
)

router = APIRouter(prefix="/pricing", tags=["pricing"])
CanRead = Annotated[Principal, Depends(require("pricing:read"))]
CanWrite = Annotated[Principal, Depends(require("pricing:write"))]


@router.post("/quote", response_model=QuoteRead)
def quote(body: QuoteRequest, db: DatabaseDep, _: CanRead) -> QuoteRead:
    """Price a basket in a channel and explain every line: list price, promotions applied or rejected and why."""
    # a quote only reads: a read transaction, so quotes never queue behind writers on SQLite
    with db.transaction(write=False) as session:
        result = service.quote(session, channel_code=body.channel, lines=[(ln.sku, ln.quantity) for ln in body.lines],
                               customer_id=body.customer_id, segments=body.segments, vouchers=body.vouchers,
                               at=body.at, currency=body.currency, with_shipping=body.with_shipping,
                               strict_vouchers=body.strict_vouchers, fulfilment=body.fulfilment)
    return QuoteRead.model_validate(result)


@router.get("/consistency", response_model=ConsistencyRead)
def check_consistency(db: DatabaseDep, _: CanRead,
                      at: Annotated[datetime | None, Query(description="moment to check, ISO 8601 (default now; "
                                                                       "without a zone: UTC)")] = None,
                      ) -> ConsistencyRead:
    """SKUs whose effective price differs between channels: unexplained, missing a price, or explained by a
    channel rule (a channel price list or a channel-targeted promotion)."""
    with db.transaction(write=False) as session:
        report = consistency.check(session, at=at)
    return ConsistencyRead.model_validate(report)


@router.post("/price-lists", status_code=201, response_model=PriceListRead)
def create_price_list(body: PriceListCreate, session: SessionDep, _: CanWrite) -> object:
    return service.create_price_list(session, **body.model_dump())


@router.get("/price-lists", response_model=list[PriceListRead])
def list_price_lists(session: SessionDep, _: CanRead) -> object:
    return service.list_price_lists(session)


@router.get("/price-lists/{code}", response_model=PriceListRead)
def get_price_list(code: str, session: SessionDep, _: CanRead) -> object:
    return service.get_price_list(session, code=code)


@router.patch("/price-lists/{code}", response_model=PriceListRead)
def update_price_list(code: str, body: PriceListUpdate, session: SessionDep, _: CanWrite) -> object:
    return service.update_price_list(session, code=code, changes=body.model_dump(exclude_unset=True))


@router.put("/price-lists/{code}/prices")
def set_prices(code: str, body: PricesSet, session: SessionDep, _: CanWrite) -> dict[str, int]:
    """Insert or replace prices in bulk, and remove the prices of ``remove``."""
    written = service.set_prices(session, price_list=code, prices=body.prices)
    removed = service.remove_prices(session, price_list=code, skus=body.remove) if body.remove else 0
    return {"written": written, "removed": removed}


@router.get("/price-lists/{code}/prices", response_model=PricesRead)
def list_prices(code: str, session: SessionDep, _: CanRead,
                sku: Annotated[list[str] | None, Query()] = None) -> PricesRead:
    row = service.get_price_list(session, code=code)
    return PricesRead(price_list=code, currency=row.currency,
                      prices=service.list_prices(session, price_list=code, skus=sku))


@router.put("/markets/{market}", response_model=MarketRead)
def set_market(market: str, body: MarketSet, session: SessionDep, _: CanWrite) -> MarketRead:
    service.set_market(session, market=market, taxes_included=body.taxes_included, tax_rates=body.tax_rates,
                       shipping_fees=body.shipping_fees)
    return _market(session, market)


@router.get("/markets/{market}", response_model=MarketRead)
def get_market(market: str, session: SessionDep, _: CanRead) -> MarketRead:
    return _market(session, market)


def _market(session: SessionDep, market: str) -> MarketRead:
    row, rates = service.get_market(session, market=market)
    return MarketRead(market=row.market, taxes_included=row.taxes_included, tax_rates=rates,
                      shipping_fees=row.shipping_fees)  # type: ignore[arg-type]  # decimal strings


def _promotion(row: Promotion) -> PromotionRead:
    return PromotionRead(code=row.code, created_at=row.created_at, updated_at=row.updated_at, **promotion_spec(row))


@router.post("/promotions", status_code=201, response_model=PromotionRead)
def create_promotion(body: PromotionCreate, session: SessionDep, _: CanWrite) -> PromotionRead:
    return _promotion(service.create_promotion(session, **body.model_dump(mode="json")))


@router.get("/promotions", response_model=list[PromotionRead])
def list_promotions(session: SessionDep, _: CanRead, active: bool | None = None) -> list[PromotionRead]:
    return [_promotion(r) for r in service.list_promotions(session, active=active)]


@router.get("/promotions/{code}", response_model=PromotionRead)
def get_promotion(code: str, session: SessionDep, _: CanRead) -> PromotionRead:
    return _promotion(service.get_promotion(session, code=code))


@router.patch("/promotions/{code}", response_model=PromotionRead)
def update_promotion(code: str, body: PromotionUpdate, session: SessionDep, _: CanWrite) -> PromotionRead:
    changes = body.model_dump(mode="json", exclude_unset=True)
    return _promotion(service.update_promotion(session, code=code, changes=changes))


@router.post("/vouchers", status_code=201, response_model=VoucherRead)
def create_voucher(body: VoucherCreate, session: SessionDep, _: CanWrite) -> object:
    return service.create_voucher(session, **body.model_dump())


@router.get("/vouchers", response_model=list[VoucherRead])
def list_vouchers(session: SessionDep, _: CanRead, promotion: str | None = None) -> object:
    return service.list_vouchers(session, promotion=promotion)


@router.get("/vouchers/{code}", response_model=VoucherRead)
def get_voucher(code: str, session: SessionDep, _: CanRead) -> object:
    return service.get_voucher(session, code=code)


@router.patch("/vouchers/{code}", response_model=VoucherRead)
def update_voucher(code: str, body: VoucherUpdate, session: SessionDep, _: CanWrite) -> object:
    return service.update_voucher(session, code=code, changes=body.model_dump(exclude_unset=True))


@router.post("/vouchers/{code}/redemptions", status_code=201, response_model=RedemptionRead)
def redeem_voucher(code: str, body: RedemptionCreate, session: SessionDep, _: CanWrite) -> object:
    """Use the voucher for an order (idempotent per order reference); 409 when exhausted or over the limit."""
    return service.redeem_voucher(session, code=code, order_ref=body.order_ref, customer_id=body.customer_id)
