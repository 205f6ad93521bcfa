"""Omnijourney: one backend for every channel of a retailer."""

__version__ = "0.1.0"
