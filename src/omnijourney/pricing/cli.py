"""``omni check ...``: the pricing checks (registered by the main CLI as ``app.add_typer(check_app, name="check")``)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

check_app = typer.Typer(no_args_is_help=True, help="Checks: prices consistent across channels.")
console = Console()


@check_app.callback()
def _checks() -> None:
    """Checks of the data (a group even with one command, so ``omni check consistency`` stays stable)."""


@check_app.command("consistency")
def consistency(at: Annotated[str | None, typer.Option(help="moment to check, ISO 8601; no zone: UTC (default: now)")]
                = None,
                as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
                all_: Annotated[bool, typer.Option("--all", help="also list differences explained by rules")]
                = False) -> None:
    """List SKUs whose effective price differs between channels without a rule that says so (exit 1 if any)."""
    from omnijourney.config import get_settings
    from omnijourney.core.time import iso, parse_ts
    from omnijourney.db import Database
    from omnijourney.pricing.consistency import check

    try:
        when = parse_ts(at)
    except ValueError:
        console.print(f"[red]error:[/red] --at {at!r} is not an ISO 8601 timestamp")
        raise typer.Exit(2) from None
    db = Database(get_settings().database_url)
    with db.transaction(write=False) as session:
        report = check(session, at=when)
    shown = [f for f in report.findings if all_ or f.status != "explained"]
    if as_json:
        print(json.dumps({"at": iso(report.at), "channels": list(report.channels), "skus_checked": report.skus_checked,
                          "products": list(report.products),
                          "findings": [{"product_id": f.product_id, "sku": f.sku, "status": f.status,
                                        "reason": f.reason} for f in shown]}, indent=2))
    else:
        table = Table("product", "sku", "status", "reason")
        for f in shown:
            table.add_row(f.product_id, f.sku, f.status, f.reason)
        console.print(table)
        console.print(f"{report.skus_checked} SKUs in {len(report.channels)} channels at {iso(report.at)}: "
                      f"{len(report.products)} products with unexplained differences")
    db.dispose()
    if report.products:
        raise typer.Exit(1)
