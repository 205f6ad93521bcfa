"""Segment HTTP Tracking API: /v1/track, /v1/identify, ... /v1/batch and the one-letter paths."""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    """Mount the tracking paths (and their CORS handling) on ``app``."""
