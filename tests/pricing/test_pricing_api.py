"""Pricing with its tables: quotes through the API, bad input, vouchers that never overspend, the consistency
check (API and CLI), and the management routes. Each test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal as D
from typing import Any

import pytest
import typer
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select
from typer.testing import CliRunner

from omnijourney.config import get_settings
from omnijourney.core.errors import Conflict, OmniError
from omnijourney.customers.models import Customer
from omnijourney.db import Database
from omnijourney.pricing import service
from omnijourney.pricing.cli import check_app
from omnijourney.pricing.models import PriceEntry, Promotion, Voucher, VoucherRedemption
from tests import factories_catalog as fc

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
EVERYWHERE = ("web", "app", "store-12")


def shop(db: Database) -> None:
    """Three EUR channels sharing base-eur in DE (19 % included, 4.90 shipping), tees and a hoodie."""
    for code, kind in (("web", "web"), ("app", "app"), ("store-12", "store")):
        fc.channel(db, code, kind, default_price_list="base-eur")
    fc.category(db, "tops")
    fc.category(db, "tees", parent="tops")
    fc.product(db, "tee", ["TEE-S", "TEE-M"], channels=EVERYWHERE, categories=("tees",))
    fc.product(db, "hoodie", ["HOOD-M"], channels=EVERYWHERE, categories=("tops",))
    fc.product(db, "socks", ["SOCK-1"], channels=EVERYWHERE, tax_class="reduced")
    fc.product(db, "cap", ["CAP-1"], channels=("web",))
    with db.transaction() as s:
        service.create_price_list(s, code="base-eur", name="Base EUR", currency="EUR")
        service.set_prices(s, price_list="base-eur", prices={"TEE-S": D("19.99"), "TEE-M": D("19.99"),
                                                             "HOOD-M": D("49.00"), "SOCK-1": D("5.00")})
        service.set_market(s, market="DE", taxes_included=True, tax_rates={"standard": D("0.19"), "reduced": "0.07"},
                           shipping_fees={"EUR": "4.90"})


def promo(db: Database, code: str, rule: dict[str, Any], **fields: Any) -> None:
    with db.transaction() as s:
        service.create_promotion(s, code=code, name=fields.pop("name", code), rule=rule, **fields)


def voucher(db: Database, code: str, promotion: str, **fields: Any) -> None:
    with db.transaction() as s:
        service.create_voucher(s, code=code, promotion=promotion, **fields)


def customer(db: Database, cid: str, segments: list[str]) -> None:
    with db.transaction() as s:
        s.add(Customer(id=cid, traits={"segments": segments}, created_at=NOW, updated_at=NOW))


def count(db: Database, model: type) -> int:
    with db.transaction(write=False) as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def quote_api(client: TestClient, headers: dict[str, str], **body: Any) -> Any:
    body = {"channel": "web", "at": NOW.isoformat(), **body}
    return client.post("/api/v1/pricing/quote", json=body, headers=headers)


def test_quote_explains_every_line(db: Database, client: TestClient, admin_headers: dict[str, str]) -> None:
    shop(db)
    customer(db, "c1", ["vip"])
    with db.transaction() as s:
        service.create_price_list(s, code="vip-eur", name="VIP", currency="EUR", kind="segment", segments=["vip"],
                                  priority=10)
        service.set_prices(s, price_list="vip-eur", prices={"HOOD-M": D("45.00")})
    promo(db, "tees-10", {"type": "percent_off", "percent": "10"}, target={"category_ids": ["tops"]}, priority=5)
    promo(db, "ship-50", {"type": "free_shipping"}, min_basket=D("50.00"), currency="EUR")
    promo(db, "welcome", {"type": "amount_off", "amount": "5.00"}, currency="EUR", needs_voucher=True)
    voucher(db, "WELCOME5", "welcome", max_uses=100)
    r = quote_api(client, admin_headers, customer_id="c1", vouchers=["welcome5"],
                  lines=[{"sku": "TEE-S", "quantity": 2}, {"sku": "HOOD-M", "quantity": 1}])
    assert r.status_code == 200, r.text
    q = r.json()
    assert [(ln["sku"], ln["unit_price"], ln["price_list"], ln["price_reason"], ln["subtotal"], ln["total"], ln["tax"])
            for ln in q["lines"]] == [
        ("TEE-S", "19.99", "base-eur", "base list, priority 0", "39.98", "33.63", "5.37"),
        ("HOOD-M", "45.00", "vip-eur", "segment vip list, priority 10", "45.00", "37.85", "6.04"),
    ]
    assert [(c["price_list"], c["status"]) for c in q["lines"][1]["candidates"]] == [("vip-eur", "chosen"),
                                                                                   ("base-eur", "outranked")]
    assert [(d["promotion_id"], d["amount"]) for d in q["lines"][0]["discounts"]] == [("tees-10", "4.00"),
                                                                                     ("welcome", "2.35")]
    assert {p["promotion_id"]: (p["status"], p["reason"]) for p in q["promotions"]} == {
        "tees-10": ("applied", "8.50 EUR off"),
        "ship-50": ("applied", "4.90 EUR off"),
        "welcome": ("applied", "5.00 EUR off"),
    }
    assert q["vouchers"] == [{"code": "WELCOME5", "promotion_id": "welcome", "status": "applied",
                              "reason_code": "applied", "reason": "5.00 EUR off"}]
    assert (q["subtotal"], q["discount_total"], q["shipping"], q["tax_total"], q["total"]) == \
        ("84.98", "13.50", "0.00", "11.41", "71.48")
    # without the customer: the base price, and the free-shipping threshold is missed
    q = quote_api(client, admin_headers, lines=[{"sku": "HOOD-M", "quantity": 1}]).json()
    assert (q["lines"][0]["unit_price"], q["items_total"], q["shipping"], q["total"]) == \
        ("49.00", "44.10", "4.90", "49.00")
    assert q["lines"][0]["candidates"][1] == {"price_list": "vip-eur", "unit_price": "45.00", "status": "rejected",
                                              "reason": "customer not in segment vip"}
    assert {p["promotion_id"]: p["reason"] for p in q["promotions"]}["ship-50"] == \
        "threshold 50.00 EUR not reached (basket 44.10 EUR)"


def test_same_basket_same_price_in_every_channel_unless_a_rule_targets_one(db: Database) -> None:
    shop(db)
    promo(db, "tees-10", {"type": "percent_off", "percent": "10"}, target={"category_ids": ["tees"]})
    lines = [("TEE-M", 3), ("SOCK-1", 2)]

    def totals(channel: str) -> tuple[D, D, D]:
        with db.transaction(write=False) as s:
            q = service.quote(s, channel_code=channel, lines=lines, at=NOW, with_shipping=False)
        return q.items_total, q.tax_total, q.total

    assert totals("web") == totals("app") == totals("store-12") == (D("63.97"), D("9.27"), D("63.97"))
    promo(db, "app-5", {"type": "percent_off", "percent": "5"}, channel_types=["app"])
    assert totals("web") == totals("store-12") == (D("63.97"), D("9.27"), D("63.97"))
    assert totals("app") == (D("60.77"), D("8.81"), D("60.77"))


def test_quote_uses_the_same_few_queries_for_any_basket(db: Database) -> None:
    shop(db)
    promo(db, "p", {"type": "percent_off", "percent": "10"})
    counts = []
    for lines in ([("TEE-S", 1)], [("TEE-S", 1), ("TEE-M", 2), ("HOOD-M", 1), ("SOCK-1", 4)]):
        seen: list[str] = []
        listener = lambda *a, seen=seen: seen.append(a[2])  # noqa: E731
        with db.transaction(write=False) as s:
            service.quote(s, channel_code="web", lines=lines, at=NOW)  # warms the promotion cache
            event.listen(db.engine, "before_cursor_execute", listener)
            service.quote(s, channel_code="web", lines=lines, at=NOW)
            event.remove(db.engine, "before_cursor_execute", listener)
        counts.append(len(seen))
    # channel, 2 catalog look-ups, price lists with their prices, market with its rates, promotions stamp
    assert counts == [6, 6]


def test_segments_come_from_the_surviving_profile_and_the_call(db: Database) -> None:
    shop(db)
    customer(db, "survivor", ["vip"])
    with db.transaction() as s:
        s.add(Customer(id="old", merged_into="survivor", traits={}, created_at=NOW, updated_at=NOW))
        service.create_price_list(s, code="vip", name="VIP", currency="EUR", kind="segment", segments=["vip"])
        service.create_price_list(s, code="staff", name="Staff", currency="EUR", kind="segment", segments=["staff"])
        service.set_prices(s, price_list="vip", prices={"TEE-S": "17.00"})
        service.set_prices(s, price_list="staff", prices={"HOOD-M": "30.00"})
    with db.transaction(write=False) as s:
        q = service.quote(s, channel_code="web", lines=[("TEE-S", 1), ("HOOD-M", 1)], customer_id="old",
                          segments=["staff"], at=NOW)
    assert [(ln.price_list, ln.unit_price) for ln in q.lines] == [("vip", D("17.00")), ("staff", D("30.00"))]


@pytest.mark.parametrize(("body", "status", "code", "field"), [
    ({"lines": [{"sku": "TEE-S", "quantity": 1}, {"sku": "NOPE", "quantity": 1}]}, 404, "unknown_sku",
     "lines[1].sku"),
    ({"channel": "store-12", "lines": [{"sku": "CAP-1", "quantity": 1}]}, 422, "not_sold_in_channel",
     "lines[0].sku"),
    ({"lines": [{"sku": "CAP-1", "quantity": 1}]}, 422, "no_price", "lines[0].sku"),
    ({"lines": [{"sku": "TEE-S", "quantity": -1}]}, 422, "invalid", "lines[0].quantity"),
    ({"lines": [{"sku": "TEE-S", "quantity": 100000}]}, 422, "invalid", "lines[0].quantity"),
    ({"currency": "USD", "lines": [{"sku": "TEE-S", "quantity": 1}]}, 422, "currency_mismatch", "currency"),
    ({"channel": "fax", "lines": [{"sku": "TEE-S", "quantity": 1}]}, 404, "not_found", "channel"),
    ({"customer_id": "ghost", "lines": [{"sku": "TEE-S", "quantity": 1}]}, 404, "not_found", "customer_id"),
    ({"vouchers": ["NOPE"], "lines": [{"sku": "TEE-S", "quantity": 1}]}, 404, "unknown_voucher", "vouchers[0]"),
    ({"vouchers": ["OLD"], "lines": [{"sku": "TEE-S", "quantity": 1}]}, 422, "voucher_expired", "vouchers[0]"),
    ({"vouchers": ["GONE"], "lines": [{"sku": "TEE-S", "quantity": 1}]}, 409, "voucher_exhausted", "vouchers[0]"),
])
def test_bad_quotes_name_the_problem(db: Database, client: TestClient, admin_headers: dict[str, str],
                                     body: dict[str, Any], status: int, code: str, field: str) -> None:
    shop(db)
    promo(db, "code", {"type": "percent_off", "percent": "10"}, needs_voucher=True)
    voucher(db, "OLD", "code", valid_to=datetime(2026, 2, 1, tzinfo=UTC))
    voucher(db, "GONE", "code", max_uses=1)
    with db.transaction() as s:
        service.redeem_voucher(s, code="GONE", order_ref="o-1")
    r = quote_api(client, admin_headers, **body)
    assert r.status_code == status, r.text
    assert (r.json()["code"], r.json()["field"]) == (code, field)
    with db.transaction(write=False) as s:  # a quote never writes
        assert [(v.code, v.used) for v in service.list_vouchers(s)] == [("GONE", 1), ("OLD", 0)]


def test_lenient_quote_explains_a_voucher_instead_of_refusing(db: Database) -> None:
    shop(db)
    promo(db, "code", {"type": "percent_off", "percent": "10"}, needs_voucher=True)
    voucher(db, "GONE", "code", max_uses=1)
    with db.transaction() as s:
        service.redeem_voucher(s, code="GONE", order_ref="o-1")
        q = service.quote(s, channel_code="web", lines=[("TEE-S", 1)], vouchers=["gone"], at=NOW,
                          strict_vouchers=False)
    assert [(v.code, v.reason_code, v.reason) for v in q.vouchers] == [
        ("GONE", "voucher_exhausted", "voucher GONE exhausted (1 of 1 uses)")]
    assert q.discount_total == D("0.00")


def test_redeem_voucher_limits_and_idempotence(db: Database) -> None:
    shop(db)
    promo(db, "code", {"type": "percent_off", "percent": "10"}, needs_voucher=True)
    voucher(db, "ONCE", "code", max_uses=1)
    voucher(db, "MINE", "code", per_customer_limit=1)
    with db.transaction() as s:
        first = service.redeem_voucher(s, code="once", order_ref="o-1", customer_id="c1")
        again = service.redeem_voucher(s, code="ONCE", order_ref="o-1", customer_id="c1")  # a retry: same row
        assert again.id == first.id
        service.redeem_voucher(s, code="MINE", order_ref="o-2", customer_id="c1")
        service.redeem_voucher(s, code="MINE", order_ref="o-3", customer_id="c2")
    for code, order, who, expected in (("ONCE", "o-4", "c2", "voucher_exhausted"),
                                       ("MINE", "o-5", "c1", "voucher_customer_limit")):
        with db.transaction() as s:
            with pytest.raises(Conflict) as err:
                service.redeem_voucher(s, code=code, order_ref=order, customer_id=who)
            assert err.value.code == expected
            # the refusal left the transaction as it was (savepoint), even though we carry on in it
            assert {v.code: v.used for v in service.list_vouchers(s)} == {"MINE": 2, "ONCE": 1}
    assert count(db, VoucherRedemption) == 3


def test_concurrent_redemptions_never_overspend(db: Database) -> None:
    shop(db)
    promo(db, "code", {"type": "percent_off", "percent": "10"}, needs_voucher=True)
    voucher(db, "THREE", "code", max_uses=3)
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def redeem(i: int) -> None:
        start.wait()
        try:
            with db.transaction() as s:
                service.redeem_voucher(s, code="THREE", order_ref=f"o-{i}")
            outcomes.append("ok")
        except OmniError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=redeem, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] * 3 + ["voucher_exhausted"] * 5
    with db.transaction(write=False) as s:
        assert s.get(Voucher, "THREE").used == 3
    assert count(db, VoucherRedemption) == 3


def test_consistency_check_api_and_cli(db: Database, client: TestClient, admin_headers: dict[str, str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    shop(db)
    fc.channel(db, "outlet", "store", default_price_list="base-outlet")
    fc.channel(db, "web-us", "web", currency="USD", market="US", default_price_list="base-usd")
    with db.transaction() as s:
        for sku in ("TEE-S", "TEE-M", "HOOD-M", "SOCK-1"):
            from omnijourney.catalog.service import set_publications, variants_for_skus
            pid = variants_for_skus(s, [sku], "web")[sku].product_id
            set_publications(s, product_id=pid, channels=[*EVERYWHERE, "outlet", "web-us"])
        service.create_price_list(s, code="base-outlet", name="Outlet", currency="EUR")
        service.set_prices(s, price_list="base-outlet", prices={"TEE-S": "19.99", "TEE-M": "19.99", "HOOD-M": "39.00",
                                                                "SOCK-1": "5.00"})
        service.create_price_list(s, code="base-usd", name="USD", currency="USD")
        service.set_prices(s, price_list="base-usd", prices={"TEE-S": "21.00", "TEE-M": "21.00", "HOOD-M": "52.00"})
    promo(db, "app-tees", {"type": "percent_off", "percent": "10"}, channel_codes=["app"],
          target={"skus": ["TEE-S"]})
    r = client.get("/api/v1/pricing/consistency", params={"at": NOW.isoformat()}, headers=admin_headers)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["channels"] == ["app", "outlet", "store-12", "web", "web-us"]
    assert report["skus_checked"] == 4
    hood, socks = fc_product_ids(db, "HOOD-M", "SOCK-1")
    assert report["products"] == sorted([hood, socks])
    found = {(f["sku"], f["status"]): f["reason"] for f in report["findings"]}
    assert found == {
        ("HOOD-M", "unexplained"): "prices differ without a channel rule: app 49.00 EUR, outlet 39.00 EUR, "
                                   "store-12 49.00 EUR, web 49.00 EUR",
        ("SOCK-1", "missing_price"): "sold but no price in web-us (USD)",
        ("TEE-S", "explained"): "channel rules: app 17.99 EUR by app-tees",
    }
    monkeypatch.setenv("OMNI_DATABASE_URL", db.url)
    get_settings.cache_clear()
    try:
        omni = typer.Typer()
        omni.add_typer(check_app, name="check")  # as the main CLI registers it
        result = CliRunner().invoke(omni, ["check", "consistency", "--at", NOW.isoformat(), "--json"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert '"products": [' in result.output and '"status": "explained"' not in result.output


def fc_product_ids(db: Database, *skus: str) -> list[str]:
    from omnijourney.catalog.service import variants_for_skus

    with db.transaction(write=False) as s:
        info = variants_for_skus(s, skus, "web")
    return [info[sku].product_id for sku in skus]


def test_manage_price_lists_promotions_and_vouchers(db: Database, client: TestClient,
                                                    admin_headers: dict[str, str]) -> None:
    api = "/api/v1/pricing"
    r = client.post(f"{api}/price-lists", headers=admin_headers,
                    json={"code": "app-eur", "name": "App", "currency": "EUR", "kind": "channel",
                          "channel_types": ["app"], "priority": 5})
    assert r.status_code == 201, r.text
    bad = [({"code": "b", "name": "B", "currency": "EUR", "kind": "base", "segments": ["vip"]}, 422, "kind"),
           ({"code": "c", "name": "C", "currency": "EUR", "kind": "channel"}, 422, "kind"),
           ({"code": "d", "name": "D", "currency": "eur"}, 422, "currency"),
           ({"code": "app-eur", "name": "Again", "currency": "EUR"}, 409, "code")]
    for body, status, field in bad:
        r = client.post(f"{api}/price-lists", json=body, headers=admin_headers)
        assert (r.status_code, r.json()["field"]) == (status, field), r.text
    r = client.put(f"{api}/price-lists/app-eur/prices", headers=admin_headers,
                   json={"prices": {"A": "10.00", "B": "1.999"}})
    assert (r.status_code, r.json()["field"]) == (422, "prices.B")
    assert count(db, PriceEntry) == 0
    r = client.put(f"{api}/price-lists/app-eur/prices", headers=admin_headers,
                   json={"prices": {"A": "10.00", "B": "2"}})
    assert r.json() == {"written": 2, "removed": 0}
    r = client.put(f"{api}/price-lists/app-eur/prices", headers=admin_headers,
                   json={"prices": {"A": "9.50"}, "remove": ["B"]})
    assert r.json() == {"written": 1, "removed": 1}
    assert client.get(f"{api}/price-lists/app-eur/prices", headers=admin_headers).json()["prices"] == {"A": "9.50"}
    r = client.put(f"{api}/markets/FR", headers=admin_headers,
                   json={"taxes_included": True, "tax_rates": {"standard": "0.20", "reduced": "0.055"},
                         "shipping_fees": {"EUR": "3.5"}})
    assert r.json() == {"market": "FR", "taxes_included": True, "tax_rates": {"reduced": "0.055", "standard": "0.2"},
                        "shipping_fees": {"EUR": "3.50"}}
    r = client.post(f"{api}/promotions", headers=admin_headers,
                    json={"code": "p", "name": "P", "rule": {"type": "percent_off", "percent": "150"}})
    assert (r.status_code, r.json()["field"]) == (422, "rule.percent_off.percent")
    r = client.post(f"{api}/promotions", headers=admin_headers,
                    json={"code": "p", "name": "P", "rule": {"type": "amount_off", "amount": "5"}})
    assert (r.status_code, r.json()["field"]) == (422, "currency")
    assert count(db, Promotion) == 0
    r = client.post(f"{api}/promotions", headers=admin_headers,
                    json={"code": "p", "name": "P", "rule": {"type": "bundle", "price": "25.00",
                                                             "items": [{"sku": "A"}, {"sku": "B"}]},
                          "currency": "EUR", "needs_voucher": True, "valid_from": "2026-01-01T00:00:00Z"})
    assert r.status_code == 201, r.text
    assert r.json()["rule"] == {"type": "bundle", "price": "25.00",
                                "items": [{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": 1}]}
    r = client.patch(f"{api}/promotions/p", headers=admin_headers, json={"priority": 3, "active": False})
    assert (r.json()["priority"], r.json()["active"], r.json()["valid_from"]) == (3, False, "2026-01-01T00:00:00Z")
    r = client.post(f"{api}/vouchers", headers=admin_headers, json={"code": "spring", "promotion": "p", "max_uses": 1})
    assert (r.status_code, r.json()["code"], r.json()["used"]) == (201, "SPRING", 0)
    r = client.post(f"{api}/vouchers/SPRING/redemptions", headers=admin_headers, json={"order_ref": "o-1"})
    assert r.status_code == 201, r.text
    r = client.post(f"{api}/vouchers/SPRING/redemptions", headers=admin_headers, json={"order_ref": "o-2"})
    assert (r.status_code, r.json()["code"]) == (409, "voucher_exhausted")
    assert client.get(f"{api}/vouchers/spring", headers=admin_headers).json()["used"] == 1
    r = client.patch(f"{api}/vouchers/spring", headers=admin_headers, json={"max_uses": 0})
    assert (r.status_code, r.json()["field"]) == (422, "max_uses")
    r = client.patch(f"{api}/vouchers/spring", headers=admin_headers, json={"max_uses": 5, "active": False})
    assert (r.json()["max_uses"], r.json()["active"], r.json()["used"]) == (5, False, 1)
    assert client.get(f"{api}/price-lists", headers={}).status_code == 401
