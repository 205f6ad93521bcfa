"""The ``omni`` command."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from omnijourney.pricing.cli import check_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Omnijourney: one backend for every channel.")
sources_app = typer.Typer(no_args_is_help=True, help="Sources: one write key per channel instance.")
keys_app = typer.Typer(no_args_is_help=True, help="Server API keys.")
app.add_typer(sources_app, name="sources")
app.add_typer(keys_app, name="keys")
app.add_typer(check_app, name="check")
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


if __name__ == "__main__":
    app()
