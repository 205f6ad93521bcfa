"""Catalog and channels routes: ``/api/v1/channels`` and ``/api/v1/catalog/...`` (thin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from omnijourney.api.deps import SessionDep, require
from omnijourney.auth.service import Principal
from omnijourney.catalog import service
from omnijourney.catalog.models import Category, Channel, Variant
from omnijourney.catalog.schemas import (
    CategoryCreate,
    CategoryRead,
    ChannelCreate,
    ChannelRead,
    ChannelUpdate,
    ProductCreate,
    ProductPage,
    ProductRead,
    ProductUpdate,
    VariantCreate,
    VariantInfoRead,
    VariantRead,
    VariantUpdate,
)
from omnijourney.core.channels import ChannelType
from omnijourney.core.errors import NotFound

router = APIRouter()
CanRead = Annotated[Principal, Depends(require("catalog:read"))]
CanWrite = Annotated[Principal, Depends(require("catalog:write"))]


def _product(view: service.ProductView) -> ProductRead:
    p = view.product
    return ProductRead(id=p.id, handle=p.handle, title=p.title, description=p.description, brand=p.brand,
                       attributes=p.attributes, status=p.status, tax_class=p.tax_class,
                       category_ids=view.category_ids, channels=view.channels,
                       variants=[VariantRead.model_validate(v) for v in view.variants],
                       created_at=p.created_at, updated_at=p.updated_at)


def _category(c: Category) -> CategoryRead:
    return CategoryRead(code=c.code, name=c.name, parent=c.parent_code)


# ---------------------------------------------------------------- channels

@router.post("/channels", status_code=201, response_model=ChannelRead, tags=["channels"])
def create_channel(body: ChannelCreate, session: SessionDep, _: CanWrite) -> Channel:
    return service.create_channel(session, **body.model_dump(exclude={"type"}), type=body.type.value)


@router.get("/channels", response_model=list[ChannelRead], tags=["channels"])
def list_channels(session: SessionDep, _: CanRead, type: ChannelType | None = None) -> list[Channel]:
    return service.list_channels(session, type=type.value if type else None)


@router.get("/channels/{code}", response_model=ChannelRead, tags=["channels"])
def get_channel(code: str, session: SessionDep, _: CanRead) -> Channel:
    return service.get_channel(session, code=code, field="code")


@router.patch("/channels/{code}", response_model=ChannelRead, tags=["channels"])
def update_channel(code: str, body: ChannelUpdate, session: SessionDep, _: CanWrite) -> Channel:
    return service.update_channel(session, code=code, changes=body.model_dump(exclude_unset=True))


# ---------------------------------------------------------------- categories

@router.post("/catalog/categories", status_code=201, response_model=CategoryRead, tags=["catalog"])
def create_category(body: CategoryCreate, session: SessionDep, _: CanWrite) -> CategoryRead:
    return _category(service.create_category(session, code=body.code, name=body.name, parent=body.parent))


@router.get("/catalog/categories", response_model=list[CategoryRead], tags=["catalog"])
def list_categories(session: SessionDep, _: CanRead) -> list[CategoryRead]:
    return [_category(c) for c in service.list_categories(session)]


# ---------------------------------------------------------------- products and variants

@router.post("/catalog/products", status_code=201, response_model=ProductRead, tags=["catalog"])
def create_product(body: ProductCreate, session: SessionDep, _: CanWrite) -> ProductRead:
    fields = body.model_dump(exclude={"variants"})
    view = service.create_product(session, **fields, variants=[v.model_dump() for v in body.variants])
    return _product(view)


@router.get("/catalog/products", response_model=ProductPage, tags=["catalog"],
            responses={404: {"description": "No category or channel has this code"}})
def list_products(session: SessionDep, _: CanRead, category: str | None = None, channel: str | None = None,
                  q: Annotated[str | None, Query(max_length=200, description="words in the title")] = None,
                  status: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
                  offset: Annotated[int, Query(ge=0)] = 0) -> ProductPage:
    """Products oldest first; ``category`` includes its sub-categories, ``channel`` keeps those sold there."""
    views, total = service.list_products(session, category=category, channel=channel, search=q, status=status,
                                         limit=limit, offset=offset)
    return ProductPage(items=[_product(v) for v in views], total=total, limit=limit, offset=offset)


@router.get("/catalog/products/by-handle/{handle}", response_model=ProductRead, tags=["catalog"])
def get_product_by_handle(handle: str, session: SessionDep, _: CanRead) -> ProductRead:
    return _product(service.get_product_by_handle(session, handle=handle))


@router.get("/catalog/products/{product_id}", response_model=ProductRead, tags=["catalog"])
def get_product(product_id: str, session: SessionDep, _: CanRead) -> ProductRead:
    return _product(service.get_product(session, product_id=product_id))


@router.patch("/catalog/products/{product_id}", response_model=ProductRead, tags=["catalog"])
def update_product(product_id: str, body: ProductUpdate, session: SessionDep, _: CanWrite) -> ProductRead:
    return _product(service.update_product(session, product_id=product_id,
                                           changes=body.model_dump(exclude_unset=True)))


@router.put("/catalog/products/{product_id}/channels", response_model=list[str], tags=["catalog"])
def set_channels(product_id: str, body: list[str], session: SessionDep, _: CanWrite) -> list[str]:
    """Publish the product in exactly these channels (empty list: nowhere)."""
    return service.set_publications(session, product_id=product_id, channels=body)


@router.post("/catalog/products/{product_id}/variants", status_code=201, response_model=VariantRead,
             tags=["catalog"])
def add_variant(product_id: str, body: VariantCreate, session: SessionDep, _: CanWrite) -> Variant:
    return service.add_variant(session, product_id=product_id, **body.model_dump())


@router.get("/catalog/variants", response_model=list[VariantInfoRead], tags=["catalog"],
            responses={404: {"description": "No channel has this code, or a SKU is unknown"}})
def lookup_variants(session: SessionDep, _: CanRead,
                    sku: Annotated[list[str], Query(max_length=500, description="repeat for several")],
                    channel: str) -> list[VariantInfoRead]:
    """Product, categories (with ancestors), tax class and sellability of SKUs in a channel."""
    service.get_channel(session, code=channel)
    found = service.variants_for_skus(session, sku, channel)
    missing = [s for s in sku if s not in found]
    if missing:
        raise NotFound(f"unknown SKU {missing[0]!r}", field="sku")
    return [VariantInfoRead(sku=i.sku, product_id=i.product_id, title=i.title, tax_class=i.tax_class,
                            category_ids=sorted(i.category_ids), sellable=i.sellable) for i in found.values()]


@router.get("/catalog/variants/{sku}", response_model=VariantRead, tags=["catalog"])
def get_variant(sku: str, session: SessionDep, _: CanRead) -> Variant:
    return service.get_variant(session, sku=sku)


@router.patch("/catalog/variants/{sku}", response_model=VariantRead, tags=["catalog"])
def update_variant(sku: str, body: VariantUpdate, session: SessionDep, _: CanWrite) -> Variant:
    return service.update_variant(session, sku=sku, changes=body.model_dump(exclude_unset=True))
