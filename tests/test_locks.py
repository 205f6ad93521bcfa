"""The one lock module: domains never lock rows themselves, and cannot write a customer-keyed row unlocked."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnijourney import locks
from omnijourney.carts.models import Cart
from omnijourney.core.ids import new_id
from omnijourney.core.time import utcnow
from omnijourney.db import Database
from tests import factories_catalog as fc
from tests.factories import msg, send, source

SRC = Path(__file__).resolve().parents[1] / "src" / "omnijourney"


def test_row_locks_are_taken_only_by_the_lock_module() -> None:
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if p.name != "locks.py" and ("with_for_update" in p.read_text() or "FOR UPDATE" in p.read_text())
                 # the job queue's own claim and a hot level's pool rows: SKIP LOCKED, never waited for
                 and p.parts[-2:] not in (("jobs", "service.py"), ("inventory", "pools.py"))]
    assert offenders == []


def _customer(db: Database) -> str:
    fc.shop(db)
    send(db, msg(source(db, "web"), "identify", user_id="u-1", anonymous_id="w-1"))
    from tests.customers.test_identity import customer_of

    cid = customer_of(db, "user_id", "u-1")
    assert cid
    return cid


def test_a_customer_keyed_row_cannot_be_written_without_the_person_lock(db: Database) -> None:
    cid = _customer(db)
    now = utcnow()
    row = dict(id=new_id(), customer_id=cid, currency="EUR", channel_code="web", status="active", voucher_codes=[],
               created_at=now, updated_at=now)
    with pytest.raises(RuntimeError, match=r"without locks\.customers"), db.transaction() as s:
        s.add(Cart(**row))
        s.flush()
    with db.transaction() as s:
        assert locks.customer(s, cid) == cid
        s.add(Cart(**row))
        s.flush()
    with db.transaction(write=False) as s:
        assert s.get(Cart, row["id"]) is not None


def test_locking_a_merged_profile_answers_its_survivor(db: Database) -> None:
    cid = _customer(db)
    web = source(db, "web", name="web 2")
    send(db, msg(web, "identify", anonymous_id="pos-1", context={"externalIds": [{"id": "LC-1",
                                                                                  "type": "loyalty_card"}]}))
    from tests.customers.test_identity import customer_of

    other = customer_of(db, "loyalty_card", "LC-1")
    send(db, msg(web, "identify", user_id="u-1", context={"externalIds": [{"id": "LC-1", "type": "loyalty_card"}]}))
    with db.transaction() as s:
        assert locks.customers(s, [other, cid]) == {other: cid, cid: cid}
        with pytest.raises(Exception, match="no customer"):
            locks.customers(s, ["nobody"])
