"""Fixtures of the demo channels' tests: the console's seeded shop (tests/console/seed.py: channels, stores, stock,
Umar and Ann with their journeys, staff of every role, the web, app and Berlin Mitte till sources) with categories
and a gift card added, served by a real uvicorn, one per module; the shop's demo login on.

SQLite only, as the console's: the pages call the domain services that every other test runs on both engines.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from omnijourney.api.app import create_app
from omnijourney.catalog import service as catalog
from omnijourney.config import JobSettings, Settings
from omnijourney.db import Database
from omnijourney.payments import giftcards
from omnijourney.shop import web
from tests.auth.conftest import use_cheap_hashes
from tests.console.seed import World, build
from tests.support.browser import served as serve

GIFT_CARD = "GIFT-2024-DEMO"


@pytest.fixture(scope="module")
def cheap() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        use_cheap_hashes(mp)
        yield


def _shop_extras(db: Database) -> None:
    """Categories for the seed's products, and a gift card worth 15 EUR."""
    with db.transaction() as s:
        catalog.create_category(s, code="tops", name="Tops")
        catalog.create_category(s, code="denim", name="Denim")
        for handle, category in (("basic-tee", "tops"), ("jeans", "denim")):
            product = catalog.get_product_by_handle(s, handle=handle).product
            catalog.update_product(s, product_id=product.id, changes={"category_ids": [category]})
        giftcards.issue(s, currency="EUR", amount=Decimal("15.00"), code=GIFT_CARD)


@pytest.fixture(scope="module")
def world(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory, cheap: None) -> Iterator[World]:
    path = tmp_path_factory.mktemp("shop") / "omni.db"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite:///{path}")
    settings = Settings(database_url=f"sqlite:///{path}", jobs=JobSettings(embedded=False))
    app = create_app(db, settings)
    app.state.shop = web.new_state(web.ShopSettings(demo_login=True, secret="tests"))
    with TestClient(app) as client:
        built = build(db, client)
    _shop_extras(db)
    built.app = app
    yield built
    db.dispose()


@pytest.fixture(scope="module")
def served(world: World) -> Iterator[str]:
    """The world's app served by uvicorn on a free local port; its base URL."""
    with serve(world.app) as url:
        yield url


@pytest.fixture
def client(world: World) -> Iterator[Any]:
    """A fresh browser-like client (its own cookies) on the world's app."""
    with TestClient(world.app, follow_redirects=False) as c:
        yield c
