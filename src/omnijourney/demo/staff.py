"""The demo's staff: one account per role, each with a random password printed by ``omni demo`` and kept in the
keys file beside the demo.

Demo accounts are created without ``must_change_password``, unlike every other account: the demo is a sandbox on
its owner's machine, its passwords are random for every build and shown only to that owner (the terminal and the
0600 keys file), and a forced change would make the printed logins stop working after their first use and put a
password form in front of a newcomer's five-minute tour. There is still no default password anywhere.

Serving the demo again keeps the accounts as they are: a password from the keys file that still works is printed
again; one its owner has changed is not reset (printed as changed); an account the file knows nothing of (the file
was deleted, or the demo predates staff accounts) gets a new password, as the admin key does.
"""

from __future__ import annotations

from sqlalchemy import select

from omnijourney.auth import passwords
from omnijourney.auth.models import StaffMember
from omnijourney.auth.staff import add_staff, reset_password
from omnijourney.db import Database

# role, email, name, stores
DEMO_STAFF: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("admin", "admin@demo.example", "Alex Admin", ()),
    ("marketer", "marketer@demo.example", "Mara Marketer", ()),
    ("analyst", "analyst@demo.example", "Ana Analyst", ()),
    ("agent", "agent@demo.example", "Gil Agent", ()),
    ("store_associate", "associate.s01@demo.example", "Sam Associate", ("S01",)),  # Berlin Mitte
)
Logins = dict[str, tuple[str, str]]  # role -> (email, password); "" when its owner changed it


def create(db: Database) -> Logins:
    """The demo's accounts, one per role (the store associate works in S01), with random passwords."""
    logins: Logins = {}
    with db.transaction() as session:
        for role, email, name, stores in DEMO_STAFF:
            _, password = add_staff(session, email=email, role=role, stores=stores, name=name,
                                    must_change_password=False)
            logins[role] = (email, password)
    return logins


def ensure(db: Database, saved: Logins) -> Logins:
    """The logins of a demo served again, given those of its keys file (see the module's docstring)."""
    logins: Logins = {}
    with db.transaction() as session:
        for role, email, name, stores in DEMO_STAFF:
            row = session.scalar(select(StaffMember).where(StaffMember.email == email))
            email_known, password_known = saved.get(role, ("", ""))
            if row is None:
                _, password = add_staff(session, email=email, role=role, stores=stores, name=name,
                                        must_change_password=False)
            elif email_known != email:  # nothing known of it: a new password, as for a lost admin key
                _, password = reset_password(session, email=email, must_change_password=False)
            elif password_known and passwords.verify(password_known, row.password_hash)[0]:
                password = password_known
            else:
                password = ""  # changed by its owner since: left as it is
            logins[role] = (email, password)
    return logins
