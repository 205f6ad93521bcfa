"""``omni jobs ...`` (see, retry and discard background work) and ``omni worker`` (run it in its own process)."""

from __future__ import annotations

import signal
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

jobs_app = typer.Typer(help="Background work: what is pending, running and failed; retry or discard it.",
                       invoke_without_command=True)
console = Console()
err = Console(stderr=True)


def _db():
    from omnijourney.cli import use_database
    from omnijourney.config import Settings
    from omnijourney.db import Database

    use_database()  # the database every `omni` command uses (said on stderr); no SQLite file is created
    return Database(Settings().database_url)


@jobs_app.callback()
def jobs(ctx: typer.Context,
         status: Annotated[str | None, typer.Option(help="pending, running or failed")] = None,
         kind: Annotated[str | None, typer.Option(help="only jobs of this kind")] = None,
         limit: Annotated[int, typer.Option(help="rows to list")] = 50) -> None:
    """Counts per kind and status, then the jobs themselves (failed ones with their last error)."""
    if ctx.invoked_subcommand is not None:
        return
    from omnijourney.core.errors import OmniError
    from omnijourney.jobs import service

    with _db().transaction(write=False) as session:
        counts = service.summary(session)
        try:
            rows = service.list_jobs(session, status=status, kind_name=kind, limit=limit)
        except OmniError as exc:
            err.print(f"[red]error:[/red] {exc.message}", highlight=False)
            raise typer.Exit(2) from None
        summary = Table("kind", "status", "jobs", "next due", title="Background work")
        for s in counts:
            summary.add_row(s.kind, s.status, str(s.count), s.next_run_at.isoformat(timespec="seconds")
                            if s.next_run_at else "")
        console.print(summary if counts else "no background work: nothing pending, running or failed")
        if rows:
            table = Table("id", "kind", "status", "attempts", "run at", "last error")
            for j in rows:
                error = (j.last_error or "").strip().splitlines()[-1:] or [""]
                table.add_row(str(j.id), j.kind, j.status, f"{j.attempts}/{j.max_attempts}",
                              j.run_at.isoformat(timespec="seconds"), error[0][:80])
            console.print(table)


def _operate(action: str, job_id: int, done: str) -> None:
    from omnijourney.core.errors import OmniError
    from omnijourney.jobs import service

    try:
        with _db().transaction() as session:
            getattr(service, action)(session, job_id)
    except OmniError as exc:
        err.print(f"[red]error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(1) from None
    console.print(f"job {job_id} {done}")


@jobs_app.command("retry")
def retry(job_id: Annotated[int, typer.Argument(help="a failed job's id")]) -> None:
    """Run a failed job again now."""
    _operate("retry", job_id, "will run again now")


@jobs_app.command("discard")
def discard(job_id: Annotated[int, typer.Argument(help="a failed or pending job's id")]) -> None:
    """Drop a job that is not running."""
    _operate("discard", job_id, "discarded")


def worker(threads: Annotated[int, typer.Option(help="worker threads in this process")] = 1,
           batch: Annotated[int, typer.Option(help="jobs claimed at a time")] = 10) -> None:
    """Run background work in this process (with OMNI_JOBS__EMBEDDED=false on the servers, or beside them).

    Several `omni worker` processes, on several machines against one PostgreSQL, never run the same job.
    """
    from omnijourney import models  # noqa: F401  (every domain's job handlers)
    from omnijourney.config import Settings
    from omnijourney.jobs.worker import Worker

    db = _db()
    settings = Settings()
    workers = [Worker(db, batch=batch, poll_s=settings.jobs.poll_s, lease_s=settings.jobs.lease_s).start()
               for _ in range(threads)]
    console.print(f"{threads} worker(s) on {db.engine.url.render_as_string(hide_password=True)}; Ctrl-C stops")
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        time.sleep(0.2)
    for w in workers:
        w.stop()
    console.print(f"stopped: {sum(w.ran for w in workers)} job(s) done, {sum(w.failed for w in workers)} failed")
