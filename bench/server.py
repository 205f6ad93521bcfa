"""Running ``omni serve`` as a subprocess for the HTTP benchmarks."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def omni_server(database_url: str, port: int, workers: int) -> Iterator[subprocess.Popen]:
    """``omni serve`` on ``database_url``, healthy when the block starts, stopped when it ends."""
    env = {**os.environ, "OMNI_DATABASE_URL": database_url}
    server = subprocess.Popen([sys.executable, "-m", "omnijourney.cli", "serve", "--port", str(port),
                               "--workers", str(workers)], env=env,
                              stdout=subprocess.DEVNULL,
                              stderr=None if os.environ.get("BENCH_SERVER_LOG") else subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("omni serve did not start") from None
                time.sleep(0.2)
        yield server
    finally:
        server.terminate()
        server.wait(timeout=30)
