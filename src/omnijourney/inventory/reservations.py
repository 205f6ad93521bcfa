"""Reservations: units held for a checkout or an order, that every channel sees as gone, until sold or released.

A reservation made during checkout expires by itself: its expiry is a background job enqueued in the same
transaction, so the stock comes back at ``expires_at`` even if nobody reads the reservation again. An order
keeps its reservation (``hold``) until its goods leave (``consume``: a sale) or it is cancelled (``release``).

The hot path (a reservation) is one transaction of inserts followed by one guarded ``UPDATE`` per line in
(SKU, location) order, of a pool row or of the level (``inventory.pools``); the guard is the check, evaluated
under the row's lock, so when every channel reserves the last unit at once exactly one wins and the others get
``OutOfStock``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.orm import Session, make_transient_to_detached

from omnijourney import jobs, locks
from omnijourney.catalog.service import get_channel
from omnijourney.core.errors import Conflict, Invalid, NotFound
from omnijourney.core.ids import new_id
from omnijourney.core.time import utcnow
from omnijourney.inventory import pools
from omnijourney.inventory.models import Location, LocationFeed, Reservation, ReservationLine
from omnijourney.inventory.stock import (
    Change,
    apply,
    change_level,
    check_location,
    check_skus,
    check_units,
    write_ledger,
)

DEFAULT_TTL_S = 15 * 60  # a checkout holds its units this long
MAX_TTL_S = 30 * 24 * 3600
EXPIRE_JOB = "inventory.expire_reservation"


def rules(location: Location, channel_code: str) -> tuple[int, bool]:
    """(units kept free, whether safety stock is kept back) when ``channel_code`` takes from ``location``.

    A store's own till sells what is on its shelf; every other channel is promised only what lies above the
    location's safety stock and, at a store, above its online floor."""
    if location.channel_code == channel_code:
        return 0, False
    return (location.online_floor if location.type == "store" else 0), True


def check_feeds(session: Session, channel_code: str, location_codes: Sequence[str], field: str) -> None:
    """``Invalid`` naming ``field[i]`` for the first location that does not sell to the channel."""
    fed = set(session.scalars(select(LocationFeed.location_code).where(
        LocationFeed.channel_code == channel_code, LocationFeed.location_code.in_(list(location_codes)))))
    for i, code in enumerate(location_codes):
        location = session.get(Location, code)
        if code not in fed and (location is None or location.channel_code != channel_code):
            raise Invalid(f"location {code} does not sell to channel {channel_code}", field=f"{field}[{i}].location",
                          code="location_not_feeding")


def _wants(session: Session, channel_code: str, lines: Sequence[tuple[str, str, int]],
           field: str) -> tuple[list[tuple[str, str, int]], dict[str, Location]]:
    if not lines:
        raise Invalid("nothing to reserve", field=field)
    merged: dict[tuple[str, str], int] = {}
    # the checked locations are kept: the session holds objects weakly, and each later get would read them again
    places: dict[str, Location] = {}
    for i, (sku, location, quantity) in enumerate(lines):
        check_units(quantity, f"{field}[{i}].quantity")
        places[location] = check_location(session, location, field=f"{field}[{i}].location", sells=True)
        merged[(sku, location)] = merged.get((sku, location), 0) + quantity
    check_skus(session, [sku for sku, _, _ in lines], field=field)
    check_feeds(session, channel_code, [loc for _, loc, _ in lines], field)
    return [(sku, loc, q) for (sku, loc), q in merged.items()], places


def _checked_wants(lines: Sequence[tuple[str, str, int]], field: str) -> list[tuple[str, str, int]]:
    if not lines:
        raise Invalid("nothing to reserve", field=field)
    merged: dict[tuple[str, str], int] = {}
    for i, (sku, location, quantity) in enumerate(lines):
        check_units(quantity, f"{field}[{i}].quantity")
        merged[(sku, location)] = merged.get((sku, location), 0) + quantity
    return [(sku, loc, q) for (sku, loc), q in merged.items()]


_CHECKS = text(
    "SELECT l.code, l.active, l.type, l.channel_code, l.online_floor, "
    "EXISTS (SELECT 1 FROM location_feeds f WHERE f.location_code = l.code AND f.channel_code = :ch), "
    "(SELECT COUNT(*) FROM channels c WHERE c.code = :ch), "
    "(SELECT COUNT(*) FROM variants v WHERE v.sku IN :skus) "
    "FROM locations l WHERE l.code IN :locs").bindparams(bindparam("skus", expanding=True),
                                                         bindparam("locs", expanding=True))
# the same in psycopg's own style, inside the statement below
_PG_CHECKS = (
    "SELECT l.code, l.active, l.type, l.channel_code, l.online_floor, "
    "EXISTS (SELECT 1 FROM location_feeds f WHERE f.location_code = l.code AND f.channel_code = %(ch)s), "
    "(SELECT COUNT(*) FROM channels c WHERE c.code = %(ch)s), "
    "(SELECT COUNT(*) FROM variants v WHERE v.sku = ANY(%(items)s)) "
    "FROM locations l WHERE l.code = ANY(%(places)s)")


class _Place(NamedTuple):
    code: str
    active: bool
    type: str
    channel_code: str | None
    online_floor: int
    fed: bool
    channels: int
    skus: int


def _rules(session: Session, found: Sequence[Any], channel_code: str, lines: Sequence[tuple[str, str, int]],
           wants: list[tuple[str, str, int]], field: str) -> dict[str, tuple[int, bool]]:
    """Each location's rules from the one-query checks; when one fails, the checks run again one by one to name
    the field that is wrong (and raise)."""
    places = [_Place(*r) for r in found]
    skus = {s for s, _, _ in wants}
    if (len(places) == len({loc for _, loc, _ in wants}) and places[0].channels == 1 and places[0].skus == len(skus)
            and all(p.active and p.type not in ("transit", "quarantine") and (p.fed or p.channel_code == channel_code)
                    for p in places)):
        return {p.code: rules(p, channel_code) for p in places}  # type: ignore[arg-type]
    get_channel(session, code=channel_code, field="channel")
    _, checked = _wants(session, channel_code, lines, field)
    return {code: rules(loc, channel_code) for code, loc in checked.items()}


_RESERVATIONS = Reservation.__table__.insert()
_LINES = ReservationLine.__table__.insert()

# PostgreSQL with pools, one statement: the reservation, its lines, their ledger rows and the first line's take
# from a pool (``pools.TAKE``), answering whether the units were taken and, with the checks, a row per location
_PG_WRITES = (
    "WITH r AS (INSERT INTO reservations (id, status, channel_code, ref, expires_at, created_at, updated_at) "
    "VALUES (%(ref)s, 'active', %(ch)s, %(holds_for)s, %(expires)s, %(now)s, %(now)s)), "
    "w AS (SELECT * FROM unnest(%(skus)s::text[], %(locs)s::text[], %(qs)s::int[]) AS w(sku, loc, q)), "
    "l AS (INSERT INTO reservation_lines (reservation_id, sku, location_code, quantity, status) "
    "SELECT %(ref)s, w.sku, w.loc, w.q, 'active' FROM w), "
    "m AS (INSERT INTO stock_movements (sku, location_code, kind, on_hand_delta, reserved_delta, ref, channel_code, "
    "created_at) SELECT w.sku, w.loc, 'reservation', 0, w.q, %(ref)s, %(ch)s, %(now)s FROM w), "
    f"{pools.TAKE_CTES}, pm AS ({pools.TAKE_LEDGER} RETURNING 1) ")
_PG_WRITTEN = _PG_WRITES + "SELECT (SELECT COUNT(*) FROM pm)"
_PG_WRITTEN_CHECKED = (
    _PG_WRITES + "SELECT (SELECT COUNT(*) FROM pm), c.* FROM (SELECT 1) one LEFT JOIN (" + _PG_CHECKS + ") c ON true")


def _write_pooled(session: Session, row: dict[str, Any], wants: list[tuple[str, str, int]], *, check: bool,
                  now: datetime) -> tuple[list[Any] | None, bool]:
    """PostgreSQL with pools: the checks, the reservation, its lines, its ledger rows and the first line's take from
    a pool in one statement, and its expiry job, sent in one pipeline through the driver: one network round trip
    where SQLAlchemy would make seven (the hot path's cost is the client's CPU per statement and per round trip,
    not the database's work). Rows written before the checks are known go with the transaction when a check fails
    (the caller rolls it back). Returns the checks' rows (``None`` unless ``check``) and whether the first line's
    units came from a pool; the other lines follow one by one, in key order."""
    rid = row["id"]
    sku, loc, q = wants[0]
    params = pools.take_params(session, sku=sku, location=loc, quantity=q, ref=rid, now=now)
    params.update(ch=row["channel_code"], holds_for=row["ref"], expires=row["expires_at"],
                  skus=[w[0] for w in wants], locs=[w[1] for w in wants], qs=[w[2] for w in wants],
                  items=sorted({w[0] for w in wants}), places=sorted({w[1] for w in wants}))
    driver = session.connection().connection.driver_connection
    with driver.cursor() as jobs_cur, driver.cursor() as cur:
        with driver.pipeline():
            if row["expires_at"] is not None:
                jobs.enqueue_on(session, jobs_cur, EXPIRE_JOB, {"id": rid}, at=row["expires_at"],
                                unique_key=jobs.key(EXPIRE_JOB, rid))
            # the statement's plan is the same for every reservation, but PostgreSQL kept planning it anew (its
            # estimate for the arrays makes the generic plan look dearer): 0.85-0.95 -> 0.55-0.62 ms of the
            # database's CPU a reservation; only for this statement (the caller's may match partial indexes)
            jobs_cur.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            cur.execute(_PG_WRITTEN_CHECKED if check else _PG_WRITTEN, params)
            jobs_cur.execute("SET LOCAL plan_cache_mode TO DEFAULT")
        found = cur.fetchall()
    taken = found[0][0] == 1
    return ([r[1:] for r in found if r[1] is not None] if check else None), taken


def reserve(session: Session, *, channel_code: str, lines: Sequence[tuple[str, str, int]], ref: str | None = None,
            ttl_s: float | None = DEFAULT_TTL_S, field: str = "lines",
            checked: Mapping[str, tuple[int, bool]] | None = None) -> Reservation:
    """Hold (sku, location, quantity) ``lines`` for the channel, all or nothing, for ``ttl_s`` seconds (``None``:
    until released or consumed). Raises ``OutOfStock`` naming the line that could not be held; the caller's
    transaction must then roll back.

    ``checked``: each location's (units kept free, safety stock kept back) as :func:`rules` gives them, when the
    caller took the lines from this transaction's ``availability`` answer (checkout's sourcing), which lists only
    known SKUs at active locations that sell to the channel: those checks are not made again. The guarded update
    still decides whether the units are there.

    The hot path: the rows written first (reservation, lines, expiry job, ledger), then per line, in (SKU,
    location) order, units taken from one of the level's pool rows (``inventory.pools``), or else from the level
    itself by its guarded update, refilling a pool row while the level is locked anyway."""
    if ttl_s is not None and not 1 <= ttl_s <= MAX_TTL_S:
        raise Invalid(f"ttl_s must be between 1 and {MAX_TTL_S}", field="ttl_s")
    wants = sorted(_checked_wants(lines, field))
    kept = dict(checked) if checked is not None and all(loc in checked for _, loc, _ in lines) else None
    if kept is not None:
        get_channel(session, code=channel_code, field="channel")
    now = utcnow()
    expires = now + timedelta(seconds=ttl_s) if ttl_s is not None else None
    rid = new_id()
    row = {"id": rid, "status": "active", "channel_code": channel_code, "ref": ref, "expires_at": expires,
           "created_at": now, "updated_at": now}
    pooling = pools.slots(session) > 0
    if pooling:
        found, taken = _write_pooled(session, row, wants, check=kept is None, now=now)
        if kept is None:
            kept = _rules(session, found or [], channel_code, lines, wants, field)
    else:
        if kept is None:
            found = session.execute(_CHECKS, {"ch": channel_code, "skus": sorted({s for s, _, _ in wants}),
                                              "locs": sorted({loc for _, loc, _ in wants})}).all()
            kept = _rules(session, found, channel_code, lines, wants, field)
        session.execute(_RESERVATIONS, row)
        held = [{"reservation_id": rid, "sku": s, "location_code": loc, "quantity": q, "status": "active"}
                for s, loc, q in wants]
        session.execute(_LINES, held if len(held) > 1 else held[0])
        if expires is not None:
            jobs.enqueue(session, EXPIRE_JOB, {"id": rid}, at=expires, unique_key=jobs.key(EXPIRE_JOB, rid))
        taken = False
    index = {(s, loc): i for i, (s, loc, _) in enumerate(lines)}
    changes = [Change(sku, loc, "reservation", reserved=q, keep_free=kept[loc][0], use_safety=kept[loc][1], ref=rid,
                      channel=channel_code, field=f"{field}[{index[(sku, loc)]}].quantity") for sku, loc, q in wants]
    if not pooling:
        write_ledger(session, changes, now)
    # the row locks last, in key order: a hot row is held only for its update and the commit
    for i, c in enumerate(changes):
        if taken if i == 0 else pooling and pools.take(session, sku=c.sku, location=c.location, quantity=c.reserved,
                                                      ref=rid, now=now):
            continue
        change_level(session, c, now)
        if pooling:
            pools.refill(session, sku=c.sku, location=c.location, ref=rid, now=now)
    # the row as written, in the session without reading it back
    reservation = Reservation(**row)
    make_transient_to_detached(reservation)
    session.add(reservation)
    return reservation


def sell(session: Session, *, channel_code: str, lines: Sequence[tuple[str, str, int]], ref: str | None = None,
         field: str = "lines") -> None:
    """Units leave at once without a reservation first (a till's counter sale), under a reservation's rules."""
    get_channel(session, code=channel_code, field="channel")
    wants, places = _wants(session, channel_code, lines, field)
    index = {(s, loc): i for i, (s, loc, _) in enumerate(lines)}  # the refusal names the caller's line, not ours
    changes = []
    for sku, loc, q in wants:
        keep, safety = rules(places[loc], channel_code)
        changes.append(Change(sku, loc, "sale", on_hand=-q, keep_free=keep, use_safety=safety, ref=ref,
                              channel=channel_code, field=f"{field}[{index[(sku, loc)]}].quantity"))
    apply(session, changes)


def _locked(session: Session, reservation_id: str) -> tuple[Reservation, list[ReservationLine]]:
    reservation = locks.row(session, Reservation, reservation_id, field="reservation_id")
    lines = list(session.scalars(select(ReservationLine).where(ReservationLine.reservation_id == reservation_id)
                                 .order_by(ReservationLine.sku, ReservationLine.location_code)
                                 .execution_options(populate_existing=True)))
    return reservation, lines


def _settle(session: Session, reservation: Reservation, lines: list[ReservationLine], *, kind: str,
            location: str | None, ref: str | None) -> list[ReservationLine]:
    chosen = [ln for ln in lines if ln.status == "active" and (location is None or ln.location_code == location)]
    if not chosen:
        raise Conflict(f"reservation {reservation.id} holds nothing {'at ' + location if location else 'any more'}",
                       field="location" if location else "reservation_id", code="reservation_settled")
    now = utcnow()
    sold = kind == "sale"
    apply(session, [Change(ln.sku, ln.location_code, kind, on_hand=-ln.quantity if sold else 0,
                           reserved=-ln.quantity, ref=ref or reservation.id, channel=reservation.channel_code)
                    for ln in chosen], now=now)
    status = "consumed" if sold else "released"
    session.execute(update(ReservationLine).where(
        ReservationLine.reservation_id == reservation.id,
        ReservationLine.location_code.in_({ln.location_code for ln in chosen}),
        ReservationLine.status == "active").values(status=status).execution_options(synchronize_session=False))
    left = [ln for ln in lines if ln.status == "active" and ln not in chosen]
    if not left:
        reservation.status = "consumed" if any(ln.status == "consumed" for ln in lines) or sold else status
        jobs.cancel(session, [jobs.key(EXPIRE_JOB, reservation.id)])  # its expiry has nothing left to free
    reservation.updated_at = now
    session.flush()
    return chosen


def release(session: Session, *, reservation_id: str, location: str | None = None,
            status: str = "released") -> Reservation:
    """Give the held units back (all, or those at ``location``); ``Conflict`` if nothing is held any more."""
    reservation, lines = _locked(session, reservation_id)
    if reservation.status != "active":
        raise Conflict(f"reservation {reservation_id} is {reservation.status}", field="reservation_id",
                       code="reservation_settled")
    _settle(session, reservation, lines, kind="release", location=location, ref=None)
    if reservation.status == "released" and status == "expired":
        reservation.status = "expired"
        session.flush()
    return reservation


def consume(session: Session, *, reservation_id: str, location: str | None = None,
            ref: str | None = None) -> list[ReservationLine]:
    """The held units leave (shipped, collected, sold at the till): on hand and reserved fall together. ``location``
    consumes only the lines held there (one shipment of a split order). Returns the lines consumed."""
    reservation, lines = _locked(session, reservation_id)
    if reservation.status != "active":
        raise Conflict(f"reservation {reservation_id} is {reservation.status}", field="reservation_id",
                       code="reservation_settled")
    return _settle(session, reservation, lines, kind="sale", location=location, ref=ref)


def move(session: Session, *, reservation_id: str, from_location: str, to_location: str,
         ref: str | None = None) -> list[ReservationLine]:
    """The held units travel (a warehouse sends an order's goods to its pickup store): out of ``from_location``
    and into ``to_location`` on the ledger (a transfer), still held there for the same reservation, so they are
    sold there when collected or come back to that shelf if nobody collects them."""
    reservation, lines = _locked(session, reservation_id)
    if reservation.status != "active":
        raise Conflict(f"reservation {reservation_id} is {reservation.status}", field="reservation_id",
                       code="reservation_settled")
    check_location(session, to_location, field="to_location", sells=True)
    moving = [ln for ln in lines if ln.status == "active" and ln.location_code == from_location]
    if not moving:
        raise Conflict(f"reservation {reservation_id} holds nothing at {from_location}", field="from_location",
                       code="reservation_settled")
    tag = ref or reservation.id
    changes = []
    for ln in moving:
        changes += [Change(ln.sku, from_location, "transfer_out", on_hand=-ln.quantity, reserved=-ln.quantity,
                           ref=tag, channel=reservation.channel_code),
                    Change(ln.sku, to_location, "transfer_in", on_hand=ln.quantity, ref=tag,
                           channel=reservation.channel_code),
                    Change(ln.sku, to_location, "reservation", reserved=ln.quantity, ref=reservation.id,
                           channel=reservation.channel_code)]
    apply(session, changes)
    here = {ln.sku: ln for ln in lines if ln.status == "active" and ln.location_code == to_location}
    for ln in moving:
        ln.status = "moved"
        if ln.sku in here:
            here[ln.sku].quantity = here[ln.sku].quantity + ln.quantity
        else:
            session.add(ReservationLine(reservation_id=reservation.id, sku=ln.sku, location_code=to_location,
                                        quantity=ln.quantity, status="active"))
    reservation.updated_at = utcnow()
    session.flush()
    return moving


def hold(session: Session, *, reservation_id: str, ref: str | None = None,
         expires_at: datetime | None = None) -> None:
    """Keep an active reservation for an order: a new ``ref`` and a new expiry (``None``: until settled), its
    pending expiry job replaced.

    One guarded ``UPDATE`` (``WHERE status = 'active'``): it takes the row's lock and, on PostgreSQL, looks at the
    row again once a concurrent release (the expiry job) committed, so a reservation that ran out is never held."""
    now = utcnow()
    values: dict[str, Any] = {"expires_at": expires_at, "updated_at": now}
    if ref is not None:
        values["ref"] = ref
    # the session's pending changes (none of them a reservation's: release and move flush their own) are left for
    # the caller's next flush: checkout writes its payment once, with its order
    t = Reservation.__table__
    with session.no_autoflush:
        done = session.execute(update(t).where(t.c.id == reservation_id, t.c.status == "active").values(**values))
    if done.rowcount != 1:
        found = session.get(Reservation, reservation_id, populate_existing=True)
        if found is None:
            raise NotFound(f"no reservation {reservation_id!r}", field="reservation_id")
        raise Conflict(f"reservation {reservation_id} is {found.status}: its units may be gone",
                       field="reservation_id", code="reservation_expired")
    # the expiry it had is moot: a new one, under the same key, when it still runs out
    key = jobs.key(EXPIRE_JOB, reservation_id)
    with session.no_autoflush:
        jobs.cancel(session, [key])
    if expires_at is not None:
        jobs.enqueue(session, EXPIRE_JOB, {"id": reservation_id}, at=expires_at, unique_key=key)


def lines_of(session: Session, reservation_id: str) -> list[ReservationLine]:
    return list(session.scalars(select(ReservationLine).where(ReservationLine.reservation_id == reservation_id)
                                .order_by(ReservationLine.sku, ReservationLine.location_code)))


@jobs.handler(EXPIRE_JOB)
def expire(session: Session, args: dict[str, Any]) -> None:
    """Release a reservation whose time is up (nothing if it was settled or its expiry moved since)."""
    reservation = locks.rows(session, Reservation, [args["id"]]).get(args["id"])
    if reservation is None or reservation.status != "active" or reservation.expires_at is None \
            or reservation.expires_at > utcnow():
        return
    release(session, reservation_id=reservation.id, status="expired")
