"""``omni inventory import``: stock from a warehouse or store system's CSV export (sku, location, quantity, kind).

Three steps. :func:`read_csv` reads the file and checks each row's form (no database). :func:`validate` checks
every row against the database at once (SKUs, locations, counts against what is reserved). :func:`write` imports
the good rows in chunks, each chunk one transaction of set-based statements: the missing stock levels created,
the counted levels locked (``pools.lock_levels``) and their counts checked again under the lock, then the ledger
rows and one guarded ``UPDATE`` per level (``stock.apply_many``).

Rows apply in file order: a receipt after a count of the same SKU and location adds to the counted figure, a count
after a receipt replaces it. A receipt adds ``quantity`` units; a count says ``quantity`` units are on the shelf
(on hand becomes that; the ledger keeps the difference and the figure).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from omnijourney.catalog.models import Variant
from omnijourney.core.time import utcnow
from omnijourney.db import Database, select_pairs
from omnijourney.inventory import pools
from omnijourney.inventory.models import Location
from omnijourney.inventory.stock import MAX_UNITS, Change, apply_many, ensure_levels

COLUMNS = ("sku", "location", "quantity", "kind")
KINDS = ("receipt", "count")
CHUNK = 1_000
_WHOLE = re.compile(r"[0-9]+")
_NEGATIVE = re.compile(r"-[0-9]+")
_LOOKUP = 5_000  # SKUs per catalog query


class FileProblem(Exception):
    """The file as a whole cannot be read (no header, missing or extra columns, not UTF-8 text)."""


@dataclass(slots=True)
class Row:
    line: int
    sku: str
    location: str
    quantity: int
    kind: str


@dataclass(slots=True)
class BadRow:
    line: int
    column: str  # one of COLUMNS, or "row" for the row as a whole
    reason: str

    @property
    def order(self) -> tuple[int, int]:
        """Sort key: by line, then the file's column order."""
        return self.line, COLUMNS.index(self.column) + 1 if self.column in COLUMNS else 0

    def __str__(self) -> str:
        return f"line {self.line}: {self.column}: {self.reason}"


@dataclass(slots=True)
class Outcome:
    """What an import did."""

    ref: str
    rows: int = 0
    receipts: int = 0
    counts: int = 0
    received: int = 0  # units added by receipts
    counted_up: int = 0  # units that counts added (found) ...
    counted_down: int = 0  # ... and took away (missing)
    levels: int = 0  # stock levels changed
    late: list[BadRow] = field(default_factory=list)  # rows found bad under the lock (a reservation meanwhile)


def read_csv(path: Path) -> tuple[list[Row], list[BadRow]]:
    """The rows of ``path`` and the problems of their form (line, column, reason); a row with a problem is among the
    rows too (``quantity`` -1 when unreadable), so that :func:`validate` names its other problems.

    The header names the four columns (any order, any case); a blank line is skipped. ``FileProblem`` when the
    file cannot be read as such a CSV at all."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return _read(f, str(path))
    except UnicodeDecodeError as exc:
        raise FileProblem(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_csv_text(body: str, name: str = "the file") -> tuple[list[Row], list[BadRow]]:
    """:func:`read_csv` of text already read."""
    return _read(io.StringIO(body, newline=""), name)


def _read(f: TextIO, name: str) -> tuple[list[Row], list[BadRow]]:
    rows: list[Row] = []
    bad: list[BadRow] = []
    try:
        reader = csv.reader(f)
        header = next(reader, None)
        while header is not None and not any(h.strip() for h in header):
            header = next(reader, None)
        if header is None:
            raise FileProblem(f"{name} is empty: the first line names the columns {', '.join(COLUMNS)}")
        names = [h.strip().lower() for h in header]
        extra = [h for h in names if h not in COLUMNS]
        missing = [c for c in COLUMNS if c not in names]
        if extra or missing or len(set(names)) != len(names):
            said = []
            if missing:
                said.append(f"missing {', '.join(missing)}")
            if extra:
                said.append(f"unexpected {', '.join(repr(h) for h in extra)}")
            if len(set(names)) != len(names):
                said.append("a column named twice")
            raise FileProblem(f"the header (line {reader.line_num}) must name exactly the columns "
                              f"{', '.join(COLUMNS)} ({'; '.join(said)}); remove other columns first")
        at = {col: i for i, col in enumerate(names)}
        width = len(names)
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(values) != width:  # nothing else can be said of it: its fields may be shifted
                bad.append(BadRow(line, "row", f"{len(values)} fields where the header has {width}"))
                continue
            sku, loc = values[at["sku"]].strip(), values[at["location"]].strip()
            raw_q, kind = values[at["quantity"]].strip(), values[at["kind"]].strip().lower()
            quantity: int | None = None
            if not sku:
                bad.append(BadRow(line, "sku", "empty"))
            if not loc:
                bad.append(BadRow(line, "location", "empty"))
            if _WHOLE.fullmatch(raw_q):
                quantity = int(raw_q)
                if quantity > MAX_UNITS:
                    bad.append(BadRow(line, "quantity", f"{quantity:,} is more than {MAX_UNITS:,} units"))
                elif quantity == 0 and kind == "receipt":
                    bad.append(BadRow(line, "quantity", "a receipt of 0 units"))
            elif _NEGATIVE.fullmatch(raw_q):
                bad.append(BadRow(line, "quantity", f"negative ({raw_q})"))
            else:
                bad.append(BadRow(line, "quantity", f"not a whole number ({raw_q!r})"))
            if kind not in KINDS:
                bad.append(BadRow(line, "kind", f"unknown kind {values[at['kind']].strip()!r}: count or receipt"))
            # kept even when its form is wrong: the database checks still name the row's other problems
            rows.append(Row(line, sku, loc, quantity if quantity is not None else -1, kind))
    except csv.Error as exc:
        raise FileProblem(f"{name} is not a readable CSV file: {exc}") from None
    return rows, bad


def validate(session: Session, rows: Sequence[Row]) -> list[BadRow]:
    """The problems the database finds: an unknown SKU, an unknown or inactive location, a count below what is
    reserved there now, a second count of the same SKU and location in the file. Set-based: a few queries."""
    bad: list[BadRow] = []
    skus = sorted({r.sku for r in rows})
    known: set[str] = set()
    for i in range(0, len(skus), _LOOKUP):
        known.update(session.scalars(select(Variant.sku).where(Variant.sku.in_(skus[i:i + _LOOKUP]))))
    places = {loc.code: loc for loc in session.scalars(select(Location))}
    counted = sorted({(r.sku, r.location) for r in rows if r.kind == "count" and r.quantity >= 0})
    reserved = {(s, loc): int(rv) for s, loc, rv in select_pairs(
        session, "SELECT l.sku, l.location_code, l.reserved - COALESCE((SELECT SUM(s.units) FROM stock_pools s "
                 "WHERE s.sku = l.sku AND s.location_code = l.location_code), 0) FROM stock_levels l "
                 "JOIN p ON l.sku = p.a AND l.location_code = p.b", counted)}
    first_count: dict[tuple[str, str], int] = {}
    for r in rows:
        if r.sku and r.sku not in known:
            bad.append(BadRow(r.line, "sku", f"unknown SKU {r.sku!r}"))
        place = places.get(r.location)
        if place is None and r.location:
            bad.append(BadRow(r.line, "location", f"unknown location {r.location!r}"))
        elif place is not None and not place.active:
            bad.append(BadRow(r.line, "location", f"location {r.location} is not active"))
        if r.kind == "count" and r.quantity >= 0:
            key = (r.sku, r.location)
            if key in first_count:
                bad.append(BadRow(r.line, "quantity", f"a second count of {r.sku} at {r.location} in this file "
                                                      f"(first on line {first_count[key]})"))
            else:
                first_count[key] = r.line
            held = reserved.get(key, 0)
            if r.quantity < held:
                bad.append(BadRow(r.line, "quantity", f"counted {r.quantity} but {held} are reserved there; "
                                                      "release or reallocate those reservations first"))
    bad.sort(key=lambda b: b.order)
    return bad


def write_chunk(session: Session, rows: Sequence[Row], *, ref: str, outcome: Outcome,
                now: datetime | None = None) -> None:
    """Import ``rows`` (already validated) in the caller's transaction; adds to ``outcome``.

    A count found below what is reserved once its level is locked (a reservation made since the validation) is
    not applied and goes to ``outcome.late``."""
    now = now or utcnow()
    counted = {(r.sku, r.location) for r in rows if r.kind == "count"}
    # Every transaction takes its row locks in (SKU, location) order, so that none waits on another in a circle. A
    # chunk with counts locks all its levels at once, in that order, before anything else (a count needs the figure
    # it replaces; locking only the counted levels first would let a receipt's update lock a lower key after a
    # higher one, and deadlock with a multi-line checkout holding the lower). A chunk of receipts alone takes its
    # locks through its updates, which run in key order. (SQLite has no row locks: its writer holds the database,
    # and only the counted levels are read.)
    pg = session.get_bind().dialect.name == "postgresql"
    keys = {(r.sku, r.location) for r in rows} if counted and pg else counted
    ensure_levels(session, keys, now)  # a level must exist to be locked; apply_many makes the others
    locked = pools.lock_levels(session, keys, now=now, ref=ref)  # with what their pools set aside given back
    # on hand as this chunk leaves it, for the levels it counts: a count's delta is the figure minus that
    on_hand = {k: lv.on_hand for k, lv in locked.items()}
    changes = []
    for r in rows:
        key = (r.sku, r.location)
        if r.kind == "receipt":
            changes.append(Change(r.sku, r.location, "receipt", on_hand=r.quantity, ref=ref))
            if key in on_hand:
                on_hand[key] += r.quantity
            outcome.receipts += 1
            outcome.received += r.quantity
            continue
        level = locked[key]
        if r.quantity < level.reserved:
            outcome.late.append(BadRow(r.line, "quantity", f"counted {r.quantity} but {level.reserved} were "
                                                           "reserved there by the time it was written: not applied"))
            continue
        delta = r.quantity - on_hand[key]
        on_hand[key] = r.quantity
        changes.append(Change(r.sku, r.location, "count", on_hand=delta, counted=r.quantity, ref=ref))
        outcome.counts += 1
        outcome.counted_up += max(delta, 0)
        outcome.counted_down += max(-delta, 0)
    outcome.levels += apply_many(session, changes, now=now, locked=pg and bool(counted))
    outcome.rows += len(changes)


def write(db: Database, rows: Sequence[Row], *, ref: str, chunk: int = CHUNK,
          progress: Callable[[int], None] | None = None) -> Outcome:
    """Import ``rows`` in transactions of ``chunk`` rows; ``progress(n)`` after each."""
    outcome = Outcome(ref=ref)
    for part in _chunks(rows, chunk):
        with db.transaction() as session:
            write_chunk(session, part, ref=ref, outcome=outcome)
        if progress:
            progress(len(part))
    return outcome


def _chunks(rows: Sequence[Row], size: int) -> Iterable[Sequence[Row]]:
    for i in range(0, len(rows), size):
        yield rows[i:i + size]
