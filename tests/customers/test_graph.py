"""The identity rules of customers/graph.py on their own: pure, in memory, no database.

Each test names the rule it guards; changing that rule in graph.py makes the test fail.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from omnijourney.config import IdentityRule, IdentitySettings
from omnijourney.customers.graph import Graph, Profile, merge_traits, stamp
from omnijourney.customers.identifiers import Extractor, Identifier

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=365)  # the graph's "now": every event below happened before it


def at(days: float = 0, minutes: float = 0) -> datetime:
    return T0 + timedelta(days=days, minutes=minutes)


def U(v: str) -> Identifier:
    return ("user_id", v)


def A(v: str) -> Identifier:
    return ("anonymous_id", v)


def E(v: str) -> Identifier:
    return ("email", v)


def D(v: str) -> Identifier:
    return ("device_id", v)


def identity(rules: dict[str, IdentityRule] | None = None, **kw: Any) -> IdentitySettings:
    """The default settings with some rules replaced."""
    merged = dict(IdentitySettings().rules)
    merged.update(rules or {})
    return IdentitySettings(rules=merged, **kw)


def new_graph(s: IdentitySettings | None = None, now: datetime = NOW) -> Graph:
    return Graph(s or IdentitySettings(), now)


def stored(g: Graph, pid: str, idents: Iterable[Identifier] = (), *, created: datetime = T0,
           linked: datetime = T0, merge_count: int = 0, merged_into: str | None = None) -> Profile:
    """A profile as the database would hand it to the graph."""
    p = Profile(id=pid, created_at=created, merge_count=merge_count, merged_into=merged_into)
    assert g.add_profile(p)
    for t, v in idents:
        g.add_identity(t, v, pid, linked)
    return p


def owner(g: Graph, ident: Identifier) -> str | None:
    return g.owner.get(ident)


# -- linking and creating ---------------------------------------------------------------------------------


def test_a_message_without_identifiers_belongs_to_nobody() -> None:
    g = new_graph()
    assert g.resolve([], at=at()) is None
    assert g.profiles == {} and g.links == []


def test_unknown_identifiers_create_one_profile_holding_all_of_them() -> None:
    g = new_graph()
    cid = g.resolve([U("u1"), E("ann@x.io"), A("a1")], at=at(), message_id="m1", source_id="src")
    assert cid is not None
    p = g.profiles[cid]
    assert p.new and p.created_at == at() and p.merged_into is None
    assert g.changed == {cid: p}
    assert {i: owner(g, i) for i in (U("u1"), E("ann@x.io"), A("a1"))} == dict.fromkeys(
        (U("u1"), E("ann@x.io"), A("a1")), cid)
    assert p.idents == {"user_id": {"u1": at()}, "email": {"ann@x.io": at()}, "anonymous_id": {"a1": at()}}
    assert [(lk.type, lk.value, lk.customer_id, lk.first_seen, lk.source_id) for lk in g.links] == [
        ("user_id", "u1", cid, at(), "src"), ("email", "ann@x.io", cid, at(), "src"),
        ("anonymous_id", "a1", cid, at(), "src")]


def test_a_profile_is_never_created_in_the_future() -> None:
    # a device with a fast clock must not make its profile the youngest (it would lose every merge)
    g = new_graph(now=T0)
    cid = g.resolve([A("a1")], at=at(days=3))
    assert g.profiles[cid].created_at == T0


def test_every_new_profile_gets_its_own_id() -> None:
    g = new_graph()
    ids = [g.resolve([A(f"a{i}")], at=at()) for i in range(300)]
    assert len(set(ids)) == 300 == len(g.profiles)


def test_a_known_identifier_links_the_new_ones_to_its_profile() -> None:
    g = new_graph()
    cid = g.resolve([A("a1")], at=at())
    g.links.clear()
    assert g.resolve([U("u1"), A("a1")], at=at(minutes=5), source_id="web") == cid
    assert len(g.profiles) == 1
    assert owner(g, U("u1")) == cid
    assert g.profiles[cid].idents["user_id"] == {"u1": at(minutes=5)}
    assert g.profiles[cid].idents["anonymous_id"] == {"a1": at()}  # first link time kept
    assert [(lk.type, lk.value, lk.customer_id) for lk in g.links] == [("user_id", "u1", cid)]


def test_a_known_visitor_changes_nothing() -> None:
    g = new_graph()
    stored(g, "p1", [U("u1"), A("a1")])
    assert g.resolve([U("u1"), A("a1")], at=at(days=1)) == "p1"
    assert g.links == [] and g.changed == {} and g.merges == []
    assert g.profiles["p1"].idents["anonymous_id"] == {"a1": T0}


def test_loading_keeps_the_graphs_own_state_and_remembers_what_was_asked() -> None:
    g = new_graph()
    p = stored(g, "p1", [U("u1")])
    assert not g.add_profile(Profile(id="p1", created_at=NOW))
    assert g.profiles["p1"] is p
    g.looked_up.add(E("asked@x.io"))
    assert g.missing({U("u1"), E("asked@x.io"), E("new@x.io")}) == {E("new@x.io")}


def test_stamps_compare_as_text_in_time_order() -> None:
    times = [datetime(2024, 1, 1, 9, 5, 3, tzinfo=UTC), datetime(2024, 1, 1, 10, 0, 0, 5, tzinfo=UTC),
             datetime(2024, 11, 1, tzinfo=UTC)]
    assert [stamp(t) for t in times] == sorted(stamp(t) for t in times)
    assert stamp(times[1]) == "2024-01-01T10:00:00.000005Z"


# -- previous_id (alias) ----------------------------------------------------------------------------------


def test_an_alias_names_a_known_user_id_first() -> None:
    g = new_graph(identity({"user_id": IdentityRule(limit=2, priority=1)}))
    stored(g, "old", [U("legacy-7")], created=T0)
    stored(g, "anon", [A("legacy-7")], created=at(days=1))
    cid = g.resolve([U("new-7"), ("previous_id", "legacy-7")], at=at(days=2))
    assert cid == "old"
    assert owner(g, U("new-7")) == "old"
    assert g.profiles["anon"].merged_into is None  # the anonymous id of the same text was not meant
    assert ("previous_id", "legacy-7") not in g.owner


def test_an_alias_of_an_unknown_user_names_an_anonymous_id() -> None:
    g = new_graph()
    stored(g, "visitor", [A("a1")])
    assert g.resolve([U("u1"), ("previous_id", "a1")], at=at(days=1)) == "visitor"
    assert owner(g, U("u1")) == "visitor"
    # and when nothing is known, the previous id is linked as an anonymous id
    cid = g.resolve([U("u2"), ("previous_id", "a2")], at=at(days=1))
    assert owner(g, A("a2")) == cid != "visitor"


def test_an_alias_naming_the_messages_anonymous_id_counts_and_logs_it_once() -> None:
    # analytics.js sends alias(newId) with previousId = the anonymous id, which the message carries too
    g = new_graph()
    stored(g, "visitor", [A("a1")], created=T0)
    stored(g, "member", [U("u2")], created=at(days=1))
    assert g.resolve([U("u2"), ("previous_id", "a1"), A("a1")], at=at(days=2), message_id="m1") == "visitor"
    assert [m.identifiers for m in g.merges] == [[["user_id", "u2"], ["anonymous_id", "a1"]]]


def test_an_alias_naming_the_messages_anonymous_id_does_not_crowd_out_other_identifiers() -> None:
    rules = {"anonymous_id": IdentityRule(limit=1, priority=9), "crm": IdentityRule(limit=5, priority=10)}
    g = new_graph(identity(rules))
    stored(g, "p", [U("u1")])
    assert g.resolve([U("u1"), ("previous_id", "a1"), A("a1"), ("crm", "c1")], at=at()) == "p"
    assert owner(g, A("a1")) == owner(g, ("crm", "c1")) == "p"


# -- merging ----------------------------------------------------------------------------------------------


def test_profiles_sharing_a_message_merge_into_the_oldest() -> None:
    g = new_graph()
    stored(g, "young", [U("u1"), A("a1")], created=at(days=5), merge_count=2)
    stored(g, "old", [E("ann@x.io")], created=at(days=1), linked=at(days=1))
    cid = g.resolve([U("u1"), E("ann@x.io"), D("d1")], at=at(days=6), message_id="m9", source_id="pos")
    assert cid == "old"
    young, old = g.profiles["young"], g.profiles["old"]
    assert young.merged_into == "old" and old.merged_into is None
    assert young.idents == {}
    assert old.idents == {"email": {"ann@x.io": at(days=1)}, "user_id": {"u1": T0}, "anonymous_id": {"a1": T0},
                          "device_id": {"d1": at(days=6)}}
    assert {owner(g, i) for i in (U("u1"), A("a1"), E("ann@x.io"), D("d1"))} == {"old"}
    assert old.merge_count == 3  # the loser's own merges count too
    assert set(g.changed) == {"young", "old"}
    [m] = g.merges
    # the identifiers that caused it: those of the message that already belonged to a profile
    assert (m.survivor_id, m.merged_id, m.at, m.message_id, m.source_id, m.identifiers) == (
        "old", "young", at(days=6), "m9", "pos", [["user_id", "u1"], ["email", "ann@x.io"]])
    assert m.reason


def test_equally_old_profiles_merge_into_the_smallest_id() -> None:
    g = new_graph()
    stored(g, "p2", [U("u1")])
    stored(g, "p1", [A("a1")])
    assert g.resolve([U("u1"), A("a1")], at=at(days=1)) == "p1"
    assert g.profiles["p2"].merged_into == "p1"


def test_three_profiles_merge_into_the_oldest_at_once() -> None:
    g = new_graph()
    stored(g, "b", [U("u1")], created=at(days=2))
    stored(g, "c", [E("c@x.io")], created=at(days=3))
    stored(g, "a", [A("a1")], created=at(days=1))
    assert g.resolve([U("u1"), E("c@x.io"), A("a1")], at=at(days=4)) == "a"
    assert sorted((m.merged_id, m.survivor_id) for m in g.merges) == [("b", "a"), ("c", "a")]
    assert g.profiles["a"].merge_count == 2


def test_a_merge_keeps_the_latest_trait_and_the_earliest_first_seen() -> None:
    g = new_graph()
    old = stored(g, "old", [U("u1")], created=T0)
    young = stored(g, "young", [A("a1")], created=at(days=1))
    g.apply_traits("old", {"tier": "silver", "name": "Ann"}, at(days=2))
    g.apply_traits("young", {"tier": "gold", "city": "Lyon"}, at(days=3))
    g.apply_traits("young", {"name": "Annie"}, at(days=1))  # older than the survivor's
    g.resolve([U("u1"), A("a1")], at=at(days=4))
    assert young.merged_into == "old"
    assert old.traits == {"tier": "gold", "name": "Ann", "city": "Lyon"}
    assert old.trait_meta == {"tier": [stamp(at(days=2)), stamp(at(days=3))],
                              "name": [stamp(at(days=1)), stamp(at(days=2))],
                              "city": [stamp(at(days=3)), stamp(at(days=3))]}


def test_merge_traits_keeps_the_survivors_value_on_equal_times() -> None:
    survivor, loser = Profile("s", T0), Profile("l", T0)
    ts = stamp(T0)
    survivor.traits, survivor.trait_meta = {"tier": "silver"}, {"tier": [ts, ts]}
    loser.traits, loser.trait_meta = {"tier": "gold"}, {"tier": [ts, ts]}
    merge_traits(survivor, loser)
    assert survivor.traits == {"tier": "silver"}


def test_merge_traits_ignores_a_missing_first_seen() -> None:
    # a loser's trait without meta (no time known) neither wins nor erases the survivor's first-seen
    survivor, loser = Profile("s", T0), Profile("l", T0)
    survivor.traits, survivor.trait_meta = {"tier": "silver"}, {"tier": [stamp(T0), stamp(at(days=1))]}
    loser.traits = {"tier": "gold", "city": "Lyon"}
    merge_traits(survivor, loser)
    assert survivor.traits == {"tier": "silver", "city": "Lyon"}
    assert survivor.trait_meta == {"tier": [stamp(T0), stamp(at(days=1))], "city": ["", ""]}


def test_a_merge_keeps_the_latest_consent_per_category() -> None:
    survivor, loser = Profile("s", T0), Profile("l", T0)
    early, late = stamp(T0), stamp(at(days=1))
    survivor.consent = {"email": {"granted": True, "at": late}, "sms": {"granted": True, "at": early},
                        "push": {"granted": True, "at": early}}
    loser.consent = {"email": {"granted": False, "at": early}, "sms": {"granted": False, "at": late},
                     "push": {"granted": False, "at": early}, "post": {"granted": True, "at": early}}
    merge_traits(survivor, loser)
    assert {k: v["granted"] for k, v in survivor.consent.items()} == {
        "email": True, "sms": False, "push": True, "post": True}


# -- survivor_of ------------------------------------------------------------------------------------------


def test_survivor_of_follows_a_chain_of_merges() -> None:
    g = new_graph()
    stored(g, "c", [U("u1")])
    stored(g, "b", merged_into="c")
    stored(g, "a", merged_into="b")
    assert [g.survivor_of(x) for x in ("a", "b", "c")] == ["c", "c", "c"]


def test_an_identifier_left_on_a_merged_profile_answers_with_the_survivor() -> None:
    # identities move on merge, but a graph read may still hand one over pointing at the merged profile
    g = new_graph()
    stored(g, "c", [U("u1")], created=T0)
    stored(g, "b", merged_into="c")
    stored(g, "a", [A("a1")], merged_into="b")
    assert g.resolve([A("a1")], at=at(days=1)) == "c"  # nothing new: answered at once
    # with the survivor's own identifier there is one profile, not two to merge
    assert g.resolve([U("u1"), A("a1"), D("d1")], at=at(days=1)) == "c"
    assert g.merges == [] and owner(g, D("d1")) == "c"


# -- limits per identifier type and priorities --------------------------------------------------------------


def test_a_second_user_id_never_joins_a_profile() -> None:
    # the shared store tablet: Bob's login on Ann's device makes Bob a profile of his own
    g = new_graph()
    ann = g.resolve([U("ann"), A("t1"), D("tablet")], at=at())
    bob = g.resolve([U("bob"), D("tablet"), A("t1")], at=at(minutes=1))
    assert bob != ann and g.merges == []
    assert owner(g, D("tablet")) == owner(g, A("t1")) == ann
    assert g.profiles[bob].idents == {"user_id": {"bob": at(minutes=1)}}


def test_a_limit_is_reached_but_not_passed() -> None:
    g = new_graph(identity({"email": IdentityRule(limit=2, priority=3)}))
    stored(g, "p", [U("u1"), E("e1@x.io")])
    assert g.resolve([U("u1"), E("e2@x.io")], at=at(days=1)) == "p"  # the second email: at the limit
    assert owner(g, E("e2@x.io")) == "p"
    assert g.resolve([U("u1"), E("e3@x.io")], at=at(days=2)) == "p"  # a third: dropped
    assert owner(g, E("e3@x.io")) is None
    assert set(g.profiles["p"].idents["email"]) == {"e1@x.io", "e2@x.io"}


def test_a_new_profile_keeps_no_more_values_of_a_type_than_its_limit() -> None:
    g = new_graph(identity({"email": IdentityRule(limit=1, priority=3)}))
    cid = g.resolve([U("u1"), E("e1@x.io"), E("e2@x.io")], at=at())
    assert g.profiles[cid].idents == {"user_id": {"u1": at()}, "email": {"e1@x.io": at()}}


def test_a_merge_that_would_pass_a_limit_does_not_happen() -> None:
    g = new_graph(identity({"email": IdentityRule(limit=1, priority=3)}))
    stored(g, "ann", [U("ann"), E("ann@x.io")], created=T0)
    stored(g, "bob", [A("a-bob"), E("bob@x.io")], created=at(days=1))
    # the message's own identifiers are fine; the two emails the profiles already hold are not
    assert g.resolve([U("ann"), A("a-bob")], at=at(days=2)) == "ann"
    assert g.merges == [] and g.profiles["bob"].merged_into is None
    assert owner(g, A("a-bob")) == "bob"


def test_the_limit_counts_only_values_linked_within_the_window() -> None:
    rule = IdentityRule(limit=2, priority=9, window_days=7)
    g = new_graph(identity({"anonymous_id": rule}))
    stored(g, "p", [U("u1")])
    g.add_identity("anonymous_id", "old", "p", at(days=0))  # outside the window of a message on day 10
    g.add_identity("anonymous_id", "edge", "p", at(days=3))  # exactly 7 days before day 10: inside
    assert g.resolve([U("u1"), A("new1")], at=at(days=10)) == "p"  # edge + new1 = 2: at the limit
    assert g.resolve([U("u1"), A("new2")], at=at(days=10)) == "p"
    assert owner(g, A("new1")) == "p" and owner(g, A("new2")) is None
    # a week later only new1 counts
    g.resolve([U("u1"), A("new3")], at=at(days=16))
    assert owner(g, A("new3")) == "p"


def test_without_a_window_every_value_ever_linked_counts() -> None:
    g = new_graph(identity({"device_id": IdentityRule(limit=1, priority=8)}))
    stored(g, "p", [U("u1"), D("d-2019")], linked=T0 - timedelta(days=2000))
    g.resolve([U("u1"), D("d-new")], at=at())
    assert owner(g, D("d-new")) is None


def test_the_window_applies_to_merges_too() -> None:
    rule = IdentityRule(limit=1, priority=9, window_days=7)
    g = new_graph(identity({"anonymous_id": rule}))
    stored(g, "ann", [U("ann"), A("a-ann")], created=T0, linked=T0)
    stored(g, "card", [("loyalty_card", "LC1"), A("a-pos")], created=at(days=1), linked=at(days=1))
    assert g.resolve([U("ann"), ("loyalty_card", "LC1")], at=at(days=3)) == "ann"  # 2 anonymous ids this week
    assert g.merges == []
    assert g.resolve([U("ann"), ("loyalty_card", "LC1")], at=at(days=30)) == "ann"  # both long ago
    assert g.profiles["card"].merged_into == "ann"


def test_the_lowest_priority_identifier_is_dropped_first() -> None:
    # the graph drops from the end of the message's identifiers (the extractor sorts them best first)
    g = new_graph()
    stored(g, "ann", [U("ann")], created=T0)
    stored(g, "kiosk", [A("k1")], created=at(days=1))
    stored(g, "bob", [U("bob"), E("bob@x.io")], created=at(days=2))
    cid = g.resolve([U("ann"), E("bob@x.io"), A("k1")], at=at(days=3))
    # with bob@x.io the message would hold two user ids: k1 goes first (no help), then the email
    assert cid == "ann"
    assert owner(g, E("bob@x.io")) == "bob" and owner(g, A("k1")) == "kiosk"
    assert g.merges == []


def test_the_first_identifier_is_always_kept() -> None:
    g = new_graph(identity({"email": IdentityRule(limit=1, priority=3)}))
    stored(g, "p", [E("e1@x.io")])
    cid = g.resolve([E("e2@x.io"), E("e1@x.io")], at=at())
    assert cid != "p" and owner(g, E("e2@x.io")) == cid


def _extractor_and_graph(s: IdentitySettings) -> tuple[Extractor, Graph]:
    return Extractor(s, "US"), new_graph(s)


def test_priorities_decide_which_identifier_is_dropped() -> None:
    # Ann logged in on a kiosk; then Bob logs in there, giving Ann's email. Two user ids cannot share a profile,
    # so something goes: by default the kiosk's anonymous id before the email; swapped, the email first.
    def run(s: IdentitySettings) -> Graph:
        ex, g = _extractor_and_graph(s)
        g.resolve(ex.extract("ann", None, None, {"email": "ann@x.io"}, None), at=at())
        g.resolve(ex.extract("bob", "kiosk-1", None, {"email": "ann@x.io"}, None), at=at(minutes=1))
        return g

    default = run(IdentitySettings())
    bob = owner(default, U("bob"))
    assert owner(default, A("kiosk-1")) is None  # dropped with the email
    assert default.profiles[bob].idents == {"user_id": {"bob": at(minutes=1)}}

    swapped = run(identity({"email": IdentityRule(limit=5, priority=10)}))
    bob = owner(swapped, U("bob"))
    assert owner(swapped, A("kiosk-1")) == bob  # only the email was dropped
    assert owner(swapped, E("ann@x.io")) == owner(swapped, U("ann")) != bob


def test_blocked_values_never_reach_the_graph() -> None:
    ex, g = _extractor_and_graph(IdentitySettings(blocked_values=["guest", "TEST-DEVICE"]))
    one = g.resolve(ex.extract("u1", "guest", None, None, {"device": {"id": "test-device"}}), at=at())
    two = g.resolve(ex.extract("u2", "guest", None, None, {"device": {"id": "00:00:00:00:00:00"}}), at=at())
    assert one != two and g.merges == []
    assert set(g.owner) == {U("u1"), U("u2")}
    assert g.resolve(ex.extract(None, "Guest", None, None, None), at=at()) is None


# -- when limits were lowered --------------------------------------------------------------------------------


def lowered() -> Graph:
    """A profile with three emails, from before the email limit was lowered to one."""
    g = new_graph(identity({"email": IdentityRule(limit=1, priority=3)}))
    stored(g, "p", [U("u1"), E("e1@x.io"), E("e2@x.io"), E("e3@x.io")], created=T0)
    return g


def test_a_profile_over_a_lowered_limit_keeps_working_with_what_it_has() -> None:
    g = lowered()
    assert g.resolve([U("u1"), E("e2@x.io")], at=at(days=1)) == "p"
    # through the full path too (an alias is never answered at once), still linking identifiers of other types
    assert g.resolve([E("e3@x.io"), ("previous_id", "a1"), D("d1")], at=at(days=1)) == "p"
    assert owner(g, A("a1")) == owner(g, D("d1")) == "p"


def test_a_profile_over_a_lowered_limit_gains_no_more_values() -> None:
    g = lowered()
    g.resolve([U("u1"), E("e4@x.io")], at=at(days=1))
    assert owner(g, E("e4@x.io")) is None
    assert len(g.profiles["p"].idents["email"]) == 3


def test_a_profile_over_a_lowered_limit_may_merge_with_one_that_adds_nothing_of_that_type() -> None:
    g = lowered()
    stored(g, "visitor", [A("a1")], created=at(days=1))
    assert g.resolve([U("u1"), A("a1")], at=at(days=2)) == "p"
    assert g.profiles["visitor"].merged_into == "p"


def test_a_profile_over_a_lowered_limit_refuses_a_merge_that_adds_values_of_that_type() -> None:
    g = lowered()
    stored(g, "other", [A("a1"), E("e9@x.io")], created=at(days=1))
    g.resolve([U("u1"), A("a1")], at=at(days=2))
    assert g.merges == [] and owner(g, A("a1")) == "other"


# -- the merge cap ---------------------------------------------------------------------------------------------


def test_merges_stop_at_the_cap() -> None:
    g = new_graph(IdentitySettings(max_merges_per_profile=2))
    stored(g, "p", [U("u1")], created=T0, merge_count=1)
    stored(g, "q", [A("a1")], created=at(days=1))
    stored(g, "r", [D("d1")], created=at(days=2))
    assert g.resolve([U("u1"), A("a1")], at=at(days=3)) == "p"  # the second merge: at the cap
    assert g.profiles["p"].merge_count == 2
    assert g.resolve([U("u1"), D("d1")], at=at(days=3)) == "p"  # a third: the device id is dropped
    assert g.profiles["r"].merged_into is None and owner(g, D("d1")) == "r"


def test_the_cap_counts_the_merges_of_every_profile_involved() -> None:
    g = new_graph(IdentitySettings(max_merges_per_profile=2))
    stored(g, "p", [U("u1")], created=T0)
    stored(g, "q", [A("a1")], created=at(days=1), merge_count=2)
    g.resolve([U("u1"), A("a1")], at=at(days=3))
    assert g.merges == []
    three = new_graph(IdentitySettings(max_merges_per_profile=1))
    for i, ident in enumerate((U("u1"), A("a1"), D("d1"))):
        stored(three, f"p{i}", [ident], created=at(days=i))
    three.resolve([U("u1"), A("a1"), D("d1")], at=at(days=3))  # two merges at once: one too many
    assert [(m.merged_id, m.survivor_id) for m in three.merges] == [("p1", "p0")]


# -- traits and consent ----------------------------------------------------------------------------------------


def test_traits_latest_event_wins_and_first_seen_is_kept() -> None:
    g = new_graph()
    stored(g, "p")
    g.apply_traits("p", {"tier": "silver"}, at(days=2))
    g.apply_traits("p", {"tier": "gold"}, at(days=5))
    g.apply_traits("p", {"tier": "bronze"}, at(days=1))  # arrives late: older than what we have
    p = g.profiles["p"]
    assert p.traits == {"tier": "gold"}
    assert p.trait_meta == {"tier": [stamp(at(days=1)), stamp(at(days=5))]}
    g.apply_traits("p", {"tier": "gold"}, at(days=6))  # the same value, seen again later
    assert p.trait_meta["tier"] == [stamp(at(days=1)), stamp(at(days=6))]


def test_traits_of_the_same_moment_take_the_later_message() -> None:
    g = new_graph()
    stored(g, "p")
    g.apply_traits("p", {"tier": "silver"}, at())
    g.apply_traits("p", {"tier": "gold"}, at())
    assert g.profiles["p"].traits == {"tier": "gold"}


def test_only_real_trait_changes_mark_the_profile_for_writing() -> None:
    g = new_graph()
    stored(g, "p")
    g.apply_traits("p", {"tier": "gold"}, at(days=2))
    g.apply_traits("p", {"tier": "gold"}, at(days=3))
    assert "p" in g.changed
    for traits, when in (({"tier": "gold"}, at(days=3)),  # repeated
                         ({"tier": "silver"}, at(days=2, minutes=1))):  # between first and last seen
        g.changed.clear()
        g.apply_traits("p", traits, when)
        assert g.changed == {}, (traits, when)
    for traits, when in (({"tier": "gold"}, at(days=1)),  # earlier first-seen
                         ({"tier": "gold"}, at(days=4)),  # later last-seen
                         ({"tier": "silver"}, at(days=4)),  # new value, same moment
                         ({"city": "Lyon"}, at(days=4))):  # new trait
        g.changed.clear()
        g.apply_traits("p", traits, when)
        assert "p" in g.changed, (traits, when)


def test_consent_latest_statement_wins_with_its_time_and_source() -> None:
    g = new_graph()
    stored(g, "p")
    g.apply_consent("p", {"email": True, "sms": True}, at(days=2), source="Web", channel="web")
    g.apply_consent("p", {"email": False}, at(days=1), source="Store", channel="store")  # older: ignored
    g.apply_consent("p", {"sms": False}, at(days=2), source="App", channel="app")  # same moment: later wins
    g.apply_consent("p", {"push": "yes", "post": None}, at(days=3), source="App", channel="app")  # not booleans
    assert g.profiles["p"].consent == {
        "email": {"granted": True, "at": stamp(at(days=2)), "source": "Web", "channel": "web"},
        "sms": {"granted": False, "at": stamp(at(days=2)), "source": "App", "channel": "app"}}


def test_a_repeated_consent_statement_changes_nothing() -> None:
    g = new_graph()
    stored(g, "p")
    g.apply_consent("p", {"email": True}, at(), source="Web", channel="web")
    assert "p" in g.changed
    g.changed.clear()
    g.apply_consent("p", {"email": True}, at(), source="Web", channel="web")
    g.apply_consent("p", {"email": False}, at(days=-1), source="Web", channel="web")
    assert g.changed == {}


_statements = st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["gold", "silver", "bronze"])), min_size=1,
                       max_size=8)


def _applied(g: Graph, pid: str, statements: list[tuple[int, str]]) -> Profile:
    for day, value in statements:
        g.apply_traits(pid, {"tier": value}, at(days=day))
    return g.profiles[pid]


def _latest(statements: list[tuple[int, str]]) -> str:
    """The value of the latest event; of those at the same moment, the one applied last."""
    last = max(day for day, _ in statements)
    return [value for day, value in statements if day == last][-1]


@settings(max_examples=100, deadline=None)
@given(_statements, _statements)
def test_traits_in_any_order_keep_the_latest_value_and_the_first_and_last_seen(
        mine: list[tuple[int, str]], theirs: list[tuple[int, str]]) -> None:
    g = new_graph()
    stored(g, "s")
    stored(g, "l")
    survivor, loser = _applied(g, "s", mine), _applied(g, "l", theirs)
    for p, statements in ((survivor, mine), (loser, theirs)):
        days = [day for day, _ in statements]
        assert p.traits["tier"] == _latest(statements)
        assert p.trait_meta["tier"] == [stamp(at(days=min(days))), stamp(at(days=max(days)))]
    merge_traits(survivor, loser)
    days = [day for day, _ in mine + theirs]
    assert survivor.trait_meta["tier"] == [stamp(at(days=min(days))), stamp(at(days=max(days)))]
    newer = max(d for d, _ in theirs) > max(d for d, _ in mine)  # on equal times the survivor keeps its own
    assert survivor.traits["tier"] == _latest(theirs if newer else mine)


# -- invariants over random histories --------------------------------------------------------------------------

_TYPES = ("user_id", "email", "device_id", "anonymous_id")
_PRIORITY = {"user_id": 1, "previous_id": 1, "email": 3, "device_id": 8, "anonymous_id": 9}

# small limits and a small cap, so that refusals and merges (of merged profiles too) happen often
_settings = st.builds(
    lambda email, device, anonymous, window, cap: IdentitySettings(
        rules={"user_id": IdentityRule(limit=1, priority=1), "email": IdentityRule(limit=email, priority=3),
               "device_id": IdentityRule(limit=device, priority=8),
               "anonymous_id": IdentityRule(limit=anonymous, priority=9, window_days=window)},
        max_merges_per_profile=cap, blocked_values=[]),
    st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.none() | st.integers(1, 3), st.integers(0, 4))
# few values and few user ids (one per profile): profiles meet often, so merges of merged profiles happen too
_ident = st.tuples(st.sampled_from(["anonymous_id", "email", "device_id", "anonymous_id", "email", "device_id",
                                    "anonymous_id", "previous_id", "user_id"]), st.sampled_from("abcd"))
_message = st.tuples(
    # best priority first, as the extractor hands them over
    st.lists(_ident, min_size=1, max_size=3, unique=True).map(lambda ids: sorted(ids, key=lambda i: _PRIORITY[i[0]])),
    st.integers(min_value=0, max_value=10 * 24),  # hours after T0, in any order
)


def _survivor(g: Graph, pid: str) -> str:
    while g.profiles[pid].merged_into is not None:
        pid = g.profiles[pid].merged_into
    return pid


def _windowed(s: IdentitySettings, p: Profile, id_type: str, when: datetime) -> int:
    """Values of a type the limit counts at ``when`` (all of them without a window)."""
    window = s.rule(id_type).window_days
    values = p.idents.get(id_type, {})
    if window is None:
        return len(values)
    return sum(1 for linked in values.values() if linked >= when - timedelta(days=window))


@settings(max_examples=150, deadline=None)
@given(_settings, st.lists(_message, min_size=10, max_size=40))
def test_random_histories_keep_the_graph_whole(s: IdentitySettings, messages: list[tuple[list[Identifier], int]]
                                               ) -> None:
    g = Graph(s, NOW)
    for idents, hours in messages:
        when = T0 + timedelta(hours=hours)
        live_before = [pid for pid, p in g.profiles.items() if p.merged_into is None]
        counts_before = {pid: {t: _windowed(s, g.profiles[pid], t, when) for t in _TYPES} for pid in live_before}
        first = idents[0]
        if first[0] == "previous_id":  # an alias names a known user id, otherwise an anonymous id
            first = U(first[1]) if U(first[1]) in g.owner else A(first[1])
        cid = g.resolve(idents, at=when)

        # the answer is a live profile, holding the message's best identifier
        assert cid is not None and g.profiles[cid].merged_into is None
        assert g.owner[first] == cid

        # every identifier belongs to exactly one live profile, which lists it
        held: dict[Identifier, str] = {}
        for pid, p in g.profiles.items():
            if p.merged_into is not None:
                assert p.idents == {}
                continue
            for t, values in p.idents.items():
                for v in values:
                    assert (t, v) not in held
                    held[(t, v)] = pid
        assert held == g.owner

        # merged profiles lead to live survivors older than they are; each merge counted once, within the cap
        absorbed: dict[str, int] = {}
        for pid, p in g.profiles.items():
            survivor = g.profiles[_survivor(g, pid)]
            assert g.survivor_of(pid) == survivor.id
            assert survivor.merged_into is None
            assert (survivor.created_at, survivor.id) <= (p.created_at, p.id)
            if survivor is not p:
                absorbed[survivor.id] = absorbed.get(survivor.id, 0) + 1
        for pid, p in g.profiles.items():
            if p.merged_into is None:
                assert p.merge_count == absorbed.get(pid, 0) <= s.max_merges_per_profile

        # no limit is passed that none of the profiles now in the answer had passed before
        joined = [pid for pid in live_before if _survivor(g, pid) == cid]
        for t in _TYPES:
            before = max((counts_before[pid][t] for pid in joined), default=0)
            assert _windowed(s, g.profiles[cid], t, when) <= max(s.rule(t).limit, before), (t, idents)
