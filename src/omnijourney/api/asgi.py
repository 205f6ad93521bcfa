"""ASGI entry point for serving (``omni serve``; with ``--workers N`` each process imports it)."""

from omnijourney.api.app import create_app
from omnijourney.core.runtime import tune_gc

app = create_app()
tune_gc()
