"""Staff accounts and logged-in clients for tests of sessions, roles and (later) console pages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fastapi.testclient import TestClient

from omnijourney.auth import staff as staff_service
from omnijourney.auth.sessions import COOKIE, CSRF_HEADER
from omnijourney.db import Database


@dataclass
class Account:
    email: str
    password: str
    role: str
    id: str


def staff(db: Database, role: str = "admin", *, email: str | None = None, stores: Sequence[str] = (),
          must_change: bool = False, name: str | None = None) -> Account:
    """A staff account (the store channels in ``stores`` must exist); its password is returned for logging in."""
    with db.transaction() as s:
        row, password = staff_service.add_staff(s, email=email or f"{role}@shop.example", role=role, stores=stores,
                                                name=name, must_change_password=must_change)
    return Account(email=row.email, password=password, role=role, id=row.id)


@dataclass
class Login:
    """A logged-in session: its cookie value and CSRF token, and the headers that send them."""

    token: str
    csrf: str
    body: dict

    @property
    def headers(self) -> dict[str, str]:
        """Cookie and CSRF header for one request (for clients whose cookie jar is not used)."""
        return {"Cookie": f"{COOKIE}={self.token}", CSRF_HEADER: self.csrf}

    @property
    def cookie_only(self) -> dict[str, str]:
        return {"Cookie": f"{COOKIE}={self.token}"}


def login(client: TestClient, account: Account, *, keep_cookie: bool = False) -> Login:
    """Log ``account`` in through the API; the client's cookie jar is left empty unless ``keep_cookie``."""
    r = client.post("/api/v1/session", json={"email": account.email, "password": account.password})
    assert r.status_code == 201, r.text
    token = r.cookies[COOKIE]
    if not keep_cookie:
        client.cookies.clear()
    return Login(token=token, csrf=r.json()["csrf_token"], body=r.json())
