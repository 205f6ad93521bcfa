"""Carts and their events stay with the person when a merge happens at the same moment (PostgreSQL, where
transactions really interleave; SQLite serialises every writer). Each test holds one transaction open at the
critical point, runs the other side meanwhile, and checks the loser's answer and the final state."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from omnijourney.carts import service
from omnijourney.carts.models import Cart
from omnijourney.core.errors import Conflict
from omnijourney.db import Database
from omnijourney.tracking.models import Event
from tests import factories_catalog as fc
from tests.carts.test_carts_identity import two_profiles
from tests.customers.test_identity import customer_of
from tests.factories import msg, run_jobs, send, source

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _postgresql_only(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite serialises every write transaction: nothing can interleave")


class Background:
    """``fn()`` in a thread: its result or exception, and whether it is still waiting."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:  # handed to the test
            self.error = exc

    def waiting(self, seconds: float = 0.5) -> bool:
        self.thread.join(seconds)
        return self.thread.is_alive()

    def finish(self, seconds: float = 10.0) -> Any:
        self.thread.join(seconds)
        assert not self.thread.is_alive(), "still blocked"
        if self.error is not None:
            raise self.error
        return self.result


def test_a_cart_written_while_its_owner_is_merged_ends_on_the_survivor(db: Database) -> None:
    web, survivor, merged = two_profiles(db)
    # the till opens a cart for the loyalty-card profile and adds a line, and has not committed yet ...
    till = db.begin()
    cart, _ = service.open_cart(till, channel_code="store-12", customer_id=merged)
    service.add_line(till, cart_id=cart.id, sku="TEE-M", quantity=2, channel_code="store-12")
    # ... when the web shop's login links the card to the web profile: ingestion does not wait for the till
    login = Background(lambda: send(db, msg(web, "identify", user_id="u-1", minutes=10,
                                            context={"externalIds": [{"id": "LC-1", "type": "loyalty_card"}]}),
                                    msg(web, "track", anonymous_id="other-1", event="Product Viewed", minutes=10)))
    assert login.finish(5.0).accepted == 2
    # the job that moves the merged profile's rows waits for the till's transaction ...
    follow = Background(lambda: run_jobs(db))
    assert follow.waiting(0.5)
    till.commit()
    till.close()
    assert follow.finish() >= 1
    # ... so the cart and its "Product Added" are the survivor's
    with db.transaction(write=False) as s:
        assert s.get(Cart, cart.id).customer_id == survivor
        owners = set(s.scalars(select(Event.customer_id).where(Event.event == "Product Added")))
        assert owners == {survivor}
        assert s.scalar(select(Event.id).where(Event.customer_id == merged)) is None


def test_a_write_that_starts_after_the_merge_lands_on_the_survivor(db: Database) -> None:
    web, survivor, merged = two_profiles(db)
    send(db, msg(web, "identify", user_id="u-1", minutes=10,
                 context={"externalIds": [{"id": "LC-1", "type": "loyalty_card"}]}))
    with db.transaction() as s:  # the follow job has not run yet
        cart, created = service.open_cart(s, channel_code="store-12", customer_id=merged)
        assert created and cart.customer_id == survivor


def test_two_assigns_of_one_anonymous_cart_cannot_both_win(db: Database) -> None:
    _, first, second = two_profiles(db)
    with db.transaction() as s:
        cart, _ = service.open_cart(s, channel_code="web", anonymous_id="laptop-9")
        service.add_line(s, cart_id=cart.id, sku="TEE-M", quantity=1, channel_code="web")
    winner = db.begin()
    service.assign(winner, cart_id=cart.id, customer_id=first, channel_code="web")

    def other() -> None:
        with db.transaction() as s:
            service.assign(s, cart_id=cart.id, customer_id=second, channel_code="web")

    loser = Background(other)
    assert loser.waiting(0.5)  # queued behind the first assign's locks
    winner.commit()
    winner.close()
    with pytest.raises(Conflict) as refused:
        loser.finish()
    assert refused.value.code == "cart_owned"
    with db.transaction(write=False) as s:
        assert s.get(Cart, cart.id).customer_id == first
        assert s.scalar(select(Cart.id).where(Cart.customer_id == second)) is None


def test_an_anonymous_cart_opened_during_the_login_is_adopted(db: Database) -> None:
    fc.shop(db)
    web = source(db, "web")
    send(db, msg(web, "identify", user_id="u-7", anonymous_id="phone-1", minutes=0))
    send(db, msg(web, "page", anonymous_id="laptop-1", minutes=1))
    # the laptop opens its cart (not committed yet) ...
    laptop = db.begin()
    cart, created = service.open_cart(laptop, channel_code="web", anonymous_id="laptop-1")
    service.add_line(laptop, cart_id=cart.id, sku="TEE-M", quantity=1, channel_code="web")
    assert created
    # ... while the login on the laptop is ingested: it cannot see the cart, and does not wait for it
    send(db, msg(web, "identify", user_id="u-7", anonymous_id="laptop-1", minutes=2))
    laptop.commit()
    laptop.close()
    run_jobs(db)
    with db.transaction(write=False) as s:
        assert s.get(Cart, cart.id).customer_id == customer_of(db, "user_id", "u-7")


def test_a_group_committed_batch_is_stored_whatever_the_carts_do(db: Database, live_server: str) -> None:
    import httpx

    web, survivor, merged = two_profiles(db)
    till = db.begin()  # a cart change of the profile about to be merged, holding its locks
    cart, _ = service.open_cart(till, channel_code="store-12", customer_id=merged)
    service.add_line(till, cart_id=cart.id, sku="TEE-M", quantity=1, channel_code="store-12")
    batch = {"batch": [
        {"type": "identify", "userId": "u-1", "messageId": "m-login",
         "context": {"externalIds": [{"id": "LC-1", "type": "loyalty_card"}]}},
        *({"type": "track", "event": "Product Viewed", "anonymousId": f"v-{i}", "messageId": f"m-{i}"}
          for i in range(3)),
    ]}
    with httpx.Client(base_url=live_server, auth=(web.write_key, ""), timeout=10) as http:
        answer = http.post("/v1/batch", json=batch)
    assert answer.status_code == 200, answer.text
    till.commit()
    till.close()
    run_jobs(db)
    with db.transaction(write=False) as s:
        stored = set(s.scalars(select(Event.message_id).where(Event.source_id == web.id)))
        assert {"m-login", "m-0", "m-1", "m-2"} <= stored
        assert s.get(Cart, cart.id).customer_id == survivor
