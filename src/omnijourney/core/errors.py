"""Typed domain errors: each carries its HTTP status and a stable code; routers never build messages."""

from __future__ import annotations

from typing import Any


class OmniError(Exception):
    """Base of every error a user can cause. ``field`` names the input at fault, if any."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None,
                 details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details
        if code:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        if self.details is not None:
            body["details"] = self.details
        return body


class Invalid(OmniError):
    status = 422
    code = "invalid"


class NotFound(OmniError):
    status = 404
    code = "not_found"


class Conflict(OmniError):
    status = 409
    code = "conflict"


class Unauthorized(OmniError):
    status = 401
    code = "unauthorized"


class Forbidden(OmniError):
    status = 403
    code = "forbidden"


class TooBusy(OmniError):
    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
