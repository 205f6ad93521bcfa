"""Staff roles and the scopes each one grants: the one table that decides what a person may do, in the API and in
the console alike (a staff member's :class:`~omnijourney.auth.service.Principal` carries their role's scopes, so
``require(scope)`` and every console page ask the same question of a person as of an API key).

Scopes are ``area:read`` / ``area:write`` (write implies read) over ``auth.service.AREAS``, or ``admin`` (all).
A store associate is also scoped to stores: the principal's ``stores`` names them, and routes that act in a
channel or at a location refuse another store's code (``Principal.check_store``). Every other role works in all
stores (``stores`` is None).
"""

from __future__ import annotations

from omnijourney.auth.service import validate_scope
from omnijourney.core.errors import Invalid

ADMIN, MARKETER, ANALYST, AGENT, STORE_ASSOCIATE = "admin", "marketer", "analyst", "agent", "store_associate"
ROLES = (ADMIN, MARKETER, ANALYST, AGENT, STORE_ASSOCIATE)

ROLE_SCOPES: dict[str, frozenset[str]] = {
    # everything, staff accounts and API keys included
    ADMIN: frozenset({"admin"}),
    # the customer base, the catalog and its prices, campaigns and journeys, and what they achieved
    MARKETER: frozenset({"customers:write", "events:read", "catalog:write", "pricing:write", "journeys:write",
                         "analytics:read"}),
    # reads everything the analyses need; changes nothing (no keys, sources' secrets are read-only too)
    ANALYST: frozenset({"analytics:read", "customers:read", "events:read", "sources:read", "catalog:read",
                        "pricing:read", "carts:read", "inventory:read", "orders:read", "payments:read",
                        "loyalty:read", "conversations:read", "journeys:read"}),
    # the contact center: the whole customer, their carts and orders (returns, cancellations), the inbox
    AGENT: frozenset({"customers:write", "carts:write", "orders:write", "conversations:write", "payments:read",
                      "inventory:read", "catalog:read", "pricing:read", "loyalty:read"}),
    # the till and the shelf of their own stores: carts, checkout and orders, stock, payments; looks customers up
    STORE_ASSOCIATE: frozenset({"carts:write", "orders:write", "inventory:write", "payments:write",
                                "customers:read", "catalog:read", "pricing:read"}),
}
STORE_SCOPED = frozenset({STORE_ASSOCIATE})  # roles that work in the stores named on their account only

for _role, _scopes in ROLE_SCOPES.items():  # a typo in the table fails at import, not at the first request
    for _scope in _scopes:
        validate_scope(_scope)


def validate_role(role: str) -> str:
    """``role`` if it is one of :data:`ROLES`, else ``Invalid`` naming them."""
    if role not in ROLE_SCOPES:
        raise Invalid(f"unknown role {role!r}: one of {', '.join(ROLES)}", field="role")
    return role


def scopes_for(role: str) -> frozenset[str]:
    """The scopes ``role`` grants (none for a role that no longer exists)."""
    return ROLE_SCOPES.get(role, frozenset())
