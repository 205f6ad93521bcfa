"""A small retail network for inventory and order tests: online channels, three stores, a warehouse, transit and
quarantine, and a few SKUs sold everywhere."""

from __future__ import annotations

from omnijourney.db import Database
from omnijourney.inventory import locations, stock
from tests.factories_catalog import channel, product

BERLIN = (52.52, 13.40)
# store code -> (name, latitude, longitude): Berlin Mitte, Potsdam (about 27 km away), Hamburg (about 255 km)
STORES = {"S01": ("Berlin Mitte", 52.5200, 13.4050), "S02": ("Potsdam", 52.3906, 13.0645),
          "S03": ("Hamburg", 53.5511, 9.9937)}
SKUS = ["TEE-S", "TEE-M", "JEANS-32"]


def network(db: Database, *, online_floor: int = 0) -> None:
    """Channels web, app, S01-S03; locations WH (warehouse, Erfurt), S01-S03 (stores), TRANSIT and QUAR."""
    channel(db, "web", "web")
    channel(db, "app", "app")
    for code, (name, lat, lon) in STORES.items():
        channel(db, code, "store", name=name, address=f"{name} 1", latitude=lat, longitude=lon)
    everywhere = ("web", "app", *STORES)
    product(db, "basic-tee", ["TEE-S", "TEE-M"], channels=everywhere)
    product(db, "jeans", ["JEANS-32"], channels=everywhere)
    with db.transaction() as s:
        locations.create_location(s, code="WH", name="Erfurt warehouse", type="warehouse", latitude=50.98,
                                  longitude=11.03)
        for code, (name, _, _) in STORES.items():
            locations.create_location(s, code=code, name=name, type="store", channel_code=code,
                                      online_floor=online_floor, ships=code == "S01")
        locations.create_location(s, code="TRANSIT", name="In transit", type="transit")
        locations.create_location(s, code="QUAR", name="Quarantine", type="quarantine")


def stock_up(db: Database, levels: dict[tuple[str, str], int]) -> None:
    """Receive ``{(sku, location): units}``."""
    with db.transaction() as s:
        for (sku, loc), units in levels.items():
            stock.receive(s, sku=sku, location=loc, quantity=units, ref="test")


PRICES = {"TEE-S": "20.00", "TEE-M": "20.00", "JEANS-32": "80.00"}


def priced(db: Database) -> None:
    """A base price list in EUR for the network's SKUs, German VAT included and a 4.95 shipping fee."""
    from omnijourney.pricing import service as pricing

    with db.transaction() as s:
        pricing.create_price_list(s, code="base-eur", name="Base EUR", currency="EUR")
        pricing.set_prices(s, price_list="base-eur", prices=PRICES)
        pricing.set_market(s, market="DE", taxes_included=True, tax_rates={"standard": "0.19"},
                           shipping_fees={"EUR": "4.95"})
