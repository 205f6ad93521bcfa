"""Identity resolution over an in-memory slice of the identity graph (no database in here).

For each message, in order:

1. Its identifiers (best priority first) point at zero or more existing profiles.
2. If linking them would break a guard rail — more values of a type on one profile than the type's
   limit (counting only values linked within the type's window, if it has one), or more merges
   than ``max_merges_per_profile`` — the identifier with the lowest priority is dropped from the
   message and step 1 is tried again. This is what keeps a shared family tablet or a store's
   guest device from gluing strangers together.
3. No profile: a new one. One: that one. Several: they merge into the oldest (earliest created,
   then smallest id), which keeps its id; the others point at it (``merged_into``) and the merge
   is logged with the identifiers that caused it.
4. The message's new identifiers are linked to the profile; its traits and consent are applied.

Traits rule: latest wins by event time (a late-arriving older event does not overwrite a newer
value); each trait keeps when it was first seen. Merges apply the same rule trait by trait.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from omnijourney.config import IdentitySettings
from omnijourney.core.ids import new_ids
from omnijourney.customers.identifiers import Identifier


def stamp(dt: datetime) -> str:
    """Fixed-width UTC text, so stamps compare correctly as strings."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(slots=True)
class Profile:
    id: str
    created_at: datetime
    traits: dict[str, Any] = field(default_factory=dict)
    trait_meta: dict[str, list[str]] = field(default_factory=dict)
    consent: dict[str, Any] = field(default_factory=dict)
    merge_count: int = 0
    merged_into: str | None = None
    # identifier type -> {value: linked-at}
    idents: dict[str, dict[str, datetime]] = field(default_factory=dict)
    new: bool = False
    born: int = -1  # the graph's epoch when created here; -1: read from the database


@dataclass(slots=True)
class MergeRecord:
    survivor_id: str
    merged_id: str
    at: datetime
    message_id: str | None
    source_id: str | None
    identifiers: list[list[str]]
    reason: str


@dataclass(slots=True)
class NewLink:
    type: str
    value: str
    customer_id: str
    first_seen: datetime
    source_id: str | None


class Graph:
    """A slice of the identity graph: the profiles owning a batch's identifiers, and all of theirs.

    A graph may live across batches (bulk imports keep one while they hold the identity lock): it is
    then the authority for every profile it holds, ``looked_up`` remembers which identifiers the
    database was already asked about, and ``changed``, ``links`` and ``merges`` hold what changed since
    they were last taken (``customers.resolution.take_changes``).
    """

    def __init__(self, settings: IdentitySettings, now: datetime) -> None:
        self.settings = settings
        self.now = now
        self.owner: dict[Identifier, str] = {}
        self.profiles: dict[str, Profile] = {}
        self.links: list[NewLink] = []
        self.merges: list[MergeRecord] = []
        self.merged: list[str] = []  # profiles merged since the changes were last taken
        self.known: set[str] = set()  # profiles that gained a known identifier since then
        self.looked_up: set[Identifier] = set()
        self.changed: dict[str, Profile] = {}  # profiles to write back (new or changed)
        self._rules: dict[str, tuple[int, timedelta | None]] = {}
        self._ids: Iterator[str] = iter(())
        self._block = 1
        # bumped each time merges are taken: a profile born in the current epoch has nothing written yet that
        # a merge would have to re-point
        self.epoch = 0

    def _rule(self, id_type: str) -> tuple[int, timedelta | None]:
        """(limit, window) of a type; pydantic attribute access is too slow for the per-message path."""
        rule = self._rules.get(id_type)
        if rule is None:
            r = self.settings.rule(id_type)
            rule = self._rules[id_type] = (r.limit, timedelta(days=r.window_days) if r.window_days else None)
        return rule

    # -- loading -------------------------------------------------------------------------------
    def add_profile(self, profile: Profile) -> bool:
        """Add a profile read from the database; False (and ignored) when the graph already holds it."""
        if profile.id in self.profiles:
            return False
        self.profiles[profile.id] = profile
        return True

    def add_identity(self, id_type: str, value: str, customer_id: str, first_seen: datetime) -> None:
        self.owner[(id_type, value)] = customer_id
        self.profiles[customer_id].idents.setdefault(id_type, {})[value] = first_seen

    def missing(self, wanted: set[Identifier]) -> set[Identifier]:
        """Those of ``wanted`` the database has not been asked about yet."""
        return {i for i in wanted if i not in self.looked_up and i not in self.owner}

    # -- resolving -----------------------------------------------------------------------------
    def survivor_of(self, customer_id: str) -> str:
        p = self.profiles[customer_id]
        while p.merged_into is not None:
            p = self.profiles[p.merged_into]
        return p.id

    def resolve(self, idents: list[Identifier], *, at: datetime, message_id: str | None = None,
                source_id: str | None = None) -> str | None:
        """The profile this message belongs to, linking, creating and merging as the rules allow."""
        if not idents:
            return None
        owner = self.owner
        if idents[0][0] != "previous_id":  # fast path: a known visitor, nothing new
            first = owner.get(idents[0])
            if first is not None:
                for ident in idents:
                    if owner.get(ident) != first:
                        break
                else:
                    # a merge re-points the merged profile's identifiers, so owners are normally survivors
                    return first if self.profiles[first].merged_into is None else self.survivor_of(first)
        if any(t == "previous_id" for t, _ in idents):
            # an alias's previous id is often the message's anonymous id as well: count and log it once
            idents = list(dict.fromkeys(self._concrete(i) for i in idents))
        while True:
            owners = self._owners(idents)
            if len(idents) == 1 or not self._breaks_rules(idents, owners, at):
                break
            idents = idents[:-1]  # drop the lowest-priority identifier and try again
        if not owners:
            cid = self._create(at)
        elif len(owners) == 1:
            cid = owners[0]
        else:
            cid = self._merge(owners, idents, at=at, message_id=message_id, source_id=source_id)
        profile = self.profiles[cid]
        for ident in idents:
            if ident not in self.owner:
                self.owner[ident] = cid
                profile.idents.setdefault(ident[0], {})[ident[1]] = at
                self.links.append(NewLink(ident[0], ident[1], cid, at, source_id))
        return cid

    def _concrete(self, ident: Identifier) -> Identifier:
        if ident[0] != "previous_id":
            return ident
        as_user = ("user_id", ident[1])
        return as_user if as_user in self.owner else ("anonymous_id", ident[1])

    def _owners(self, idents: list[Identifier]) -> list[str]:
        owners: list[str] = []
        for ident in idents:
            cid = self.owner.get(ident)
            if cid is not None:
                cid = self.survivor_of(cid)
                if cid not in owners:
                    owners.append(cid)
        return owners

    def _breaks_rules(self, idents: list[Identifier], owners: list[str], at: datetime) -> bool:
        if not owners and len({t for t, _ in idents}) == len(idents):
            return False  # a new profile with one value per type: every limit is at least 1
        if len(owners) > 1:
            merges = sum(self.profiles[o].merge_count for o in owners) + len(owners) - 1
            if merges > self.settings.max_merges_per_profile:
                return True
        new_by_type: dict[str, int] = {}
        for ident in idents:
            if ident not in self.owner:
                new_by_type[ident[0]] = new_by_type.get(ident[0], 0) + 1
        types = set(new_by_type)
        if len(owners) > 1:
            for o in owners:
                types.update(self.profiles[o].idents)
        for id_type in types:
            limit, window = self._rule(id_type)
            since = at - window if window else None
            counts = [self._count(self.profiles[o], id_type, since) for o in owners]
            after = sum(counts) + new_by_type.get(id_type, 0)
            # only a change that makes things worse is refused (limits may have been lowered since)
            if after > limit and after > max(counts, default=0):
                return True
        return False

    @staticmethod
    def _count(profile: Profile, id_type: str, since: datetime | None) -> int:
        values = profile.idents.get(id_type)
        if not values:
            return 0
        if since is None:
            return len(values)
        return sum(1 for linked in values.values() if linked >= since)

    def _create(self, at: datetime) -> str:
        try:
            cid = next(self._ids)
        except StopIteration:  # ids come in growing blocks: bulk imports create profiles by the hundred thousand
            self._block = min(self._block * 4, 1024)
            self._ids = iter(new_ids(self._block))
            cid = next(self._ids)
        profile = Profile(id=cid, created_at=min(at, self.now), new=True, born=self.epoch)
        self.profiles[profile.id] = self.changed[profile.id] = profile
        return profile.id

    def _merge(self, owners: list[str], idents: list[Identifier], *, at: datetime, message_id: str | None,
               source_id: str | None) -> str:
        ranked = sorted((self.profiles[o] for o in owners), key=lambda p: (p.created_at, p.id))
        survivor = ranked[0]
        shared = [list(i) for i in idents if i in self.owner]
        for loser in ranked[1:]:
            for id_type, values in loser.idents.items():
                mine = survivor.idents.setdefault(id_type, {})
                for value, linked in values.items():
                    mine[value] = linked
                    self.owner[(id_type, value)] = survivor.id
            loser.idents = {}
            merge_traits(survivor, loser)
            survivor.merge_count += loser.merge_count + 1
            loser.merged_into = survivor.id
            self.changed[loser.id] = loser
            self.changed[survivor.id] = survivor
            self.merges.append(MergeRecord(survivor.id, loser.id, at, message_id, source_id, shared,
                                           "identifiers of one message belonged to both profiles"))
        return survivor.id

    # -- traits and consent --------------------------------------------------------------------
    def apply_traits(self, customer_id: str, traits: dict[str, Any], at: datetime) -> None:
        """Set traits seen at ``at``: a value replaces the current one unless that one is newer."""
        profile = self.profiles[customer_id]
        ts = stamp(at)
        changed = False
        for key, value in traits.items():
            meta = profile.trait_meta.get(key)
            if meta is None:
                profile.traits[key] = value
                profile.trait_meta[key] = [ts, ts]
                changed = True
            elif ts >= meta[1] and (profile.traits.get(key) != value or ts > meta[1]):
                if profile.traits.get(key) != value:
                    profile.traits[key] = value
                    changed = True
                if ts > meta[1]:
                    meta[1] = ts
                    changed = True
            elif ts < meta[0]:  # an older event: the value stays, first-seen moves back (first <= last always)
                meta[0] = ts
                changed = True
        if changed:
            self.changed[customer_id] = profile

    def apply_consent(self, customer_id: str, preferences: dict[str, Any], at: datetime, *,
                      source: str | None, channel: str) -> None:
        """Record consent per category with its time and source; the latest statement wins."""
        profile = self.profiles[customer_id]
        ts = stamp(at)
        for category, granted in preferences.items():
            if not isinstance(granted, bool):
                continue
            current = profile.consent.get(category)
            if current is None or ts >= current["at"]:
                entry = {"granted": granted, "at": ts, "source": source, "channel": channel}
                if current != entry:
                    profile.consent[category] = entry
                    self.changed[customer_id] = profile


def merge_traits(survivor: Profile, loser: Profile) -> None:
    """Latest value wins trait by trait; first-seen is the earliest of the two."""
    for key, value in loser.traits.items():
        lmeta = loser.trait_meta.get(key) or ["", ""]
        smeta = survivor.trait_meta.get(key)
        if smeta is None:
            survivor.traits[key] = value
            survivor.trait_meta[key] = list(lmeta)
            continue
        if lmeta[1] > smeta[1]:
            survivor.traits[key] = value
            smeta[1] = lmeta[1]
        if lmeta[0] and lmeta[0] < smeta[0]:
            smeta[0] = lmeta[0]
    for category, entry in loser.consent.items():
        current = survivor.consent.get(category)
        if current is None or entry["at"] > current["at"]:
            survivor.consent[category] = entry
