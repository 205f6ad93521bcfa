"""analytics.js for the demo channels: the pinned ``@segment/analytics-next`` bundle, never in the repository.

The storefront, the app view and the POS send their events as a real channel does, with Segment's own browser
library pointed at our tracking API. The library is not a Python package, so it is not installed with us: the npm
tarball of the pinned version is downloaded once (``omni demo`` does it, or the browser tests) into a cache outside
the repository and checked against the pinned integrity; from then on the pages work offline. Without it the pages
still work and say that tracking is off (the domain's own events, carts and orders, still reach the timeline).

Where it is looked for, in order: ``OMNI_SHOP_ANALYTICS_JS`` (a path to the tarball), ``OMNI_CACHE_DIR`` (else
``~/.cache/omnijourney``), and the browser tests' cache (``OMNI_TEST_CACHE``, else ``~/.cache/omnijourney-tests``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

VERSION = "1.84.3"
# `npm view @segment/analytics-next@1.84.3 dist.integrity` (the same pin as tests/support/browser.py)
INTEGRITY = "sha512-5l7cPBzScxhfJ0zdcKQI4daDvMIWWUk7hClT1xGRelnHUltIEoQ9w8+ZpFPoWJMpX8D7IA1nVAfJbpiKi3XaKw=="
TARBALL = f"analytics-next-{VERSION}.tgz"
URL = f"https://registry.npmjs.org/@segment/analytics-next/-/{TARBALL}"
MEMBER = "package/dist/umd/standalone.js"  # what Segment's CDN serves as analytics.min.js for the snippet


@dataclass(frozen=True)
class Bundle:
    """The browser bundle when it could be had (``js``), else why not (``reason``, shown on the pages)."""

    js: bytes | None
    reason: str = ""


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def cache_dir() -> Path:
    """Where ``omni demo`` keeps the tarball: ``OMNI_CACHE_DIR``, else ``~/.cache/omnijourney``."""
    explicit = os.environ.get("OMNI_CACHE_DIR")
    return Path(explicit) if explicit else _cache_home() / "omnijourney"


def candidates() -> list[Path]:
    """The places the tarball may be, in the order they are tried."""
    out = []
    explicit = os.environ.get("OMNI_SHOP_ANALYTICS_JS")
    if explicit:
        out.append(Path(explicit))
    out.append(cache_dir() / TARBALL)
    tests = os.environ.get("OMNI_TEST_CACHE")
    out.append((Path(tests) if tests else _cache_home() / "omnijourney-tests") / TARBALL)
    return out


def integrity_of(data: bytes) -> str:
    """npm's Subresource Integrity string (``sha512-<base64>``) of ``data``."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _extract(data: bytes) -> bytes | None:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            member = tar.extractfile(MEMBER)
            return member.read() if member is not None else None
    except (tarfile.TarError, KeyError, OSError):
        return None


def load() -> Bundle:
    """The bundle from the first good tarball found (a file whose integrity differs is ignored, never used)."""
    for path in candidates():
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if integrity_of(data) != INTEGRITY:
            continue
        js = _extract(data)
        if js is not None:
            return Bundle(js)
    return Bundle(None, f"analytics.js (@segment/analytics-next {VERSION}) is not in the cache "
                        f"({cache_dir()}): `omni demo` downloads it once from npm")


def fetch(timeout_s: float = 20.0) -> str:
    """Make sure the tarball is cached (download it once, integrity checked); returns what happened, in words."""
    found = load()
    if found.js is not None:
        return f"analytics.js {VERSION} cached"
    try:
        with urllib.request.urlopen(URL, timeout=timeout_s) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as exc:
        return f"tracking off in the pages: analytics.js could not be downloaded ({exc})"
    if integrity_of(data) != INTEGRITY:
        return f"tracking off in the pages: the downloaded analytics.js {VERSION} does not match its pinned integrity"
    target = cache_dir() / TARBALL
    target.parent.mkdir(parents=True, exist_ok=True)
    # a temporary name, then a rename: an interrupted download leaves no half file to be found later
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TARBALL, suffix=".part")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, target)
    return f"analytics.js {VERSION} downloaded once into {target.parent}"
