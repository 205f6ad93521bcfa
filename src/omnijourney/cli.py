"""The ``omni`` command.

Which database: ``OMNI_DATABASE_URL`` when set; else ``omni.db`` in this directory if it exists; else the demo's
``omni-demo.db`` if ``omni demo`` built one here; else ``omni.db`` (``omni migrate`` creates it). Every command
that opens the database says on stderr which one it uses. Errors are one line on stderr and exit code 1 (usage
errors 2, as Click has them); ``--debug`` or ``OMNI_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from typer.core import TyperGroup

from omnijourney.analytics import commands as _analytics_commands  # noqa: F401  (sync, funnel, kpis, ...)
from omnijourney.analytics.cli import app as analytics_app
from omnijourney.auth.cli import staff_app
from omnijourney.inventory.cli import inventory_app
from omnijourney.jobs.cli import jobs_app, worker
from omnijourney.pricing.cli import check_app

if TYPE_CHECKING:
    from omnijourney.tracking.messages import Message

DEFAULT_URL = "sqlite:///omni.db"
DEMO_FILE = "omni-demo.db"  # omnijourney.demo.local.DEFAULT_PATH, without importing the demo at start-up
console = Console(soft_wrap=True)  # long lines (keys, URLs) stay whole: they are copied
err = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


# typer >= 0.26 carries its own copy of Click: its exceptions are found through typer's public ones
_CLICK_EXCEPTION = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_PASSED_ON = (typer.Exit, typer.Abort, _CLICK_EXCEPTION)


def _debug(ctx: typer.Context | None) -> bool:
    root = ctx.find_root() if ctx else None
    return bool(root and root.params.get("debug")) or os.environ.get("OMNI_DEBUG", "") not in ("", "0")


def _shown_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # shown as it is when it is no URL at all
        return url


def describe(exc: BaseException) -> str:
    """One line that says what went wrong and, where we know, what to do."""
    from sqlalchemy.exc import DBAPIError

    from omnijourney.config import Settings
    from omnijourney.core.errors import OmniError

    if isinstance(exc, OmniError):
        return exc.message
    if isinstance(exc, DBAPIError):
        url = _shown_url(Settings().database_url)
        text = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
        lowered = text.lower()
        if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
            return f"the database {url} has no schema yet ({text}): run `omni migrate`"
        if "unable to open" in lowered or "connect" in lowered or "connection" in lowered:
            return f"cannot open the database {url}: {text} (OMNI_DATABASE_URL chooses another)"
        return f"database {url}: {text}"
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


class _Commands(TyperGroup):
    """The root group: an error of any command becomes one line (the traceback only with ``--debug``)."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _PASSED_ON:  # usage errors, exits and Ctrl+C: Click and Typer already say them in one line
            raise
        except Exception as exc:
            if _debug(ctx):
                raise
            err.print(f"[red]error:[/red] {describe(exc)}", markup=True, highlight=False)
            err.print("  (--debug or OMNI_DEBUG=1 shows the traceback)", style="dim", highlight=False)
            ctx.exit(1)


app = typer.Typer(cls=_Commands, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Omnijourney: one backend for every channel.")
sources_app = typer.Typer(no_args_is_help=True, help="Sources: one write key per channel instance.")
keys_app = typer.Typer(no_args_is_help=True, help="Server API keys.")
events_app = typer.Typer(no_args_is_help=True, help="Tracked events: backfilling history from files.")
app.add_typer(sources_app, name="sources")
app.add_typer(keys_app, name="keys")
app.add_typer(events_app, name="events")
app.add_typer(check_app, name="check")
app.add_typer(jobs_app, name="jobs")
app.add_typer(inventory_app, name="inventory")
app.add_typer(staff_app, name="staff")
app.add_typer(analytics_app, name="analytics")
app.command("worker")(worker)


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="show the traceback of an error")] = False) -> None:
    """Omnijourney: one backend for every channel.

    The database: OMNI_DATABASE_URL; else omni.db here if it exists; else omni-demo.db (built by `omni demo`) if it
    exists; else omni.db, which `omni migrate` creates.
    """


def resolve_database() -> tuple[str, str]:
    """(URL, why): the database the commands use, by the rule in this module's docstring."""
    for name, value in os.environ.items():
        if name.upper() == "OMNI_DATABASE_URL" and value:
            return value, "OMNI_DATABASE_URL"
    if Path("omni.db").exists():
        return DEFAULT_URL, "the default"
    if Path(DEMO_FILE).exists():
        return f"sqlite:///{Path(DEMO_FILE).resolve()}", f"the demo's: there is no omni.db in {Path.cwd()}"
    return DEFAULT_URL, "the default"


def use_database(*, create: bool = False) -> str:
    """Choose the database for this command (and everything it calls: ``OMNI_DATABASE_URL`` is set), say which
    on stderr, and refuse an SQLite file that does not exist unless ``create``."""
    from sqlalchemy.engine import make_url

    from omnijourney.config import get_settings

    url, why = resolve_database()
    os.environ["OMNI_DATABASE_URL"] = url
    get_settings.cache_clear()
    parsed = make_url(url)
    err.print(f"database: {_shown_url(url)} ({why})", style="dim", highlight=False)
    file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if not create and file and file != ":memory:" and not Path(file).exists():
        err.print(f"[red]error:[/red] there is no database at {file}: run `omni migrate` to create it, `omni demo` "
                  "for the demo retailer, or set OMNI_DATABASE_URL", highlight=False)
        raise typer.Exit(1)
    return url


def uses_database(command: F) -> F:
    """Run ``command`` on the database chosen by :func:`use_database` (after parsing: ``--help`` opens nothing)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        use_database()
        return command(*args, **kwargs)

    return run  # type: ignore[return-value]


for _info in check_app.registered_commands:  # the pricing checks read OMNI_DATABASE_URL themselves
    _info.callback = uses_database(_info.callback) if _info.callback else None


def _database():
    from omnijourney.config import Settings
    from omnijourney.db import Database

    return Database(Settings().database_url)  # read now: use_database() has just set it


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be served (in use, not an address of this machine), or None."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot listen on {host}: {exc.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def check_port(host: str, port: int) -> None:
    """Stop with one line, naming a free port, when ``host:port`` cannot be served."""
    problem = port_problem(host, port)
    if problem is None:
        return
    free = next((p for p in range(port + 1, min(port + 50, 65536)) if port_problem(host, p) is None), None)
    hint = f": pick another with --port {free}" if free else ": pick another with --port"
    err.print(f"[red]error:[/red] cannot serve on {host}:{port} ({problem}; another server may be running there)"
              f"{hint}", highlight=False)
    raise typer.Exit(1)


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (``OMNI_DATABASE_URL``)."""
    from omnijourney.migrate import upgrade

    use_database(create=True)
    db = _database()
    upgrade(db.engine)
    console.print(f"[green]database at head[/green] ({db.engine.url.render_as_string(hide_password=True)})")


@app.command()
def serve(host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
          workers: Annotated[int, typer.Option(help="processes (PostgreSQL only)")] = 1) -> None:
    """Serve the API (OpenAPI docs at /docs)."""
    import uvicorn

    check_port(host, port)
    use_database()
    # the import string (not an app object) so that --workers can start one app per process
    uvicorn.run("omnijourney.api.asgi:app", host=host, port=port, workers=workers, log_level="info",
                access_log=False)


@app.command()
def demo(path: Annotated[str, typer.Option(help="the demo's SQLite file")] = DEMO_FILE,
         fresh: Annotated[bool, typer.Option("--fresh", help="rebuild it even if it exists (new keys)")] = False,
         seed: Annotated[int | None, typer.Option(help="same seed, same retailer  [default: 42]",
                                                  show_default=False)] = None,
         people: Annotated[int | None, typer.Option(help="customers to simulate  [default: 3000]",
                                                    show_default=False)] = None,
         host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
         port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
         serve_api: Annotated[bool, typer.Option("--serve/--no-serve", help="serve it when built")] = True) -> None:
    """Build an embedded database with a realistic demo retailer, then serve it.

    When the demo's file exists, it is served again as it is (keys in the .keys file beside it); --fresh rebuilds.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from omnijourney.demo import local

    if serve_api:
        check_port(host, port)  # before the build: a busy port must not cost a rebuild
    file = Path(path)
    url = local.sqlite_url(file)
    keys: local.DemoKeys | None = None
    if file.exists() and not fresh:
        keys, reissued = local.reopen(file)
        built = (keys.seed, keys.people)
        asked = (seed if seed is not None else built[0], people if people is not None else built[1])
        if None not in built and asked != built:
            err.print(f"[red]error:[/red] {path} holds the demo of seed {built[0]} with {built[1]:,} customers: "
                      f"add --fresh to rebuild it with seed {asked[0]} and {asked[1]:,} customers, or choose "
                      "another --path", highlight=False)
            raise typer.Exit(1)
        about = f"seed {built[0]}, {built[1]:,} customers" if None not in built else "built earlier"
        console.print(f"[green]serving the existing demo[/green] in {path} ({about}); "
                      "`omni demo --fresh` rebuilds it with new keys")
        if reissued:
            console.print("[yellow]new admin key[/yellow]: the earlier one is stored only as a hash and was not in "
                          f"{local.keys_path(file).name}")
    else:
        seed = local.DEFAULT_SEED if seed is None else seed
        people = local.DEFAULT_PEOPLE if people is None else people
        columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            def step(name: str, size: int) -> Callable[[int], None]:
                task = progress.add_task(name, total=size)
                return lambda n: progress.advance(task, n)

            keys = local.build(file, seed=seed, people=people, progress=step)
            for task in progress.tasks:
                progress.update(task.id, completed=task.total)
        console.print(f"[green]demo retailer ready[/green] in {path} (seed {seed}, {people:,} customers)")
    console.print(f"admin API key: [bold]{keys.admin_key}[/bold]")
    for name, key in keys.write_keys.items():
        console.print(f"  write key {name:<28} {key}")
    for role, (email, password) in keys.logins.items():  # POST /api/v1/session (the console's login)
        console.print(f"  login {role:<16} {email:<27} {password or '(changed: omni staff reset ' + email + ')'}")
    keys_file = local.keys_path(file)
    console.print(f"keys saved in {keys_file} (only you can read it); `. ./{keys_file.name}` sets $API_KEY, "
                  "$WRITE_KEY and OMNI_DATABASE_URL in your shell", soft_wrap=True, highlight=False)
    if resolve_database()[0] == url:
        console.print("other omni commands run in this directory use this database", highlight=False)
    else:
        console.print(f"other omni commands use it with: export OMNI_DATABASE_URL={url}", soft_wrap=True,
                      highlight=False)
    if serve_api:
        import uvicorn

        from omnijourney.api.app import create_app
        from omnijourney.config import Settings
        from omnijourney.db import Database

        os.environ["OMNI_DATABASE_URL"] = url
        from omnijourney.shop import analytics_js  # the demo channels: shoppers log in by email, analytics.js cached
        os.environ.setdefault("OMNI_SHOP_DEMO_LOGIN", "1")
        console.print(analytics_js.fetch(), highlight=False)
        base = f"http://{host}:{port}"
        console.print(f"shop {base}/shop  app (phone) {base}/app  till {base}/pos  console {base}/console",
                      soft_wrap=True, highlight=False)
        console.print(f"API and docs at http://{host}:{port}/docs  (Ctrl+C to stop)")
        uvicorn.run(create_app(Database(url), Settings(database_url=url)), host=host, port=port, log_level="warning")


@sources_app.command("add")
@uses_database
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
@uses_database
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
@uses_database
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
@uses_database
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

        messages = read_messages(files, default_source=default, sources_by_key=by_key, now=utcnow(), report=report,
                                 region=settings.identity.default_region)
        result = import_messages(db, shown(messages), settings=settings.identity, batch_size=batch_size,
                                 slice_size=slice_size, slice_seconds=slice_seconds, on_progress=on_progress)
        show()
    db.dispose()
    elapsed = time.monotonic() - started

    console.print(f"read {report.read:,} messages from {len(files):,} file(s): {result.accepted:,} stored, "
                  f"{result.duplicates:,} duplicates (stored before), {report.rejected:,} rejected", soft_wrap=True)
    console.print(f"{elapsed:.1f} s, {report.read / max(elapsed, 1e-9):,.0f} events/s")
    if report.warned:  # stored anyway: a time taken from receivedAt, an email or phone that is not one
        console.print(f"{report.warned:,} warning(s) (file:line code message), the messages stored:")
        for w in report.warnings[:_SHOWN_REJECTIONS]:
            console.print(f"  {w}", markup=False, highlight=False, soft_wrap=True)
    if report.rejected:
        console.print("rejected (file:line code message):")
        for r in report.rejections[:_SHOWN_REJECTIONS]:
            console.print(f"  {r}", markup=False, highlight=False, soft_wrap=True)
        if report.rejected > _SHOWN_REJECTIONS:
            console.print(f"  ... and {report.rejected - _SHOWN_REJECTIONS:,} more")
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
