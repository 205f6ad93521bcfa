"""ASGI entry point for multi-process serving (``omni serve --workers N``)."""

from omnijourney.api.app import create_app

app = create_app()
