"""Workers: run due jobs. Embedded in ``omni serve`` / ``omni demo`` (a thread), or ``omni worker`` processes.

Each worker claims a few due jobs at a time, runs each in its own transaction (the handler's changes and the
job's deletion commit together), renews the lease on what it runs, and gives back jobs of workers that died.
It sleeps between polls unless a transaction of its own process just enqueued work.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid

from omnijourney.config import JobSettings
from omnijourney.db import Database
from omnijourney.jobs import service
from omnijourney.jobs.service import Claimed, LeaseLost

log = logging.getLogger(__name__)


class Worker:
    """Claims and runs jobs from ``db``. :meth:`run_once` for one round; :meth:`start` for a background thread."""

    def __init__(self, db: Database, *, name: str | None = None, batch: int = 10, poll_s: float = 0.5,
                 lease_s: float = 60.0) -> None:
        self.db = db
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.batch = batch
        self.poll_s = poll_s
        self.lease_s = lease_s
        self.ran = 0
        self.failed = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe = None

    def run_once(self) -> int:
        """Claim due jobs and run them; returns how many were claimed."""
        with self.db.transaction() as session:
            claimed = service.claim(session, self.name, self.batch)
        for job in claimed:
            self._run(job)
        return len(claimed)

    def _run(self, job: Claimed) -> None:
        try:
            spec = service.kind(job.kind)
            if spec.external:  # calls another system: no transaction (no lock) open meanwhile
                with service.running(job, self.name) as state:
                    spec.handler(self.db, job.args)
                if not state.completed:  # else the handler's last transaction deleted it (service.complete)
                    with self.db.transaction() as session:
                        service.finish(session, job, self.name)
                self.ran += 1
                return
            with self.db.transaction() as session:
                service.relax_durability(session)
                service.kind(job.kind).handler(session, job.args)
                service.finish(session, job, self.name)
            self.ran += 1
        except LeaseLost:
            log.warning("job %s (%s) was taken over by another worker; this run was rolled back", job.id, job.kind)
        except Exception:
            self.failed += 1
            error = traceback.format_exc()
            with self.db.transaction() as session:
                status = service.fail(session, job, self.name, error)
            log.warning("job %s (%s) failed, attempt %s of %s, now %s:\n%s", job.id, job.kind, job.attempts,
                        job.max_attempts, status, error)

    def drain(self, *, timeout_s: float = 30.0) -> int:
        """Run until no job is due (tests, the demo build); returns how many ran."""
        deadline = time.monotonic() + timeout_s
        total = 0
        while (n := self.run_once()) and time.monotonic() < deadline:
            total += n
        return total

    def housekeeping(self) -> None:
        """Renew our leases; give back jobs whose worker died."""
        with self.db.transaction() as session:
            service.heartbeat(session, self.name)
            if reclaimed := service.reclaim(session, self.lease_s):
                log.warning("%s job(s) of a stopped worker given back (to run again, or failed if out of attempts)",
                            reclaimed)

    def _keep_leases(self) -> None:
        # beside the job loop, not between its rounds: a handler (or a batch of them) may run longer than the lease,
        # and a live worker must not have its jobs given to another one meanwhile
        while True:
            try:
                self.housekeeping()
            except Exception:  # a database hiccup: the next renewal comes well within the lease
                log.exception("job worker %s: renewing leases failed", self.name)
            if self._stop.wait(self.lease_s / 3):
                return

    def run_forever(self) -> None:
        """Poll until :meth:`stop`, renewing the leases of the jobs held in a thread of its own."""
        keeper = threading.Thread(target=self._keep_leases, name=f"omni-worker-leases-{self.name}", daemon=True)
        keeper.start()
        try:
            while not self._stop.is_set():
                try:
                    if self.run_once() >= self.batch:
                        continue  # a full batch: there may be more due right now (else the wake-up or poll says)
                except Exception:  # a database hiccup must not kill the worker; it retries at the next poll
                    log.exception("job worker %s: poll failed", self.name)
                self._wake.wait(self.poll_s)
                self._wake.clear()
        finally:
            self._stop.set()
            keeper.join()

    def start(self) -> Worker:
        """Run in a daemon thread (the embedded worker); woken at once when this process enqueues work."""
        self._unsubscribe = service.on_enqueue(self._wake.set)
        self._thread = threading.Thread(target=self.run_forever, name=f"omni-worker-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._thread is not None:
            self._thread.join(timeout_s)


def embedded(db: Database, settings: JobSettings) -> Worker | None:
    """The worker thread that runs inside ``omni serve`` / ``omni demo`` (None when ``OMNI_JOBS__EMBEDDED`` is off,
    e.g. because ``omni worker`` processes do the work)."""
    if not settings.embedded:
        return None
    from omnijourney import models  # noqa: F401  (every domain's job handlers)

    return Worker(db, poll_s=settings.poll_s, lease_s=settings.lease_s).start()
