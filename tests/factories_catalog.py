"""Small factories for catalog tests: channels, categories, products."""

from __future__ import annotations

from typing import Any

from omnijourney.catalog import service
from omnijourney.catalog.models import Channel
from omnijourney.db import Database


def channel(db: Database, code: str = "web", type: str = "web", currency: str = "EUR", market: str = "DE",
            **fields: Any) -> Channel:
    with db.transaction() as session:
        return service.create_channel(session, code=code, name=fields.pop("name", code.title()), type=type,
                                      currency=currency, market=market, **fields)


def category(db: Database, code: str, parent: str | None = None) -> None:
    with db.transaction() as session:
        service.create_category(session, code=code, name=code.title(), parent=parent)


def product(db: Database, handle: str, skus: list[str], *, channels: tuple[str, ...] = ("web",),
            categories: tuple[str, ...] = (), **fields: Any) -> service.ProductView:
    """A product with one variant per SKU, published in ``channels``."""
    with db.transaction() as session:
        return service.create_product(
            session, handle=handle, title=fields.pop("title", handle.replace("-", " ").title()),
            category_ids=list(categories), channels=list(channels),
            variants=[{"sku": s, "attributes": {"size": s[-1]}} for s in skus], **fields)


def shop(db: Database) -> None:
    """Two channels (web, store-12), a small tree and three products: everywhere, web only, store only."""
    channel(db, "web", "web")
    channel(db, "store-12", "store", address="Hauptstr. 1, Berlin", latitude=52.52, longitude=13.40)
    category(db, "apparel")
    category(db, "tops", parent="apparel")
    category(db, "tees", parent="tops")
    product(db, "basic-tee", ["TEE-S", "TEE-M"], channels=("web", "store-12"), categories=("tees",))
    product(db, "online-hoodie", ["HOOD-M"], channels=("web",), categories=("tops",))
    product(db, "store-socks", ["SOCK-1"], channels=("store-12",), tax_class="reduced")
