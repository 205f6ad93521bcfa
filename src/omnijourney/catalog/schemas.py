"""Request and response shapes of the catalog and channels API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from omnijourney.core.channels import ChannelType

Code = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
ProductStatus = Literal["draft", "active", "archived"]


class ChannelCreate(BaseModel):
    code: str = Code
    name: str = Field(min_length=1, max_length=200)
    type: ChannelType
    currency: str = Field(min_length=3, max_length=3)
    market: str = Field(min_length=2, max_length=8)
    default_price_list: str | None = Field(default=None, max_length=64)
    address: str | None = Field(default=None, max_length=500)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)


class ChannelUpdate(BaseModel):
    """Only the fields given change; ``code`` and ``type`` never do."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    market: str | None = Field(default=None, min_length=2, max_length=8)
    default_price_list: str | None = Field(default=None, max_length=64)
    address: str | None = Field(default=None, max_length=500)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    active: bool | None = None


class ChannelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    type: str
    currency: str
    market: str
    default_price_list: str | None
    address: str | None
    latitude: float | None
    longitude: float | None
    active: bool
    created_at: datetime


class CategoryCreate(BaseModel):
    code: str = Code
    name: str = Field(min_length=1, max_length=200)
    parent: str | None = Field(default=None, max_length=64)


class CategoryRead(BaseModel):
    code: str
    name: str
    parent: str | None


class VariantCreate(BaseModel):
    sku: str = Code
    title: str = Field(default="", max_length=500)
    attributes: dict[str, Any] = Field(default_factory=dict)
    barcode: str | None = Field(default=None, max_length=14)
    image_urls: list[str] = Field(default_factory=list, max_length=50)


class VariantUpdate(BaseModel):
    title: str | None = Field(default=None, max_length=500)
    attributes: dict[str, Any] | None = None
    barcode: str | None = Field(default=None, max_length=14)
    image_urls: list[str] | None = Field(default=None, max_length=50)
    active: bool | None = None


class VariantRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sku: str
    product_id: str
    title: str
    attributes: dict[str, Any]
    barcode: str | None
    image_urls: list[str]
    active: bool


class ProductCreate(BaseModel):
    handle: str = Field(min_length=1, max_length=200, pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str = Field(min_length=1, max_length=500)
    description: str = ""
    brand: str | None = Field(default=None, max_length=200)
    attributes: dict[str, Any] = Field(default_factory=dict)
    status: ProductStatus = "active"
    tax_class: str = Field(default="standard", min_length=1, max_length=32)
    category_ids: list[str] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list, description="channel codes the product is sold in")
    variants: list[VariantCreate] = Field(default_factory=list, max_length=500)


class ProductUpdate(BaseModel):
    """Only the fields given change; ``category_ids`` and ``channels`` replace the whole set."""

    handle: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str | None = Field(default=None, min_length=1, max_length=500)
    description: str | None = None
    brand: str | None = Field(default=None, max_length=200)
    attributes: dict[str, Any] | None = None
    status: ProductStatus | None = None
    tax_class: str | None = Field(default=None, min_length=1, max_length=32)
    category_ids: list[str] | None = None
    channels: list[str] | None = None


class ProductRead(BaseModel):
    id: str
    handle: str
    title: str
    description: str
    brand: str | None
    attributes: dict[str, Any]
    status: str
    tax_class: str
    category_ids: list[str]
    channels: list[str]
    variants: list[VariantRead]
    created_at: datetime
    updated_at: datetime


class ProductPage(BaseModel):
    items: list[ProductRead]
    total: int
    limit: int
    offset: int


class VariantInfoRead(BaseModel):
    """What pricing and carts need to know about a SKU in a channel."""

    sku: str
    product_id: str
    title: str
    tax_class: str
    category_ids: list[str]
    sellable: bool
