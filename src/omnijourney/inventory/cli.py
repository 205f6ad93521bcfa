"""``omni inventory ...``: import stock from a CSV export, check the ledger against the counters, show levels."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

inventory_app = typer.Typer(no_args_is_help=True,
                            help="Stock: import a warehouse or store system's export, check the ledger, levels.")
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

_IMPORT_HELP = (
    "Import stock from a CSV file with the header sku,location,quantity,kind (any order; no other columns).\n\n"
    "kind is receipt (quantity units arrived: on hand grows by it) or count (a cycle count: on hand becomes "
    "quantity; the ledger keeps the difference and the figure). Rows apply in file order.\n\n"
    "Every row is checked first, and every bad one is listed as 'line N: column: reason' (an unknown SKU, an unknown "
    "or inactive location, a quantity that is not a whole number or is negative, a count below what is reserved, an "
    "unknown kind, a second count of the same SKU and location). If any row is bad nothing is imported, unless "
    "--skip-bad, which imports the good rows.\n\n"
    "The import is written in transactions of --chunk rows; its ledger rows carry one reference (printed: "
    "GET /api/v1/inventory/movements?ref=... lists them).\n\n"
    "Exit codes: 0 every row imported; 1 bad rows (nothing imported, or with --skip-bad the others); 2 usage error."
)


def _db():
    from omnijourney.cli import use_database
    from omnijourney.config import Settings
    from omnijourney.db import Database

    use_database()  # the database every `omni` command uses (said on stderr)
    return Database(Settings().database_url)


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _list_bad(bad: list) -> None:
    # plain print: a file of many bad rows is listed fast, and whole (an operator fixes them all at once)
    for b in bad:
        print(f"  {b}")


@inventory_app.command("import", help=_IMPORT_HELP)
def import_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, metavar="FILE.csv",
                                         show_default=False)],
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="import the good rows even if some are bad")] = False,
    chunk: Annotated[int, typer.Option(min=1, max=100_000, help="rows per transaction")] = 1_000,
) -> None:
    """Import a CSV export; the help text is ``_IMPORT_HELP``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from omnijourney.core.ids import new_id
    from omnijourney.inventory import importing

    started = time.monotonic()
    try:
        rows, bad = importing.read_csv(file)
    except importing.FileProblem as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    db = _db()
    with db.transaction(write=False) as session:
        bad = sorted(bad + importing.validate(session, rows), key=lambda b: b.order)
    bad_lines = {b.line for b in bad}
    if bad:
        console.print(f"[red]{len(bad_lines):,} bad row(s)[/red] (line N: column: reason):", highlight=False)
        _list_bad(bad)
        if not skip_bad:
            console.print("nothing imported: fix these rows, or add --skip-bad to import the others", highlight=False)
            db.dispose()
            raise typer.Exit(1)
    rows = [r for r in rows if r.line not in bad_lines]
    ref = f"import-{new_id()}"
    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"), TimeElapsedColumn())
    written = 0  # rows in committed chunks

    def advance(n: int) -> None:
        nonlocal written
        written += n
        progress.advance(task, n)

    with Progress(*columns, console=console, refresh_per_second=2, transient=False) as progress:
        task = progress.add_task("import", total=len(rows))
        try:
            outcome = importing.write(db, rows, ref=ref, chunk=chunk, progress=advance)
        except Exception:
            # receipts add: running the same file again would add these twice, so say exactly what is in
            said = (f"the first {_n(written, 'row')} (to line {rows[written - 1].line}) were imported (ledger "
                    f"reference {ref}); import the rest from line {rows[written].line} on" if written else
                    "nothing was imported")
            err.print(f"[red]the import stopped[/red]: {said}", highlight=False)
            raise
        finally:
            db.dispose()
    elapsed = time.monotonic() - started
    console.print(f"imported {_n(outcome.rows, 'row')} ({_n(outcome.receipts, 'receipt')}, "
                  f"{_n(outcome.counts, 'count')}) into {_n(outcome.levels, 'stock level')}: "
                  f"+{_n(outcome.received, 'unit')} received, counts +{outcome.counted_up:,} / "
                  f"-{outcome.counted_down:,} units", highlight=False)
    console.print(f"{elapsed:.1f} s, {outcome.rows / max(elapsed, 1e-9):,.0f} rows/s; ledger reference {ref}",
                  highlight=False)
    if outcome.late:
        console.print(f"[red]{len(outcome.late):,} count(s) not applied[/red]: reserved above the count by the time "
                      "it was written", highlight=False)
        _list_bad(outcome.late)
    if bad or outcome.late:
        raise typer.Exit(1)


@inventory_app.command("check")
def check() -> None:
    """Verify that the ledger rebuilds every stock level's on hand and reserved (exit 1 and the differences if not)."""
    from sqlalchemy import func, select

    from omnijourney.inventory import stock
    from omnijourney.inventory.models import StockLevel

    db = _db()
    with db.transaction(write=False) as session:
        found = stock.check(session)
        levels = session.scalar(select(func.count()).select_from(StockLevel)) or 0
    db.dispose()
    if not found:
        console.print(f"ledger and stock agree for {levels:,} levels", highlight=False)
        return
    table = Table("sku", "location", "on hand", "ledger on hand", "reserved", "ledger reserved",
                  title=f"{len(found):,} of {levels:,} levels differ from their ledger")
    for d in found:
        table.add_row(d.sku, d.location, str(d.on_hand), str(d.ledger_on_hand), str(d.reserved),
                      str(d.ledger_reserved))
    console.print(table)
    raise typer.Exit(1)


@inventory_app.command("levels")
def levels(sku: Annotated[list[str] | None, typer.Option(help="a SKU (repeat for several)")] = None,
           location: Annotated[list[str] | None, typer.Option(help="a location code (repeat for several)")] = None
           ) -> None:
    """Stock levels of some SKUs and/or locations: on hand, reserved, safety stock, free."""
    from omnijourney.inventory import stock

    if not sku and not location:
        err.print("[red]error:[/red] name at least one --sku or --location", highlight=False)
        raise typer.Exit(2)
    db = _db()
    with db.transaction(write=False) as session:
        found = stock.levels(session, skus=sku, locations=location)
    db.dispose()
    if not found:
        console.print("no stock recorded for that", highlight=False)
        return
    table = Table("sku", "location", "on hand", "reserved", "safety stock", "free")
    for lv in found:
        table.add_row(lv.sku, lv.location_code, str(lv.on_hand), str(lv.held), str(lv.safety_stock),
                      str(lv.free))
    console.print(table)
