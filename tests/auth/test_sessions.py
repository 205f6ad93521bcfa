"""Staff sessions: login, logout, expiry, idle timeout, lockout, CSRF on the cookie, the forced password change,
and passwords that are never kept or logged in clear. Each test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from omnijourney.api.app import create_app
from omnijourney.auth import passwords
from omnijourney.auth.models import StaffMember, StaffSession
from omnijourney.auth.sessions import COOKIE, CSRF_HEADER
from omnijourney.config import JobSettings, Settings, StaffSettings
from omnijourney.core.time import utcnow
from omnijourney.db import Database
from omnijourney.models import metadata
from tests.conftest import make_key
from tests.factories_catalog import channel
from tests.factories_staff import login, staff

FAILED = "login_failed"


def _session_rows(db: Database) -> list[StaffSession]:
    with db.transaction(write=False) as s:
        return list(s.scalars(select(StaffSession)))


def _age(db: Database, **columns: timedelta) -> None:
    """Move every session's (or account's) times into the past, as if that much time had gone by."""
    now = utcnow()
    with db.transaction() as s:
        if "locked_until" in columns:
            s.execute(update(StaffMember).values(locked_until=now - columns["locked_until"]))
        else:
            s.execute(update(StaffSession).values({k: now - v for k, v in columns.items()}))


def test_login_answers_who_and_sets_a_session_cookie(client: TestClient, db: Database) -> None:
    channel(db, "S01", "store")
    ann = staff(db, "store_associate", email="  Ann@Shop.Example ", stores=["S01"], name="Ann Berg")
    r = client.post("/api/v1/session", json={"email": "ANN@shop.example", "password": ann.password})
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["kind"], body["email"], body["name"], body["role"]) == ("staff", "ann@shop.example", "Ann Berg",
                                                                       "store_associate")
    assert body["stores"] == ["S01"] and "orders:write" in body["scopes"] and body["csrf_token"]
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
    assert client.get("/api/v1/session").json()["csrf_token"] == body["csrf_token"]  # the page can ask again
    assert client.get("/api/v1/orders").status_code == 200  # the cookie alone authenticates a read


def test_the_cookie_is_secure_when_the_public_url_is_https(db: Database) -> None:
    account = staff(db, "analyst")
    settings = Settings(database_url="sqlite://", public_url="https://omni.shop.example",
                        jobs=JobSettings(embedded=False))
    with TestClient(create_app(db, settings)) as client:
        r = client.post("/api/v1/session", json={"email": account.email, "password": account.password})
    assert r.status_code == 201
    assert "Secure" in r.headers["set-cookie"]


def test_wrong_password_and_unknown_email_get_one_answer_after_one_hash_check(
        client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    account = staff(db, "agent")
    checks: list[str] = []
    real = passwords.verify
    monkeypatch.setattr(passwords, "verify", lambda p, h: checks.append(h) or real(p, h))
    wrong = client.post("/api/v1/session", json={"email": account.email, "password": "not-the-password"})
    unknown = client.post("/api/v1/session", json={"email": "nobody@shop.example", "password": "not-the-password"})
    not_an_email = client.post("/api/v1/session", json={"email": "nobody", "password": "x"})
    for r in (wrong, unknown, not_an_email):
        assert (r.status_code, r.json()["code"]) == (401, FAILED)
        assert "set-cookie" not in r.headers
    assert wrong.json()["message"] == unknown.json()["message"] == not_an_email.json()["message"]
    # the same work in every case: one argon2 check, against a dummy hash when there is no account
    assert len(checks) == 3 and all(h.startswith("$argon2id$") for h in checks)


def test_logout_ends_the_session_and_clears_the_cookie(client: TestClient, db: Database) -> None:
    me = login(client, staff(db, "marketer"))
    assert client.get("/api/v1/session", headers=me.cookie_only).status_code == 200
    r = client.delete("/api/v1/session", headers=me.cookie_only)  # no CSRF token: another site cannot log you out
    assert (r.status_code, r.json()["code"]) == (403, "csrf_failed")
    r = client.delete("/api/v1/session", headers=me.headers)
    assert r.status_code == 204
    assert r.headers["set-cookie"].startswith(f'{COOKIE}=""') and "Max-Age=0" in r.headers["set-cookie"]
    assert _session_rows(db) == []
    r = client.get("/api/v1/customers", headers=me.cookie_only)
    assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
    assert client.delete("/api/v1/session").status_code == 204  # nothing to end: still fine


def test_a_session_ends_at_its_expiry_and_after_the_idle_timeout(client: TestClient, db: Database) -> None:
    account = staff(db, "analyst")
    me = login(client, account)
    _age(db, expires_at=timedelta(seconds=1))
    r = client.get("/api/v1/orders", headers=me.cookie_only)
    assert (r.status_code, r.json()["code"]) == (401, "session_expired")

    me = login(client, account)
    _age(db, last_seen_at=timedelta(minutes=31))  # the default idle timeout is 30 minutes
    r = client.get("/api/v1/orders", headers=me.cookie_only)
    assert (r.status_code, r.json()["code"]) == (401, "session_expired")


def test_using_a_session_keeps_it_alive(client: TestClient, db: Database) -> None:
    me = login(client, staff(db, "analyst"))
    _age(db, last_seen_at=timedelta(minutes=29))
    assert client.get("/api/v1/orders", headers=me.cookie_only).status_code == 200  # notes the use...
    [row] = [r for r in _session_rows(db) if r.expires_at > utcnow()]
    assert utcnow() - row.last_seen_at < timedelta(minutes=1)
    _age(db, last_seen_at=timedelta(minutes=29))
    assert client.get("/api/v1/orders", headers=me.cookie_only).status_code == 200  # ... so it is still alive


def test_repeated_wrong_passwords_lock_the_account_for_a_while(client: TestClient, db: Database) -> None:
    account = staff(db, "agent")
    first = client.post("/api/v1/session", json={"email": account.email, "password": "guess-1"}).json()
    for i in range(2, 6):
        r = client.post("/api/v1/session", json={"email": account.email, "password": f"guess-{i}"})
        assert r.status_code == 401
    # locked: the right password is refused too, with the very same answer (nothing tells an attacker more)
    r = client.post("/api/v1/session", json={"email": account.email, "password": account.password})
    assert (r.status_code, r.json()) == (401, first)
    _age(db, locked_until=timedelta(seconds=1))  # the lockout is over
    assert client.post("/api/v1/session", json={"email": account.email, "password": account.password}).status_code \
        == 201
    with db.transaction(write=False) as s:
        row = s.scalar(select(StaffMember))
        assert (row.failed_logins, row.locked_until) == (0, None) and row.last_login_at is not None


def test_a_successful_login_resets_the_count_of_failures(client: TestClient, db: Database) -> None:
    account = staff(db, "agent")
    for _ in range(4):
        client.post("/api/v1/session", json={"email": account.email, "password": "wrong"})
    login(client, account)
    for _ in range(4):
        client.post("/api/v1/session", json={"email": account.email, "password": "wrong"})
    login(client, account)  # 8 failures, never 5 in a row: not locked


def test_lockout_settings_apply(db: Database) -> None:
    settings = Settings(database_url="sqlite://", jobs=JobSettings(embedded=False),
                        staff=StaffSettings(max_failed_logins=2))
    account = staff(db, "agent")
    with TestClient(create_app(db, settings)) as client:
        for _ in range(2):
            client.post("/api/v1/session", json={"email": account.email, "password": "wrong"})
        r = client.post("/api/v1/session", json={"email": account.email, "password": account.password})
    assert r.status_code == 401


def test_unsafe_methods_with_the_cookie_need_the_csrf_token(client: TestClient, db: Database) -> None:
    me = login(client, staff(db, "admin"))
    new_key = {"name": "till", "scopes": ["carts:write"]}
    for headers in (me.cookie_only, {**me.cookie_only, CSRF_HEADER: "forged"},
                    {**me.cookie_only, CSRF_HEADER: me.csrf[:-1]}):
        r = client.post("/api/v1/keys", json=new_key, headers=headers)
        assert (r.status_code, r.json()["code"], r.json()["field"]) == (403, "csrf_failed", "csrf_token")
    assert client.post("/api/v1/keys", json=new_key, headers=me.headers).status_code == 201
    # a form posted by a page carries it as a hidden field instead
    r = client.post("/api/v1/keys", content=f"csrf_token={me.csrf}&name=x",
                    headers={**me.cookie_only, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 422  # past the CSRF check; the keys API itself takes JSON
    r = client.post("/api/v1/keys", content="csrf_token=forged&name=x",
                    headers={**me.cookie_only, "Content-Type": "application/x-www-form-urlencoded"})
    assert (r.status_code, r.json()["code"]) == (403, "csrf_failed")
    # reads need none
    assert client.get("/api/v1/keys", headers=me.cookie_only).status_code == 200


def test_a_bearer_key_needs_no_csrf_token_even_beside_a_cookie(client: TestClient, db: Database) -> None:
    me = login(client, staff(db, "analyst"))
    key = {"Authorization": f"Bearer {make_key(db, 'admin')}"}
    body = {"name": "till", "scopes": ["carts:write"]}
    assert client.post("/api/v1/keys", json=body, headers=key).status_code == 201
    # the key decides who calls (an admin key), not the analyst's cookie, and needs no token
    assert client.post("/api/v1/keys", json=body, headers={**key, **me.cookie_only}).status_code == 201
    assert client.get("/api/v1/session", headers=key).json()["kind"] == "key"


def test_a_one_time_password_must_be_changed_before_anything_else(client: TestClient, db: Database) -> None:
    account = staff(db, "agent", must_change=True)
    me = login(client, account)
    assert me.body["must_change_password"] is True
    r = client.get("/api/v1/customers", headers=me.cookie_only)
    assert (r.status_code, r.json()["code"]) == (403, "password_change_required")
    assert client.get("/api/v1/session", headers=me.cookie_only).json()["must_change_password"] is True
    other = login(client, account)  # a second browser, logged in with the same one-time password

    change = "/api/v1/session/password"
    r = client.post(change, json={"current_password": account.password, "new_password": "a new password!"},
                    headers=me.cookie_only)
    assert (r.status_code, r.json()["code"]) == (403, "csrf_failed")
    r = client.post(change, json={"current_password": "wrong", "new_password": "a new password!"},
                    headers=me.headers)
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (422, "wrong_password", "current_password")
    for weak in ("short", account.password, account.email, "aaaaaaaaaaaaaaa"):
        r = client.post(change, json={"current_password": account.password, "new_password": weak},
                        headers=me.headers)
        assert (r.status_code, r.json()["code"], r.json()["field"]) == (422, "weak_password", "new_password"), weak
    r = client.post(change, json={"current_password": account.password, "new_password": "a new password!"},
                    headers=me.headers)
    assert r.status_code == 200 and r.json()["must_change_password"] is False
    assert client.get("/api/v1/customers", headers=me.cookie_only).status_code == 200
    assert client.get("/api/v1/customers", headers=other.cookie_only).status_code == 401  # other sessions end
    refused = client.post("/api/v1/session", json={"email": account.email, "password": account.password})
    assert refused.status_code == 401  # the one-time password is gone
    assert client.post("/api/v1/session", json={"email": account.email,
                                                "password": "a new password!"}).status_code == 201


def test_a_key_has_no_password_to_change(client: TestClient, db: Database) -> None:
    key = {"Authorization": f"Bearer {make_key(db, 'admin')}"}
    r = client.post("/api/v1/session/password", json={"current_password": "x", "new_password": "y" * 12},
                    headers=key)
    assert (r.status_code, r.json()["code"]) == (403, "not_staff")


def test_disabling_or_resetting_an_account_ends_its_sessions(client: TestClient, db: Database) -> None:
    from omnijourney.auth import staff as staff_service

    account = staff(db, "marketer")
    me = login(client, account)
    with db.transaction() as s:
        _, new_password = staff_service.reset_password(s, email=account.email)
    assert client.get("/api/v1/session", headers=me.cookie_only).status_code == 401
    me = login(client, account.__class__(account.email, new_password, account.role, account.id))
    assert me.body["must_change_password"] is True
    with db.transaction() as s:
        staff_service.set_active(s, email=account.email, active=False)
    assert client.get("/api/v1/session", headers=me.cookie_only).status_code == 401
    r = client.post("/api/v1/session", json={"email": account.email, "password": new_password})
    assert (r.status_code, r.json()["code"]) == (401, FAILED)


def test_passwords_and_session_tokens_are_never_kept_or_logged_in_clear(
        client: TestClient, db: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    account = staff(db, "admin", must_change=True)
    client.post("/api/v1/session", json={"email": account.email, "password": "a wrong password"})
    me = login(client, account)
    client.post("/api/v1/session/password", json={"current_password": account.password,
                                                  "new_password": "my chosen password"}, headers=me.headers)
    client.post("/api/v1/session/password", json={"current_password": "my chosen password",
                                                  "new_password": "short"}, headers=me.headers)
    secrets = [account.password, "a wrong password", "my chosen password", me.token]
    with db.engine.connect() as conn:  # every row of every table, as text
        dump = "\n".join(str(row) for table in metadata.sorted_tables
                         for row in conn.execute(text(f'SELECT * FROM "{table.name}"')))
    assert account.email in dump  # (the dump does hold the accounts)
    for secret in secrets:
        assert secret not in dump
        assert secret not in caplog.text
    with db.transaction(write=False) as s:
        assert s.scalar(select(StaffMember.password_hash)).startswith("$argon2id$")


def test_real_hashes_use_argon2id_with_the_library_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the other tests here use cheap parameters (tests/auth/conftest.py)
    hashed = passwords.hash_password("correct horse battery")
    params = dict(p.split("=") for p in hashed.split("$")[3].split(","))  # $argon2id$v=19$m=...,t=...,p=...$
    assert hashed.startswith("$argon2id$") and int(params["m"]) >= 19456 and int(params["t"]) >= 2  # OWASP's floor
    assert passwords.verify("correct horse battery", hashed) == (True, None)
    assert passwords.verify("correct horse battery!", hashed)[0] is False
    assert passwords.hash_password("correct horse battery") != hashed  # salted
    assert passwords.verify("x", "not a hash") == (False, None)


def test_ended_sessions_are_pruned_by_a_job(client: TestClient, db: Database) -> None:
    from tests.factories import run_jobs

    account = staff(db, "analyst")
    login(client, account)
    live = login(client, account)
    with db.transaction() as s:  # the first one ended an hour ago; the prune job is due
        s.execute(update(StaffSession).where(StaffSession.token_hash != _hash(live.token))
                  .values(expires_at=utcnow() - timedelta(hours=1)))
        s.execute(text("UPDATE jobs SET run_at = :t WHERE kind = 'auth.prune_sessions'"),
                  {"t": utcnow() - timedelta(seconds=1)})
    assert run_jobs(db) == 1
    assert [r.token_hash for r in _session_rows(db)] == [_hash(live.token)]
    assert client.get("/api/v1/session", headers=live.cookie_only).status_code == 200


def _hash(token: str) -> str:
    from omnijourney.auth.sessions import hash_token

    return hash_token(token)
