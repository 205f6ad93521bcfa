"""Fixtures of the console's tests: one seeded SQLite database and app per module (``world``), served by a real
uvicorn (``served``), and Debian's Chromium through Playwright (``browser``), one per module.

SQLite only: the pages read through the domain services that every other test runs on both engines; what is
proven here is the pages themselves. Cheap password hashes (still argon2id) keep the many logins quick.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from omnijourney.api.app import create_app
from omnijourney.config import JobSettings, Settings
from omnijourney.db import Database
from tests.auth.conftest import use_cheap_hashes
from tests.console.seed import World, build
from tests.support.browser import chromium
from tests.support.browser import served as serve


@pytest.fixture(scope="module")
def cheap() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        use_cheap_hashes(mp)
        yield


@pytest.fixture(scope="module")
def world(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory, cheap: None) -> Iterator[World]:
    path = tmp_path_factory.mktemp("console") / "omni.db"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite:///{path}")
    settings = Settings(database_url=f"sqlite:///{path}", jobs=JobSettings(embedded=False))
    app = create_app(db, settings)
    with TestClient(app) as client:
        built = build(db, client)
    built.app = app
    yield built
    db.dispose()


@pytest.fixture(scope="module")
def served(world: World) -> Iterator[str]:
    """The world's app served by uvicorn on a free local port; its base URL."""
    with serve(world.app) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless (skipped with the reason when missing, an error under OMNI_TEST_REQUIRE_BROWSER)."""
    with chromium() as launched:
        yield launched
