"""A retried cart change (same Idempotency-Key) changes the cart and writes its event once."""

from __future__ import annotations

import threading

import httpx
import pytest
from fastapi.testclient import TestClient

from omnijourney.db import Database
from tests.carts.test_carts import events, lines, open_cart


@pytest.fixture
def shop(db: Database) -> Database:
    from tests import factories_catalog as fc

    fc.shop(db)
    return db


def _add(client: TestClient, headers: dict[str, str], cart_id: str, quantity: int, key: str | None) -> httpx.Response:
    extra = {"Idempotency-Key": key} if key else {}
    return client.post(f"/api/v1/carts/{cart_id}/lines", json={"sku": "TEE-S", "quantity": quantity,
                                                                "channel": "web"}, headers={**headers, **extra})


def test_a_retried_add_adds_once(client: TestClient, shop: Database, admin_headers: dict[str, str]) -> None:
    cart = open_cart(client, admin_headers, anonymous_id="anon-1")["id"]
    first = _add(client, admin_headers, cart, 2, "k-1")
    again = _add(client, admin_headers, cart, 2, "k-1")  # the client lost the answer and retries
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert lines(shop, cart) == {"TEE-S": 2}
    assert [e[0] for e in events(shop)] == ["Product Added"]
    # a new key is a new request; no key, as before, adds again
    assert _add(client, admin_headers, cart, 1, "k-2").json()["lines"][0]["quantity"] == 3
    assert _add(client, admin_headers, cart, 1, None).json()["lines"][0]["quantity"] == 4


def test_a_key_reused_for_another_request_is_refused(client: TestClient, shop: Database,
                                                     admin_headers: dict[str, str]) -> None:
    cart = open_cart(client, admin_headers, anonymous_id="anon-1")["id"]
    assert _add(client, admin_headers, cart, 2, "k-1").status_code == 200
    r = _add(client, admin_headers, cart, 5, "k-1")
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (422, "idempotency_key_reused", "Idempotency-Key")
    assert lines(shop, cart) == {"TEE-S": 2}


def test_a_failed_request_does_not_use_up_its_key(client: TestClient, shop: Database,
                                                  admin_headers: dict[str, str]) -> None:
    cart = open_cart(client, admin_headers, anonymous_id="anon-1")["id"]
    r = client.post(f"/api/v1/carts/{cart}/lines", json={"sku": "TEE-S", "quantity": 1, "channel": "web",
                                                          "expected_version": 7},
                    headers={**admin_headers, "Idempotency-Key": "k-1"})
    assert r.status_code == 409
    r = client.post(f"/api/v1/carts/{cart}/lines", json={"sku": "TEE-S", "quantity": 1, "channel": "web",
                                                          "expected_version": 7},
                    headers={**admin_headers, "Idempotency-Key": "k-1"})
    assert r.status_code == 409 and "Idempotent-Replayed" not in r.headers  # tried again, not replayed


def test_keys_belong_to_their_caller_and_route(client: TestClient, shop: Database,
                                               admin_headers: dict[str, str]) -> None:
    from tests.conftest import make_key

    other = {"Authorization": f"Bearer {make_key(shop, 'carts:write', name='pos')}"}
    cart = open_cart(client, admin_headers, anonymous_id="anon-1")["id"]
    assert _add(client, admin_headers, cart, 1, "same").status_code == 200
    assert _add(client, other, cart, 1, "same").headers.get("Idempotent-Replayed") is None
    assert lines(shop, cart) == {"TEE-S": 2}


def test_a_double_click_at_the_same_moment_adds_once(live_server: str, shop: Database,
                                                     admin_headers: dict[str, str]) -> None:
    with httpx.Client(base_url=live_server, headers=admin_headers) as http:
        cart = http.post("/api/v1/carts", json={"channel": "web", "anonymous_id": "anon-1"}).json()["id"]
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(4)

    def click() -> None:
        with httpx.Client(base_url=live_server, headers={**admin_headers, "Idempotency-Key": "dbl"}) as http:
            barrier.wait()
            answers.append(http.post(f"/api/v1/carts/{cart}/lines",
                                     json={"sku": "TEE-S", "quantity": 1, "channel": "web"}))

    threads = [threading.Thread(target=click) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(r.status_code for r in answers) == [200] * 4, [r.text for r in answers]
    assert lines(shop, cart) == {"TEE-S": 1}
    assert [e[0] for e in events(shop)] == ["Product Added"]
