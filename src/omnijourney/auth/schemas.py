"""Request and response shapes of the keys and session APIs."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class KeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(min_length=1)


class KeyRead(BaseModel):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyRead):
    key: str  # shown once


class LoginCreate(BaseModel):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024, description="the one-time password at first")
    new_password: str = Field(min_length=1, max_length=1024, description="at least 12 characters")


class SessionRead(BaseModel):
    """Who is calling: a staff member logged in with the session cookie, or a server API key."""

    kind: str = Field(description="staff (a person's session) or key (a server API key)")
    id: str
    name: str
    email: str | None = None
    role: str | None = None
    scopes: list[str]
    stores: list[str] | None = Field(default=None, description="the stores a store associate works in; null: all")
    must_change_password: bool = False
    csrf_token: str | None = Field(default=None, description="send it with every POST, PUT, PATCH and DELETE made "
                                                             "with the session cookie: X-CSRF-Token header or "
                                                             "csrf_token form field")
    expires_at: datetime | None = Field(default=None, description="when the session ends if idle from now on")
