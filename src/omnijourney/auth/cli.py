"""``omni staff ...``: staff accounts from the command line: add one (a one-time password, shown once), list them,
reset a password, disable or enable an account."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from omnijourney.auth.roles import ROLES

staff_app = typer.Typer(no_args_is_help=True, help="Staff accounts: people who log in (roles: " + ", ".join(ROLES)
                        + ").")
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@contextmanager
def _transaction(*, write: bool = True) -> Iterator[Any]:
    """A transaction on the database every ``omni`` command uses (said on stderr); a user's mistake (an unknown role,
    a store that is not a store channel, a taken email...) is one line on stderr and exit code 1."""
    from omnijourney.cli import use_database
    from omnijourney.config import Settings
    from omnijourney.core.errors import OmniError
    from omnijourney.db import Database

    use_database()
    db = Database(Settings().database_url)
    try:
        with db.transaction(write=write) as session:
            yield session
    except OmniError as exc:
        err.print(f"[red]error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        db.dispose()


def _shown_once(password: str, then: str) -> None:
    console.print(f"one-time password (shown only now; {then}):", highlight=False)
    print(password)  # the last line, alone: easy to copy or to read from a script


def _who(email: str, role: str, stores: list[str]) -> str:
    return f"{email} ({role}{' in ' + ', '.join(stores) if stores else ''})"


@staff_app.command("add")
def add(email: Annotated[str, typer.Argument(help="their email, which is their login")],
        role: Annotated[str, typer.Option(help=", ".join(ROLES))],
        store: Annotated[list[str] | None, typer.Option(help="a store channel's code (store associates; repeat "
                                                            "for several stores)")] = None,
        name: Annotated[str | None, typer.Option(help="their name (default: the email's local part)")] = None) -> None:
    """Add a staff account; prints a one-time password on the last line, to be changed at the first login."""
    from omnijourney.auth.staff import add_staff

    with _transaction() as session:
        row, password = add_staff(session, email=email, role=role, stores=store or (), name=name)
        who = _who(row.email, row.role, row.stores)
    console.print(f"staff account {who} added", highlight=False)
    _shown_once(password, "it must be changed at the first login")


@staff_app.command("list")
def list_accounts() -> None:
    """List staff accounts: role, stores, state, last login."""
    from omnijourney.auth.staff import list_staff
    from omnijourney.core.time import utcnow

    table = Table("email", "name", "role", "stores", "state", "last login")
    with _transaction(write=False) as session:
        now = utcnow()
        for s in list_staff(session):
            state = ("disabled" if not s.active else
                     "locked" if s.locked_until is not None and s.locked_until > now else
                     "must change password" if s.must_change_password else "active")
            last = s.last_login_at.strftime("%Y-%m-%d %H:%M UTC") if s.last_login_at else "never"
            table.add_row(s.email, s.name, s.role, ", ".join(s.stores), state, last)
    console.print(table)


@staff_app.command("reset")
def reset(email: str) -> None:
    """A new one-time password for the account (printed on the last line); unlocks it and logs it out everywhere."""
    from omnijourney.auth.staff import reset_password

    with _transaction() as session:
        row, password = reset_password(session, email=email)
        address = row.email
    console.print(f"password of {address} reset; its sessions have ended", highlight=False)
    _shown_once(password, "it must be changed at the next login")


def _set_active(active: bool) -> Callable[[str], None]:
    def command(email: str) -> None:
        from omnijourney.auth.staff import set_active

        with _transaction() as session:
            address = set_active(session, email=email, active=active).email
        console.print(f"{address} {'enabled' if active else 'disabled: its sessions have ended'}", highlight=False)

    return command


staff_app.command("disable", help="Disable an account: it can no longer log in, and its sessions end at once.")(
    _set_active(False))
staff_app.command("enable", help="Enable a disabled account again (its password is unchanged).")(_set_active(True))
