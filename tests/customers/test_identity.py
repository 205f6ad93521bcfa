"""Identity resolution: anonymous to known, merges and their log, guard rails, traits, consent."""

from __future__ import annotations

from sqlalchemy import func, select

from omnijourney.config import IdentityRule, IdentitySettings
from omnijourney.customers.models import Customer, Identity, Merge
from omnijourney.db import Database
from omnijourney.tracking.models import Event
from tests.factories import msg, send, source


def customer_of(db: Database, id_type: str, value: str) -> str | None:
    with db.transaction(write=False) as s:
        return s.scalar(select(Identity.customer_id).where(Identity.type == id_type, Identity.value == value))


def event_customers(db: Database) -> list[str | None]:
    with db.transaction(write=False) as s:
        return list(s.scalars(select(Event.customer_id).order_by(Event.id)))


def count(db: Database, model: type) -> int:
    with db.transaction(write=False) as s:
        return s.scalar(select(func.count()).select_from(model))


def test_anonymous_visitor_becomes_known_with_history(db: Database) -> None:
    web = source(db, "web")
    send(db, msg(web, anonymous_id="anon-1", minutes=0), msg(web, anonymous_id="anon-1", minutes=1))
    anon_profile = customer_of(db, "anonymous_id", "anon-1")
    send(db, msg(web, "identify", anonymous_id="anon-1", user_id="u-42", traits={"email": "Ann@Example.COM"},
                 minutes=5))
    assert customer_of(db, "user_id", "u-42") == anon_profile
    assert customer_of(db, "email", "ann@example.com") == anon_profile
    assert event_customers(db) == [anon_profile] * 3
    assert count(db, Customer) == 1


def test_rudderstack_external_id_in_the_singular_identifies(db: Database) -> None:
    # RudderStack's SDKs put custom identifiers in context.externalId (a list of {id, type})
    store = source(db, "store", store="S12")
    send(db, msg(store, anonymous_id="pos-1", context={"externalId": [{"id": "LC 555", "type": "loyalty_card"}]}))
    send(db, msg(store, anonymous_id="pos-2", context={"externalIds": [{"id": "lc555", "type": "loyalty_card"}]},
                 minutes=5))
    owner = customer_of(db, "loyalty_card", "LC555")
    assert owner is not None
    assert customer_of(db, "anonymous_id", "pos-1") == customer_of(db, "anonymous_id", "pos-2") == owner


def test_two_known_profiles_merge_with_log_traits_and_timeline(db: Database) -> None:
    web, store = source(db, "web"), source(db, "store", store="S12")
    send(db, msg(web, "identify", user_id="u-1", anonymous_id="a-1", traits={"name": "Ann", "tier": "silver"},
                 minutes=0))
    send(db, msg(store, "identify", anonymous_id="pos-9",
                 context={"externalIds": [{"id": "LC 777", "type": "loyalty_card"}]},
                 traits={"tier": "gold", "email": "ann@x.io"}, minutes=10))
    first, second = customer_of(db, "user_id", "u-1"), customer_of(db, "loyalty_card", "LC777")
    assert first and second and first != second
    # the web shop learns the loyalty card: one message names both profiles' identifiers
    send(db, msg(web, "track", user_id="u-1", event="Order Completed",
                 context={"externalIds": [{"id": "lc777", "type": "loyalty_card"}]}, minutes=20))
    assert customer_of(db, "loyalty_card", "LC777") == first  # the older profile survives
    assert set(event_customers(db)) == {first}
    with db.transaction(write=False) as s:
        survivor = s.get(Customer, first)
        merged = s.get(Customer, second)
        log = s.scalars(select(Merge)).all()
    assert merged.merged_into == first
    assert survivor.traits == {"name": "Ann", "tier": "gold", "email": "ann@x.io"}  # latest wins
    assert survivor.trait_meta["tier"] == ["2026-03-01T12:00:00.000000Z", "2026-03-01T12:10:00.000000Z"]
    assert survivor.merge_count == 1
    assert [(m.survivor_id, m.merged_id) for m in log] == [(first, second)]
    assert ["loyalty_card", "LC777"] in log[0].identifiers


def test_shared_store_tablet_does_not_glue_customers(db: Database) -> None:
    store = source(db, "store", store="S1")
    tablet = {"device": {"id": "store-tablet-1"}}
    send(db, msg(store, "identify", user_id="ann", anonymous_id="t1", context=tablet, minutes=0))
    send(db, msg(store, "identify", user_id="bob", anonymous_id="t1", context=tablet, minutes=1))
    ann, bob = customer_of(db, "user_id", "ann"), customer_of(db, "user_id", "bob")
    assert ann and bob and ann != bob
    # the shared device and anonymous id stay with the first; Bob's event is Bob's
    assert customer_of(db, "device_id", "store-tablet-1") == ann
    assert event_customers(db) == [ann, bob]
    assert count(db, Merge) == 0


def test_limit_over_a_window_and_priority(db: Database) -> None:
    rules = dict(IdentitySettings().rules)
    rules["anonymous_id"] = IdentityRule(limit=2, priority=9, window_days=1)
    settings = IdentitySettings(rules=rules)
    web = source(db, "web")
    send(db, msg(web, user_id="u", anonymous_id="a1", minutes=0),
         msg(web, user_id="u", anonymous_id="a2", minutes=1),
         msg(web, user_id="u", anonymous_id="a3", minutes=2),  # third in a day: not linked
         msg(web, user_id="u", anonymous_id="a4", minutes=60 * 24 * 3), settings=settings)  # later window: fine
    u = customer_of(db, "user_id", "u")
    assert [customer_of(db, "anonymous_id", a) for a in ("a1", "a2", "a3", "a4")] == [u, u, None, u]
    assert event_customers(db) == [u] * 4


def test_blocked_junk_values_never_link(db: Database) -> None:
    web = source(db, "web")
    send(db, msg(web, "identify", user_id="x1", anonymous_id="anonymous", traits={"email": "null"}),
         msg(web, "identify", user_id="x2", anonymous_id="00000000-0000-0000-0000-000000000000"),
         msg(web, "identify", user_id="x3", anonymous_id="anonymous"))
    profiles = {customer_of(db, "user_id", u) for u in ("x1", "x2", "x3")}
    assert len(profiles) == 3
    assert count(db, Identity) == 3


def test_merge_cap(db: Database) -> None:
    web = source(db, "web")
    settings = IdentitySettings(max_merges_per_profile=1)
    send(db, msg(web, anonymous_id="p1"), msg(web, anonymous_id="p2", minutes=1),
         msg(web, anonymous_id="p3", user_id="u-3", minutes=2), settings=settings)
    p1, p3 = customer_of(db, "anonymous_id", "p1"), customer_of(db, "anonymous_id", "p3")
    send(db, msg(web, "alias", anonymous_id="p1", previous_id="p2", minutes=3), settings=settings)
    assert customer_of(db, "anonymous_id", "p2") == p1  # first merge allowed
    with db.transaction(write=False) as s:
        assert s.scalar(select(Event.previous_id).where(Event.type == "alias")) == "p2"
    send(db, msg(web, anonymous_id="p1", context={"device": {"id": "d-3"}}, minutes=4),
         msg(web, user_id="u-3", context={"device": {"id": "d-3"}}, minutes=5), settings=settings)
    # a second merge would pass the cap: the device id is dropped from the later event instead
    assert customer_of(db, "anonymous_id", "p3") == p3 != p1
    assert customer_of(db, "device_id", "d-3") == p1
    assert count(db, Merge) == 1
    assert event_customers(db)[-1] == p3


def test_consent_recorded_with_time_and_source_latest_wins(db: Database) -> None:
    web = source(db, "web", name="Web shop")
    ctx_late = {"consent": {"categoryPreferences": {"Advertising": False, "Analytics": True}}}
    ctx_early = {"consent": {"categoryPreferences": {"Advertising": True}}}
    send(db, msg(web, anonymous_id="c1", context=ctx_late, minutes=10),
         msg(web, anonymous_id="c1", context=ctx_early, minutes=5))  # arrives late, is older
    with db.transaction(write=False) as s:
        consent = s.get(Customer, customer_of(db, "anonymous_id", "c1")).consent
    assert consent == {
        "Advertising": {"granted": False, "at": "2026-03-01T12:10:00.000000Z", "source": "Web shop",
                        "channel": "web"},
        "Analytics": {"granted": True, "at": "2026-03-01T12:10:00.000000Z", "source": "Web shop",
                      "channel": "web"},
    }


def test_retried_message_is_stored_once(db: Database) -> None:
    web = source(db, "web")
    m = msg(web, anonymous_id="r1", message_id="m-1")
    assert send(db, m, m).accepted == 1
    result = send(db, m)
    assert (result.accepted, result.duplicates) == (0, 1)
    assert count(db, Event) == 1


def test_concurrent_batches_resolve_to_one_profile_per_person(db: Database) -> None:
    """Eight writers at once, every batch naming the same people: no duplicate profiles, nothing lost."""
    import threading

    web, app = source(db, "web"), source(db, "app")
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for round_ in range(3):
                send(db, *[msg(web if k % 2 else app, "identify", user_id=f"person-{p}",
                               anonymous_id=f"dev-{k}-{p}", traits={"email": f"p{p}@x.io"}, minutes=round_)
                           for p in range(20)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.transaction(write=False) as s:
        live = s.scalar(select(func.count()).select_from(Customer).where(Customer.merged_into.is_(None)))
        per_person = s.execute(select(Identity.value, Identity.customer_id).where(Identity.type == "user_id")).all()
    assert live == 20
    assert len(per_person) == 20
    assert count(db, Event) == 8 * 3 * 20
    for value, cid in per_person:
        p = value.removeprefix("person-")
        assert customer_of(db, "email", f"p{p}@x.io") == cid


def test_awkward_text_is_stored_exactly(db: Database) -> None:
    web = source(db, "web")
    props = {"q": 'tab\there\nnew line \\ back\\slash "quoted" \r ünïcødé ✓', "n": [1, 2.5, None, True]}
    send(db, msg(web, anonymous_id="tab\tid", event="Search\tDone", properties=props))
    with db.transaction(write=False) as s:
        row = s.execute(select(Event.anonymous_id, Event.event, Event.properties)).one()
    assert tuple(row) == ("tab\tid", "Search\tDone", props)
