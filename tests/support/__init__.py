"""Helpers for tests that drive real third-party clients (browsers, SDKs) against a live server."""
