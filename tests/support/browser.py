"""Real analytics.js in a real browser: the pinned ``@segment/analytics-next`` bundle, Debian's Chromium, and a
small shop web server on an origin of its own; and a recorder of what the API server receives.

The npm tarball is downloaded once into a cache outside the repository and checked against the integrity
pinned here, so no third-party source is committed and a tampered or re-published tarball fails loudly.
When Chromium, Playwright or the tarball cannot be had the caller skips with the reason, unless
``OMNI_TEST_REQUIRE_BROWSER=1`` (CI), where a missing piece must fail rather than hide behind a skip.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn

import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ANALYTICS_NEXT_VERSION = "1.84.3"
# `npm view @segment/analytics-next@1.84.3 dist.integrity`
ANALYTICS_NEXT_INTEGRITY = (
    "sha512-5l7cPBzScxhfJ0zdcKQI4daDvMIWWUk7hClT1xGRelnHUltIEoQ9w8+ZpFPoWJMpX8D7IA1nVAfJbpiKi3XaKw=="
)
NPM_REGISTRY = "https://registry.npmjs.org"
# The standalone build is what Segment's CDN serves as analytics.min.js for the snippet.
_BUNDLE_MEMBER = "package/dist/umd/standalone.js"
_DOWNLOAD_TIMEOUT_S = 60


class Unavailable(Exception):
    """A piece the browser tests need (Chromium, Playwright, the npm tarball) cannot be had here."""


def browser_required() -> bool:
    """Whether a missing browser piece is an error (``OMNI_TEST_REQUIRE_BROWSER=1``) rather than a skip."""
    return os.environ.get("OMNI_TEST_REQUIRE_BROWSER", "") not in ("", "0")


def unavailable(reason: str) -> NoReturn:
    """Skip the test with ``reason``, or fail it when the browser is required."""
    if browser_required():
        pytest.fail(f"{reason} (OMNI_TEST_REQUIRE_BROWSER is set)", pytrace=False)
    pytest.skip(reason)


def cache_dir() -> Path:
    """Where downloaded test tools live: ``OMNI_TEST_CACHE``, else ``~/.cache/omnijourney-tests``; kept out of
    the repository so that a fresh clone (CI) reuses it and nothing third-party gets committed."""
    explicit = os.environ.get("OMNI_TEST_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "omnijourney-tests"


def integrity_of(data: bytes) -> str:
    """npm's Subresource Integrity string (``sha512-<base64>``) of ``data``."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _tarball_url(version: str) -> str:
    return f"{NPM_REGISTRY}/@segment/analytics-next/-/analytics-next-{version}.tgz"


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise Unavailable(f"cannot download {url}: {exc}") from None


def analytics_next_tarball(version: str = ANALYTICS_NEXT_VERSION,
                           integrity: str = ANALYTICS_NEXT_INTEGRITY) -> bytes:
    """The npm tarball of ``@segment/analytics-next``, from the cache or downloaded once into it.

    Raises :class:`Unavailable` when it is not cached and cannot be downloaded; fails the test when the
    bytes do not match ``integrity`` (a wrong pin or a tampered download is never a reason to skip).
    """
    path = cache_dir() / f"analytics-next-{version}.tgz"
    if path.exists():
        data = path.read_bytes()
        if integrity_of(data) == integrity:
            return data
        path.unlink()  # a truncated or stale cache entry: fetch it again
    data = _download(_tarball_url(version))
    got = integrity_of(data)
    if got != integrity:
        pytest.fail(f"@segment/analytics-next {version} from {NPM_REGISTRY} has integrity {got}, "
                    f"expected {integrity}", pytrace=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name then renamed: a run killed mid-write leaves no half file behind.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return data


def analytics_js() -> bytes:
    """The standalone analytics.js bundle (what a shop's snippet loads as ``analytics.min.js``) of the pinned
    ``@segment/analytics-next``; raises :class:`Unavailable` when the tarball cannot be had."""
    with tarfile.open(fileobj=io.BytesIO(analytics_next_tarball()), mode="r:gz") as tar:
        member = tar.extractfile(_BUNDLE_MEMBER)  # the pinned tarball has it: a KeyError means a wrong pin
        assert member is not None, f"{_BUNDLE_MEMBER} is not a file in the tarball"
        return member.read()


def chromium_executable() -> str:
    """Debian's Chromium (``OMNI_TEST_CHROMIUM`` overrides); raises :class:`Unavailable` when absent."""
    explicit = os.environ.get("OMNI_TEST_CHROMIUM")
    if explicit:
        if os.access(explicit, os.X_OK):
            return explicit
        raise Unavailable(f"OMNI_TEST_CHROMIUM={explicit} is not an executable")
    for candidate in (shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise Unavailable("Chromium not found (Debian: apt-get install chromium)")


class _ShopHandler(BaseHTTPRequestHandler):
    files: dict[str, tuple[str, bytes]] = {}

    def do_GET(self) -> None:
        found = self.files.get(self.path.split("?", 1)[0])
        if found is None:
            self.send_error(404)
            return
        content_type, body = found
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the test's assertions say what went wrong; request lines would only bury them


@contextmanager
def shop_server(files: dict[str, tuple[str, bytes]]) -> Iterator[str]:
    """Serve ``files`` (path -> (content type, body)) on a free port; yields the shop's origin.

    The origin is ``http://localhost:PORT``: another host name and port than the API's ``127.0.0.1``,
    so the browser treats every call to the API as cross-origin and CORS is really exercised.
    """
    handler = type("ShopHandler", (_ShopHandler,), {"files": dict(files)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass(frozen=True)
class Seen:
    """One HTTP request as the server received it, and its answer."""

    method: str
    path: str
    origin: str | None
    content_type: str | None
    status: int
    allow_origin: str | None  # the answer's Access-Control-Allow-Origin
    at: float  # time.monotonic() when the answer started


def record_requests(app: FastAPI) -> list[Seen]:
    """Wrap ``app`` (before it starts serving) so that every HTTP request it answers is appended to the
    returned list. A browser's own log misses CORS preflights and the keepalive requests a page sends as
    it unloads; the server sees them all."""
    log: list[Seen] = []

    class Recorder:
        def __init__(self, inner: ASGIApp) -> None:
            self.inner = inner

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await self.inner(scope, receive, send)
                return
            asked = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}

            async def recording_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    answered = {k.decode("latin-1"): v.decode("latin-1") for k, v in message.get("headers", [])}
                    log.append(Seen(scope["method"], scope["path"], asked.get("origin"), asked.get("content-type"),
                                    message["status"], answered.get("access-control-allow-origin"),
                                    time.monotonic()))
                await send(message)

            await self.inner(scope, receive, recording_send)

    app.add_middleware(Recorder)
    return log


@contextmanager
def chromium(*args: str) -> Iterator[Any]:
    """Debian's Chromium under Playwright, headless, with extra command-line ``args``; when a piece is missing the
    test is skipped with the reason (an error under ``OMNI_TEST_REQUIRE_BROWSER``)."""
    try:
        executable = chromium_executable()
        from playwright.sync_api import sync_playwright
    except Unavailable as exc:
        reason = str(exc)
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[test]')"
    else:
        with sync_playwright() as pw:
            try:
                launched = pw.chromium.launch(executable_path=executable, headless=True, args=list(args))
            except Exception as exc:
                reason = f"Chromium at {executable} does not start: {exc}"
            else:
                try:
                    yield launched
                finally:
                    launched.close()
                return
    unavailable(reason)  # outside the except block: the report shows the reason, not a chained traceback


def free_port() -> int:
    """A TCP port nobody listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(app: ASGIApp) -> Iterator[str]:
    """``app`` served by a real uvicorn on a free local port, in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
