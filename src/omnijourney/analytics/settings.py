"""Analytics settings, ``OMNI_ANALYTICS__...`` (read by ``omnijourney.config``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class AnalyticsSettings(BaseModel):
    """Where analytics run and how the embedded store follows the timeline.

    ``backend``: ``duckdb`` keeps an embedded DuckDB store beside the application database, fed incrementally from
    the event feed by a background job; ``app`` runs the same expressions directly on the application database
    (PostgreSQL only). ``auto`` (the default) is ``duckdb`` on an SQLite application database (the one-machine
    deployment, ``omni demo``) and ``app`` on PostgreSQL, where several processes and machines serve the API and a
    DuckDB file belongs to one process at a time (choose ``duckdb`` there for a single-process server).
    """

    backend: Literal["auto", "duckdb", "app"] = "auto"
    path: str | None = None  # the DuckDB file; default beside an SQLite database (<name>-analytics.duckdb), else here
    sync: bool = True  # the background sync job (omni serve / omni demo with the embedded worker)
    sync_interval_s: float = Field(default=5.0, gt=0)  # pause between two runs of the sync job
    sync_budget_s: float = Field(default=20.0, gt=0)  # one run stops after this long (the next one goes on)
    batch_pages: int = Field(default=20, ge=1)  # feed pages (of up to 1,000 events) per DuckDB transaction


def effective_backend(settings: AnalyticsSettings, dialect: str) -> str:
    """``duckdb`` or ``app`` for an application database of ``dialect`` (``auto`` resolved)."""
    if settings.backend == "auto":
        return "app" if dialect == "postgresql" else "duckdb"
    return settings.backend
