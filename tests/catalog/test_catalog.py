"""Catalog and channels: products, variants, categories, publication per channel, the SKU lookup."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from omnijourney.catalog import service
from omnijourney.catalog.barcodes import check_digit, gtin_problem
from omnijourney.catalog.models import Product, Variant
from omnijourney.db import Database
from tests import factories_catalog as fc
from tests.conftest import make_key


def _count(db: Database, model: type) -> int:
    with db.transaction(write=False) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_gtin_check_digits() -> None:
    assert check_digit("400638133393") == 1
    assert gtin_problem("4006381333931") is None
    assert gtin_problem("96385074") is None  # EAN-8
    assert gtin_problem("036000291452") is None  # UPC-A
    assert gtin_problem("4006381333932") == "check digit of 4006381333932 should be 1"
    assert gtin_problem("40063813339") == "a barcode has 8, 12, 13 or 14 digits, not 11"
    assert gtin_problem("40063813339x") == "a barcode has digits only"


def test_channels_api(client: TestClient, admin_headers: dict[str, str]) -> None:
    body = {"code": "store-12", "name": "Berlin Mitte", "type": "store", "currency": "EUR", "market": "DE",
            "default_price_list": "de-retail", "address": "Hauptstr. 1", "latitude": 52.52, "longitude": 13.4}
    r = client.post("/api/v1/channels", json=body, headers=admin_headers)
    assert r.status_code == 201, r.text
    assert r.json()["default_price_list"] == "de-retail"
    assert client.post("/api/v1/channels", json=body, headers=admin_headers).json()["field"] == "code"
    web = {"code": "web", "name": "Web shop", "type": "web", "currency": "eur", "market": "DE"}
    r = client.post("/api/v1/channels", json=web, headers=admin_headers)
    assert (r.status_code, r.json()["field"]) == (422, "currency")
    r = client.post("/api/v1/channels", json={**web, "type": "fax", "currency": "EUR"}, headers=admin_headers)
    assert (r.status_code, r.json()["field"]) == (422, "type")
    r = client.post("/api/v1/channels", json={**web, "currency": "EUR", "latitude": 1.0, "longitude": 2.0},
                    headers=admin_headers)
    assert (r.status_code, r.json()["field"]) == (422, "address")
    assert client.post("/api/v1/channels", json={**web, "currency": "EUR"}, headers=admin_headers).status_code == 201
    assert [c["code"] for c in client.get("/api/v1/channels", headers=admin_headers).json()] == ["store-12", "web"]
    assert [c["code"] for c in client.get("/api/v1/channels?type=store", headers=admin_headers).json()] == \
        ["store-12"]
    r = client.patch("/api/v1/channels/web", json={"default_price_list": "web-de", "active": False},
                     headers=admin_headers)
    assert (r.json()["default_price_list"], r.json()["active"]) == ("web-de", False)
    r = client.get("/api/v1/channels/nope", headers=admin_headers)
    assert (r.status_code, r.json()["field"]) == (404, "code")


def test_catalog_scopes(client: TestClient, db: Database) -> None:
    reader = {"Authorization": f"Bearer {make_key(db, 'catalog:read')}"}
    assert client.get("/api/v1/catalog/products", headers=reader).status_code == 200
    r = client.post("/api/v1/catalog/categories", json={"code": "x", "name": "X"}, headers=reader)
    assert (r.status_code, r.json()["code"]) == (403, "missing_scope")
    assert client.get("/api/v1/channels").status_code == 401


def test_create_product_and_read_it_back(client: TestClient, db: Database, admin_headers: dict[str, str]) -> None:
    fc.shop(db)
    body = {"handle": "linen-shirt", "title": "Linen Shirt", "brand": "Nordwind", "tax_class": "standard",
            "category_ids": ["tops"], "channels": ["web", "store-12"], "attributes": {"material": "linen"},
            "variants": [{"sku": "LIN-S", "attributes": {"size": "S", "colour": "white"}, "barcode": "4006381333931",
                          "image_urls": ["https://cdn.example/lin-s.jpg"]},
                         {"sku": "LIN-M", "attributes": {"size": "M", "colour": "white"}}]}
    r = client.post("/api/v1/catalog/products", json=body, headers=admin_headers)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["channels"] == ["store-12", "web"]
    assert made["category_ids"] == ["tops"]
    assert [(v["sku"], v["barcode"]) for v in made["variants"]] == [("LIN-S", "4006381333931"), ("LIN-M", None)]
    got = client.get(f"/api/v1/catalog/products/{made['id']}", headers=admin_headers).json()
    assert got == made
    assert client.get("/api/v1/catalog/products/by-handle/linen-shirt", headers=admin_headers).json() == made
    assert client.get("/api/v1/catalog/variants/LIN-S", headers=admin_headers).json()["image_urls"] == \
        ["https://cdn.example/lin-s.jpg"]


def test_bad_products_are_refused_and_nothing_is_written(client: TestClient, db: Database,
                                                         admin_headers: dict[str, str]) -> None:
    fc.shop(db)
    products, variants = _count(db, Product), _count(db, Variant)
    base = {"handle": "new-thing", "title": "New", "variants": [{"sku": "NEW-1"}]}
    cases = [
        ({**base, "handle": "basic-tee"}, 409, "handle"),
        ({**base, "variants": [{"sku": "TEE-S"}]}, 409, "sku"),
        ({**base, "variants": [{"sku": "NEW-1"}, {"sku": "NEW-1"}]}, 409, "sku"),
        ({**base, "variants": [{"sku": "NEW-1", "barcode": "4006381333932"}]}, 422, "barcode"),
        ({**base, "channels": ["web", "mars"]}, 422, "channels"),
        ({**base, "category_ids": ["nope"]}, 422, "category_ids"),
        ({**base, "status": "gone"}, 422, "status"),
        ({**base, "handle": "Not A Slug"}, 422, "handle"),
    ]
    for body, status, field in cases:
        r = client.post("/api/v1/catalog/products", json=body, headers=admin_headers)
        assert (r.status_code, r.json()["field"]) == (status, field), (body, r.text)
    assert (_count(db, Product), _count(db, Variant)) == (products, variants)
    # the same barcode on two SKUs
    ok = client.post("/api/v1/catalog/products", json={**base, "variants": [{"sku": "NEW-1", "barcode": "96385074"}]},
                     headers=admin_headers)
    assert ok.status_code == 201
    r = client.post(f"/api/v1/catalog/products/{ok.json()['id']}/variants", json={"sku": "NEW-2",
                    "barcode": "96385074"}, headers=admin_headers)
    assert (r.status_code, r.json()["field"]) == (409, "barcode")
    r = client.get("/api/v1/catalog/variants/NOPE", headers=admin_headers)
    assert (r.status_code, r.json()["field"]) == (404, "sku")


def test_update_product_and_publication(client: TestClient, db: Database, admin_headers: dict[str, str]) -> None:
    fc.shop(db)
    pid = fc.product(db, "cap", ["CAP-1"], channels=("web",)).product.id
    r = client.patch(f"/api/v1/catalog/products/{pid}", json={"title": "Cap", "channels": ["store-12"],
                     "category_ids": ["apparel"]}, headers=admin_headers)
    assert r.status_code == 200, r.text
    assert (r.json()["title"], r.json()["channels"], r.json()["category_ids"]) == ("Cap", ["store-12"], ["apparel"])
    r = client.put(f"/api/v1/catalog/products/{pid}/channels", json=["web", "store-12"], headers=admin_headers)
    assert r.json() == ["store-12", "web"]
    r = client.patch(f"/api/v1/catalog/products/{pid}", json={"handle": "basic-tee"}, headers=admin_headers)
    assert (r.status_code, r.json()["field"]) == (409, "handle")
    r = client.patch("/api/v1/catalog/variants/CAP-1", json={"barcode": "036000291452", "active": False},
                     headers=admin_headers)
    assert (r.json()["barcode"], r.json()["active"]) == ("036000291452", False)


def test_listing_filters_and_pages(client: TestClient, db: Database, admin_headers: dict[str, str]) -> None:
    fc.shop(db)

    def handles(query: str) -> tuple[list[str], int]:
        page = client.get(f"/api/v1/catalog/products{query}", headers=admin_headers).json()
        return [p["handle"] for p in page["items"]], page["total"]

    assert handles("") == (["basic-tee", "online-hoodie", "store-socks"], 3)
    assert handles("?channel=web") == (["basic-tee", "online-hoodie"], 2)
    assert handles("?channel=store-12") == (["basic-tee", "store-socks"], 2)
    assert handles("?category=apparel") == (["basic-tee", "online-hoodie"], 2)  # sub-categories included
    assert handles("?category=tees") == (["basic-tee"], 1)
    assert handles("?q=HOOD") == (["online-hoodie"], 1)
    assert handles("?q=%25") == ([], 0)  # a literal %, not a wildcard
    assert handles("?limit=2") == (["basic-tee", "online-hoodie"], 3)
    assert handles("?limit=2&offset=2") == (["store-socks"], 3)
    r = client.get("/api/v1/catalog/products?channel=mars", headers=admin_headers)
    assert (r.status_code, r.json()["field"]) == (404, "channel")
    r = client.get("/api/v1/catalog/products?category=nope", headers=admin_headers)
    assert (r.status_code, r.json()["field"]) == (404, "category")


def test_variants_for_skus_and_is_sellable(db: Database) -> None:
    fc.shop(db)
    fc.channel(db, "app", "app")
    with db.transaction() as session:
        web = service.variants_for_skus(session, ["TEE-M", "HOOD-M", "SOCK-1", "NOPE"], "web")
        store = service.variants_for_skus(session, ["TEE-M", "HOOD-M", "SOCK-1"], "store-12")
        assert set(web) == {"TEE-M", "HOOD-M", "SOCK-1"}
        tee = web["TEE-M"]
        assert (tee.category_ids, tee.tax_class, tee.title) == (frozenset({"tees", "tops", "apparel"}), "standard",
                                                                "Basic Tee")
        assert web["HOOD-M"].category_ids == frozenset({"tops", "apparel"})
        assert web["SOCK-1"].category_ids == frozenset()
        assert web["SOCK-1"].tax_class == "reduced"
        assert {s: i.sellable for s, i in web.items()} == {"TEE-M": True, "HOOD-M": True, "SOCK-1": False}
        assert {s: i.sellable for s, i in store.items()} == {"TEE-M": True, "HOOD-M": False, "SOCK-1": True}
        assert service.is_sellable(session, "TEE-S", "app") is False  # not published in the app
        assert service.is_sellable(session, "TEE-S", "mars") is False
        assert service.is_sellable(session, "NOPE", "web") is False
        service.update_variant(session, sku="TEE-S", changes={"active": False})
        assert service.is_sellable(session, "TEE-S", "web") is False
        service.update_channel(session, code="store-12", changes={"active": False})
        assert service.is_sellable(session, "TEE-M", "store-12") is False
        pid = web["HOOD-M"].product_id
        service.update_product(session, product_id=pid, changes={"status": "archived"})
        assert service.is_sellable(session, "HOOD-M", "web") is False


def test_variant_lookup_route(client: TestClient, db: Database, admin_headers: dict[str, str]) -> None:
    fc.shop(db)
    r = client.get("/api/v1/catalog/variants?sku=TEE-S&sku=SOCK-1&channel=web", headers=admin_headers)
    assert r.status_code == 200, r.text
    assert sorted((i["sku"], i["sellable"], tuple(i["category_ids"])) for i in r.json()) == \
        [("SOCK-1", False, ()), ("TEE-S", True, ("apparel", "tees", "tops"))]
    r = client.get("/api/v1/catalog/variants?sku=NOPE&channel=web", headers=admin_headers)
    assert (r.status_code, r.json()["field"]) == (404, "sku")
    r = client.get("/api/v1/catalog/variants?sku=TEE-S&channel=mars", headers=admin_headers)
    assert (r.status_code, r.json()["field"]) == (404, "channel")
