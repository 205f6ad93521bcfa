"""Server API keys, scopes and the one permission check (staff accounts will join it)."""
