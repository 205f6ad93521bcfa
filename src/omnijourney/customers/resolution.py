"""Resolving a batch of messages to profiles: load the graph slice, resolve in memory, write back.

Everything is set-based: a few SELECTs to load the identities and profiles a batch touches, then
COPY/bulk writes. Callers hold the identity lock (see ``tracking.service.ingest``), so the slice
cannot change underneath.

The steps are separate so that a bulk import can overlap them: :func:`fetch_graph` and
:func:`save_changes` only talk to the database, :func:`absorb`, :func:`resolve_in` and
:func:`take_changes` only compute (``take_changes`` encodes a snapshot, so the graph may go on
changing while the snapshot is written).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import orjson
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from omnijourney.config import IdentitySettings
from omnijourney.core.time import utcnow
from omnijourney.core.types import UTCDateTime
from omnijourney.customers.follow import enqueue_known, enqueue_merges
from omnijourney.customers.graph import Graph, Profile
from omnijourney.customers.hooks import KNOWN_TYPES
from omnijourney.customers.identifiers import Extractor, Identifier
from omnijourney.customers.models import Customer, Identity, Merge
from omnijourney.db import (
    EncodedRows,
    copy_escape,
    encode,
    encode_update,
    insert_encoded,
    remap,
    select_pairs,
    sqlite_time,
    update_encoded,
)
from omnijourney.tracking.messages import Message
from omnijourney.tracking.models import Event

T = TypeVar("T")
IDENTITY_LOCK = 7_100_001  # advisory lock key: whoever changes identities or profiles holds it
_CHUNK = 2000
_extractors: dict[int, Extractor] = {}


def chunks(items: Sequence[T], size: int = _CHUNK) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def extractor_for(settings: IdentitySettings) -> Extractor:
    ex = _extractors.get(id(settings))
    if ex is None or ex.settings is not settings:
        ex = _extractors[id(settings)] = Extractor(settings, settings.default_region)
    return ex


def message_identifiers(ex: Extractor, m: Message) -> list[Identifier]:
    return ex.extract(m.user_id, m.anonymous_id, m.previous_id, m.traits if m.type == "identify" else None,
                      m.context)


def wanted_identifiers(per_message: Iterable[list[Identifier]]) -> set[Identifier]:
    """Every identifier the messages name (an alias's previousId may be a user id or an anonymous id)."""
    wanted: set[Identifier] = set().union(*per_message)
    aliases = [i for i in wanted if i[0] == "previous_id"]
    for alias in aliases:
        wanted.discard(alias)
        wanted.add(("user_id", alias[1]))
        wanted.add(("anonymous_id", alias[1]))
    return wanted


@dataclass(slots=True)
class GraphRows:
    """What the database holds about some identifiers: every identity and row of the profiles owning them."""

    wanted: set[Identifier]
    identities: list[tuple[str, str, str, datetime]] = field(default_factory=list)
    profiles: list[Profile] = field(default_factory=list)


_PROFILE_COLUMNS = ("id", "created_at", "traits", "trait_meta", "consent", "merge_count", "merged_into")
# PostgreSQL: one probe of the primary key per id (LATERAL, OFFSET 0), whatever the statistics say; with stale
# ones an IN list became a scan of all customers
_PG_PROFILES = text(
    f"SELECT {', '.join('c.' + n for n in _PROFILE_COLUMNS)} FROM unnest(cast(:ids AS text[])) AS k(id) "
    "CROSS JOIN LATERAL (SELECT * FROM customers c WHERE c.id = k.id OFFSET 0) c"
).columns(*(Customer.__table__.c[n] for n in _PROFILE_COLUMNS))


def _profile_rows(session: Session, ids: list[str]) -> Iterator[Any]:
    """The profile columns of ``ids``, as result sets."""
    if session.get_bind().dialect.name == "postgresql":
        yield session.execute(_PG_PROFILES, {"ids": ids})
        return
    table = Customer.__table__
    for part in chunks(ids):
        yield session.execute(select(*(table.c[n] for n in _PROFILE_COLUMNS)).where(table.c.id.in_(part)))


def fetch_graph(session: Session, wanted: set[Identifier]) -> GraphRows:
    """Read the profiles owning ``wanted`` identifiers, with all their identifiers (database only)."""
    out = GraphRows(wanted)
    if not wanted:
        return out
    # one round trip: every identifier of every profile that owns one of ``wanted``; on PostgreSQL as
    # LATERAL joins kept apart by OFFSET 0, which can only probe the identities' key and customer index (an IN
    # or a flattened join could become a scan of identities when the planner misjudges the pairs or the table)
    if session.get_bind().dialect.name == "postgresql":
        sql = ("SELECT o.type, o.value, o.customer_id, o.first_seen FROM (SELECT DISTINCT i.customer_id FROM p "
               "CROSS JOIN LATERAL (SELECT i.customer_id FROM identities i WHERE i.type = p.a AND i.value = p.b "
               "OFFSET 0) i) c CROSS JOIN LATERAL (SELECT x.type, x.value, x.customer_id, x.first_seen "
               "FROM identities x WHERE x.customer_id = c.customer_id OFFSET 0) o")
    else:
        sql = ("SELECT o.type, o.value, o.customer_id, o.first_seen FROM identities o WHERE o.customer_id IN "
               "(SELECT i.customer_id FROM identities i JOIN p ON i.type = p.a AND i.value = p.b)")
    idents = select_pairs(session, sql, list(wanted))
    seen: set[str] = set()
    pending = {r[2] for r in idents}
    while pending:  # profiles, following merged_into pointers (normally none: identities move on merge)
        ids = list(pending)
        seen.update(ids)
        pending = set()
        for rows in _profile_rows(session, ids):
            for cid, created_at, traits, meta, consent, merge_count, merged_into in rows:
                out.profiles.append(Profile(id=cid, created_at=created_at, traits=traits, trait_meta=meta,
                                            consent=consent, merge_count=merge_count, merged_into=merged_into))
                if merged_into and merged_into not in seen:
                    pending.add(merged_into)
    to_time = UTCDateTime().process_result_value if session.get_bind().dialect.name == "sqlite" else None
    for t, v, cid, first_seen in idents:
        if to_time is not None and isinstance(first_seen, str):
            first_seen = to_time(datetime.fromisoformat(first_seen), None)
        out.identities.append((t, v, cid, first_seen))
    return out


def absorb(graph: Graph, rows: GraphRows) -> None:
    """Add what :func:`fetch_graph` read. Profiles the graph already holds keep the graph's state: it is
    newer than the database's while a long-lived graph's changes are still being written."""
    added = {p.id for p in rows.profiles if graph.add_profile(p)}
    for t, v, cid, first_seen in rows.identities:
        if cid in added:
            graph.add_identity(t, v, cid, first_seen)
    graph.looked_up |= rows.wanted


def load_graph(session: Session, settings: IdentitySettings, wanted: set[Identifier]) -> Graph:
    """A graph of the profiles owning ``wanted`` identifiers, with all their identifiers."""
    graph = Graph(settings, utcnow())
    absorb(graph, fetch_graph(session, wanted))
    return graph


def resolve_in(graph: Graph, messages: Sequence[Message], per_message: Sequence[list[Identifier]]) -> list[str | None]:
    """Resolve messages in memory, in order: the surviving profile id of each (None without identifiers)."""
    resolved: list[str | None] = []
    resolve = graph.resolve
    for m, idents in zip(messages, per_message, strict=True):
        cid = resolve(idents, at=m.timestamp, message_id=m.message_id, source_id=m.source_id)
        resolved.append(cid)
        ctx = m.context
        if cid is None or not (ctx or m.type == "identify"):
            continue  # most messages: a page or a click, nothing to learn about the person
        traits = _traits_of(m)
        if traits:
            graph.apply_traits(cid, traits, m.timestamp)
        consent = ctx.get("consent") if ctx else None
        prefs = consent.get("categoryPreferences") if isinstance(consent, dict) else None
        if isinstance(prefs, dict) and prefs:
            graph.apply_consent(cid, prefs, m.timestamp, source=m.source_name, channel=m.channel)
    survivor_of, profiles = graph.survivor_of, graph.profiles
    return [c if c is None or profiles[c].merged_into is None else survivor_of(c) for c in resolved]


def resolve_messages(session: Session, messages: Sequence[Message], per_message: Sequence[list[Identifier]],
                     settings: IdentitySettings) -> list[str | None]:
    """The surviving profile id of each message (None when it carries no usable identifier)."""
    graph = load_graph(session, settings, wanted_identifiers(per_message))
    resolved = resolve_in(graph, messages, per_message)
    save_changes(session, take_changes(graph, session.get_bind().dialect.name))
    return resolved


def _traits_of(m: Message) -> dict[str, Any]:
    ctx_traits = m.context.get("traits") if m.context else None
    traits: dict[str, Any] = dict(ctx_traits) if isinstance(ctx_traits, dict) else {}
    if m.type == "identify" and m.traits:
        traits.update(m.traits)
    return traits


@dataclass(slots=True)
class MergeChanges:
    """Merges since they were last taken: the log rows (encoded), and the merged profiles with rows to re-point
    (with their survivors)."""

    log: EncodedRows | None
    moved: dict[str, str]


def take_merges(graph: Graph, dialect: str) -> MergeChanges:
    """The merges since the last call. A bulk import writes them batch by batch (events written with a merged
    profile's id must follow it) and profiles once per transaction."""
    survivor_of, profiles = graph.survivor_of, graph.profiles
    merges, graph.merges = graph.merges, []
    epoch = graph.epoch
    graph.epoch += 1
    if not merges:
        return MergeChanges(None, {})
    log = encode(Merge.__table__, [
        {"survivor_id": m.survivor_id, "merged_id": m.merged_id, "at": m.at, "message_id": m.message_id,
         "source_id": m.source_id, "identifiers": m.identifiers, "reason": m.reason} for m in merges], dialect)
    # only profiles with rows written before (stored, or taken in an earlier batch) need re-pointing
    moved = {m.merged_id: survivor_of(m.merged_id) for m in merges if profiles[m.merged_id].born < epoch}
    graph.merged.extend(moved)
    return MergeChanges(log, moved)


def save_merges(session: Session, merges: MergeChanges) -> None:
    """Log merges and move the merged profiles' events to their survivors."""
    if merges.log is not None:
        insert_encoded(session, merges.log)
    remap(session, Event.__table__, "customer_id", merges.moved)


def take_links(graph: Graph, dialect: str) -> EncodedRows | None:
    """The identifiers linked since the last call, encoded (they never change; a later merge in the same
    transaction moves them with :func:`save_changes`)."""
    links, graph.links = graph.links, []
    if not links:
        return None
    survivor_of, profiles, known = graph.survivor_of, graph.profiles, graph.known
    names = ["type", "value", "customer_id", "first_seen", "source_id"]
    postgresql = dialect == "postgresql"
    esc, null = copy_escape, "\\N"
    stamp_of = datetime.isoformat if postgresql else sqlite_time
    rows: list[Any] = []
    last_at, last_stamp = None, ""
    for link in links:  # the hottest encoding of resolution, hence one plain loop
        owner = link.customer_id
        if profiles[owner].merged_into is not None:
            owner = survivor_of(owner)
        if link.type in KNOWN_TYPES:
            known.add(owner)
        if link.first_seen is not last_at:  # a message's links share its time
            last_at, last_stamp = link.first_seen, stamp_of(link.first_seen)
        if postgresql:
            rows.append(f"{esc(link.type)}\t{esc(link.value)}\t{owner}\t{last_stamp}\t{link.source_id or null}\n")
        else:
            rows.append((link.type, link.value, owner, last_stamp, link.source_id))
    return EncodedRows(Identity.__table__, names, "".join(rows) if postgresql else rows)


@dataclass(slots=True)
class Changes:
    """What resolution changed, encoded: a snapshot that stays valid while the graph changes on."""

    new_profiles: EncodedRows | None
    updated_profiles: EncodedRows | None
    links: EncodedRows | None  # not yet taken by :func:`take_links`
    merges: MergeChanges  # not yet taken by :func:`take_merges`
    moved: list[tuple[str, str]]  # profiles merged since the last take that had rows written, with their survivor
    known: dict[str, list[str]]  # profile -> its anonymous ids, for profiles that just became known


def take_new_profiles(graph: Graph, dialect: str, size: int) -> Iterator[EncodedRows]:
    """The profiles created since the last take, encoded ``size`` at a time (so that a bulk import can write
    one part while it encodes the next); :func:`take_changes` then takes the rest."""
    new = [p for p in graph.changed.values() if p.new]
    now = utcnow()
    for i in range(0, len(new), size):
        part = new[i:i + size]
        for p in part:
            p.new = False
            del graph.changed[p.id]
        yield _encode_profiles(graph, part, dialect, now, created=True)


def take_changes(graph: Graph, dialect: str) -> Changes:
    """Encode everything that changed since the last call and mark it taken."""
    now = utcnow()
    survivor_of = graph.survivor_of
    links = take_links(graph, dialect)
    merges = take_merges(graph, dialect)
    new_profiles = next(take_new_profiles(graph, dialect, max(1, len(graph.changed))), None)
    updates = list(graph.changed.values())  # what is left once the new ones are taken
    moved = [(loser, survivor_of(loser)) for loser in sorted(set(graph.merged))]
    known = {survivor_of(cid) for cid in graph.known}
    known.update(s for _, s in moved)
    changes = Changes(
        new_profiles=new_profiles,
        updated_profiles=_encode_profiles(graph, updates, dialect, now, created=False) if updates else None,
        links=links, merges=merges, moved=moved, known={},
    )
    for cid in sorted(known):
        anonymous = graph.profiles[cid].idents.get("anonymous_id")
        if anonymous:
            changes.known[cid] = list(anonymous)
    graph.changed = {}
    graph.merged = []
    graph.known = set()
    return changes


def _encode_profiles(graph: Graph, profiles: list[Profile], dialect: str, now: datetime, *,
                     created: bool) -> EncodedRows:
    """Customer rows, formatted directly (a bulk import writes a quarter of a million at a time)."""
    names = ["id", "traits", "trait_meta", "consent", "merge_count", "updated_at", "merged_into"]
    survivor_of = graph.survivor_of
    dumps = orjson.dumps
    if created:
        names.append("created_at")
    elif dialect == "postgresql":  # see db.update_encoded
        return encode_update(Customer.__table__, [
            {"id": p.id, "traits": p.traits, "trait_meta": p.trait_meta, "consent": p.consent,
             "merge_count": p.merge_count, "updated_at": now,
             "merged_into": survivor_of(p.id) if p.merged_into else None} for p in profiles], dialect)
    if dialect == "postgresql":
        esc, null, stamp_now = copy_escape, "\\N", now.isoformat()
        lines = []
        for p in profiles:
            line = (f"{p.id}\t{esc(dumps(p.traits).decode())}\t{esc(dumps(p.trait_meta).decode())}\t"
                    f"{esc(dumps(p.consent).decode())}\t{p.merge_count}\t{stamp_now}\t"
                    f"{survivor_of(p.id) if p.merged_into else null}")
            lines.append(f"{line}\t{p.created_at.isoformat()}\n" if created else f"{line}\n")
        return EncodedRows(Customer.__table__, names, "".join(lines))
    at = sqlite_time(now)
    rows = [(p.id, dumps(p.traits).decode(), dumps(p.trait_meta).decode(), dumps(p.consent).decode(), p.merge_count,
             at, survivor_of(p.id) if p.merged_into else None) for p in profiles]
    if created:
        rows = [(*r, sqlite_time(p.created_at)) for r, p in zip(rows, profiles, strict=True)]
    return EncodedRows(Customer.__table__, names, rows)


def save_changes(session: Session, changes: Changes) -> None:
    """Write a snapshot of :func:`take_changes`: profiles, links, merges, and the jobs by which other domains
    follow (``customers.follow``)."""
    if changes.new_profiles is not None:
        insert_encoded(session, changes.new_profiles)
    if changes.updated_profiles is not None:
        update_encoded(session, changes.updated_profiles, "id")
    if changes.links is not None:
        insert_encoded(session, changes.links)
    save_merges(session, changes.merges)
    if changes.moved:
        # identities and earlier merged profiles written before follow the survivor too (rows written just now
        # already name it); then other domains follow, once the survivor's row exists
        moved = dict(changes.moved)
        remap(session, Identity.__table__, "customer_id", moved)
        remap(session, Customer.__table__, "merged_into", moved)
        enqueue_merges(session, changes.moved)  # other domains follow in a job, outside the ingestion lock
    enqueue_known(session, changes.known)
