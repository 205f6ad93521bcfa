"""The ``omni`` command."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from omnijourney.jobs.cli import jobs_app, worker
from omnijourney.pricing.cli import check_app

if TYPE_CHECKING:
    from omnijourney.tracking.messages import Message

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Omnijourney: one backend for every channel.")
sources_app = typer.Typer(no_args_is_help=True, help="Sources: one write key per channel instance.")
keys_app = typer.Typer(no_args_is_help=True, help="Server API keys.")
events_app = typer.Typer(no_args_is_help=True, help="Tracked events: backfilling history from files.")
app.add_typer(sources_app, name="sources")
app.add_typer(keys_app, name="keys")
app.add_typer(events_app, name="events")
app.add_typer(check_app, name="check")
app.add_typer(jobs_app, name="jobs")
app.command("worker")(worker)
console = Console()


def _database():
    from omnijourney.config import Settings
    from omnijourney.db import Database

    return Database(Settings().database_url)  # read now: the environment may have changed since import


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (``OMNI_DATABASE_URL``)."""
    from omnijourney.migrate import upgrade

    db = _database()
    upgrade(db.engine)
    console.print(f"[green]database at head[/green] ({db.engine.url.render_as_string(hide_password=True)})")


@app.command()
def serve(host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
          workers: Annotated[int, typer.Option(help="processes (PostgreSQL only)")] = 1) -> None:
    """Serve the API (OpenAPI docs at /docs)."""
    import uvicorn

    # the import string (not an app object) so that --workers can start one app per process
    uvicorn.run("omnijourney.api.asgi:app", host=host, port=port, workers=workers, log_level="info",
                access_log=False)


@app.command()
def demo(path: Annotated[str, typer.Option(help="SQLite file to (re)create")] = "omni-demo.db",
         seed: Annotated[int, typer.Option(help="same seed, same retailer")] = 42,
         people: Annotated[int, typer.Option(help="customers to simulate")] = 3000,
         host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
         port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
         serve_api: Annotated[bool, typer.Option("--serve/--no-serve", help="serve it when built")] = True) -> None:
    """Build a fresh embedded database with a realistic demo retailer, then serve it."""
    import random
    from pathlib import Path

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from omnijourney.db import Database
    from omnijourney.demo.build import STEPS, DemoContext, default_now
    from omnijourney.migrate import upgrade

    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{Path(path).resolve()}"
    db = Database(url)
    upgrade(db.engine)
    ctx = DemoContext(db=db, seed=seed, people=people, now=default_now(), rng=random.Random(seed))
    columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        for name, size, run in STEPS:
            task = progress.add_task(name, total=size(ctx))
            run(ctx, lambda n, t=task: progress.advance(t, n))
            progress.update(task, completed=progress.tasks[task].total)
    db.dispose()
    console.print(f"[green]demo retailer ready[/green] in {path} (seed {seed}, {people:,} customers)")
    console.print(f"admin API key: [bold]{ctx.admin_key}[/bold]")
    for name, key in ctx.write_keys.items():
        console.print(f"  write key {name:<28} {key}")
    if serve_api:
        import os

        import uvicorn

        from omnijourney.api.app import create_app
        from omnijourney.config import Settings

        os.environ["OMNI_DATABASE_URL"] = url
        console.print(f"API and docs at http://{host}:{port}/docs  (Ctrl+C to stop)")
        uvicorn.run(create_app(Database(url), Settings(database_url=url)), host=host, port=port, log_level="warning")


@sources_app.command("add")
def sources_add(name: str,
                channel: Annotated[str, typer.Option(help="web, app, store, call_center, email, chat, "
                                                          "whatsapp, messenger, sms, social, marketplace")],
                store: Annotated[str | None, typer.Option(help="store code, for store sources")] = None) -> None:
    """Register a source; prints its write key on the last line."""
    from omnijourney.core.errors import OmniError
    from omnijourney.tracking.sources import create_source

    try:
        with _database().transaction() as session:
            source = create_source(session, name=name, channel=channel, store_code=store)
    except OmniError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from None
    console.print(f"source {source.name!r} ({source.channel}{', store ' + store if store else ''})")
    print(source.write_key)


@sources_app.command("list")
def sources_list() -> None:
    """List sources and their write keys."""
    from rich.table import Table

    from omnijourney.tracking.sources import list_sources

    table = Table("name", "channel", "store", "write key")
    with _database().transaction(write=False) as session:
        for s in list_sources(session):
            table.add_row(s.name, s.channel, s.store_code or "", s.write_key)
    console.print(table)


@keys_app.command("create")
def keys_create(name: Annotated[str, typer.Option(help="who or what uses the key")],
                scope: Annotated[list[str], typer.Option(help="e.g. customers:read, events:write, admin")]) -> None:
    """Create a server API key; prints the key on the last line (it is shown only once)."""
    from omnijourney.auth.service import create_key
    from omnijourney.core.errors import OmniError

    try:
        with _database().transaction() as session:
            row, plain = create_key(session, name=name, scopes=scope)
    except OmniError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from None
    console.print(f"key {row.name!r} with scopes {', '.join(row.scopes)}")
    print(plain)


_SHOWN_REJECTIONS = 10
_IMPORT_HELP = (
    "Import history from Segment / RudderStack export files, e.g. Segment's S3 archive.\n\n"
    "Each PATH is a file or a directory (its files, recursively): newline-delimited JSON (one message per "
    "line), or one JSON document (a batch object {\"batch\": [...], \"context\", \"sentAt\", ...} or an array "
    "of messages), either optionally gzip-compressed.\n\n"
    "Source: --source NAME sends every message to that registered source; write keys in the files are then "
    "ignored (exports carry the old vendor's keys). Without it, each message goes to the source of its "
    "writeKey (or its batch object's); a message without one, or with an unknown key, is rejected.\n\n"
    "Event time: the message's timestamp as written; receivedAt is the time of the import. Safe to re-run: "
    "messages stored before (same source and messageId) count as duplicates and are not stored again.\n\n"
    "Exit codes: 0 every message stored or a duplicate; 1 some messages rejected (the others are stored); "
    "2 usage error (missing file, unknown --source, database not migrated)."
)


@events_app.command("import", help=_IMPORT_HELP)
def events_import(
    paths: Annotated[list[Path], typer.Argument(exists=True, readable=True, metavar="PATH",
                                                help="files or directories", show_default=False)],
    source: Annotated[str | None, typer.Option(help="registered source receiving every message")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="messages resolved and written together")] = 20_000,
    slice_size: Annotated[int, typer.Option(min=1, help="most messages per transaction; it holds the identity "
                                                        "lock, so live ingestion waits for at most one")] = 200_000,
    slice_seconds: Annotated[float, typer.Option(min=0.0, help="no batch joins a transaction after this long: "
                                                               "bounds the wait of live tracking calls")] = 2.0,
) -> None:
    """Import history files; the help text is ``_IMPORT_HELP``."""
    import time

    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
    from sqlalchemy import inspect

    from omnijourney.config import Settings
    from omnijourney.core.time import utcnow
    from omnijourney.tracking.bulk import import_messages
    from omnijourney.tracking.importing import ReadReport, expand_paths, read_messages
    from omnijourney.tracking.segment import SourceRef
    from omnijourney.tracking.sources import list_sources

    settings = Settings()
    db = _database()
    if not {"sources", "events"} <= set(inspect(db.engine).get_table_names()):
        console.print("[red]error:[/red] the database has no schema yet: run `omni migrate` first")
        raise typer.Exit(2)
    with db.transaction(write=False) as session:
        rows = list_sources(session)
    refs = {s.name: SourceRef(s.id, s.name, s.channel, s.store_code) for s in rows}
    by_key = {s.write_key: refs[s.name] for s in rows if s.enabled}  # a disabled source takes no events
    default = None
    if source is not None:
        default = refs.get(source)
        if default is None:
            known = ", ".join(repr(n) for n in sorted(refs)) or "none yet (omni sources add)"
            console.print(f"[red]error:[/red] unknown source {source!r}; registered sources: {known}")
            raise typer.Exit(2)
        if default not in by_key.values():
            console.print(f"[red]error:[/red] source {source!r} is disabled")
            raise typer.Exit(2)

    files = expand_paths(paths)
    total_bytes = sum(f.stat().st_size for f in files)
    report = ReadReport()
    started = time.monotonic()
    columns = (TextColumn("importing"), BarColumn(), TaskProgressColumn(),
               TextColumn("processed {task.fields[done]:,} / read {task.fields[read]:,}"),
               TextColumn("{task.fields[rate]:,.0f} events/s"), TimeElapsedColumn())
    # two redraws a second: each one takes the GIL from the import
    with Progress(*columns, console=console, refresh_per_second=2) as progress:
        task = progress.add_task("import", total=total_bytes or 1, done=0, read=0, rate=0.0)
        done = 0  # stored or found to be duplicates

        def show() -> None:
            rate = report.read / max(time.monotonic() - started, 1e-9)
            progress.update(task, completed=report.bytes_read, done=done, read=report.read, rate=rate)

        def on_progress(n: int) -> None:
            nonlocal done
            done += n
            show()

        def shown(messages: Iterator[Message]) -> Iterator[Message]:
            for i, m in enumerate(messages, 1):
                if i % 1000 == 0:  # between the engine's batches too; a refresh per message would cost
                    show()
                yield m

        messages = read_messages(files, default_source=default, sources_by_key=by_key, now=utcnow(), report=report)
        result = import_messages(db, shown(messages), settings=settings.identity, batch_size=batch_size,
                                 slice_size=slice_size, slice_seconds=slice_seconds, on_progress=on_progress)
        show()
    db.dispose()
    elapsed = time.monotonic() - started

    console.print(f"read {report.read:,} messages from {len(files):,} file(s): {result.accepted:,} stored, "
                  f"{result.duplicates:,} duplicates (stored before), {report.rejected:,} rejected", soft_wrap=True)
    console.print(f"{elapsed:.1f} s, {report.read / max(elapsed, 1e-9):,.0f} events/s")
    if report.rejected:
        console.print("rejected (file:line code message):")
        for r in report.rejections[:_SHOWN_REJECTIONS]:
            console.print(f"  {r}", markup=False, highlight=False, soft_wrap=True)
        if report.rejected > _SHOWN_REJECTIONS:
            console.print(f"  ... and {report.rejected - _SHOWN_REJECTIONS:,} more")
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
