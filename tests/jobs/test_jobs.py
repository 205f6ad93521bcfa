"""Background jobs (``omnijourney.jobs``) as an operator sees them: what runs, when, how often, and what is left.

Time passing (backoff, delays, lapsed leases) is the services' clock moved ahead (``core.time.clock``), so no test
sleeps. Each committed run of a ``test.*`` handler leaves one row in ``idempotent_requests`` (scope ``test.jobs``),
so "ran once" means one committed row, whatever was attempted and rolled back.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from omnijourney import jobs
from omnijourney.api.app import create_app
from omnijourney.api.models import IdempotentRequest
from omnijourney.cli import app as cli
from omnijourney.config import JobSettings, Settings
from omnijourney.core.errors import Conflict, NotFound
from omnijourney.core.ids import new_id
from omnijourney.core.time import clock, utcnow
from omnijourney.db import Database
from omnijourney.jobs import service
from omnijourney.jobs.models import Job
from omnijourney.jobs.service import LeaseLost
from omnijourney.jobs.worker import Worker
from tests.factories import run_jobs

SCOPE = "test.jobs"
_broken: set[str] = set()  # keys whose downstream is "down": test.flaky raises for them
_calls: Counter[str] = Counter()  # handler invocations (committed or not), for the concurrency test
_calls_lock = threading.Lock()


def _write_run(session: Session, key: str) -> None:
    session.add(IdempotentRequest(scope=SCOPE, key=f"{key}/{new_id()}", fingerprint="", status_code=200, body={},
                                  created_at=utcnow()))
    session.flush()


@jobs.handler("test.write_row")
def _write_row(session: Session, args: dict[str, Any]) -> None:
    _write_run(session, args["key"])


@jobs.handler("test.flaky", max_attempts=3, backoff_s=30.0)
def _flaky(session: Session, args: dict[str, Any]) -> None:
    _write_run(session, args["key"])  # written first: a failure must take it back
    if args["key"] in _broken:
        raise RuntimeError(f"downstream outage for {args['key']}")


@jobs.handler("test.count", max_attempts=1)
def _count(session: Session, args: dict[str, Any]) -> None:
    with _calls_lock:
        _calls[args["key"]] += 1
    time.sleep(0.001)  # let the other worker's thread in


@jobs.handler("test.slow", max_attempts=1)
def _slow(session: Session, args: dict[str, Any]) -> None:
    with _calls_lock:
        _calls[args["key"]] += 1
    time.sleep(0.8)  # longer than the test's lease once two are queued behind each other
    _write_run(session, args["key"])


def committed_runs(db: Database, key: str) -> int:
    """How many runs of the job with ``key`` committed their change."""
    with db.transaction(write=False) as s:
        return s.scalar(select(func.count()).select_from(IdempotentRequest)
                        .where(IdempotentRequest.scope == SCOPE, IdempotentRequest.key.like(f"{key}/%")))


def all_jobs(db: Database) -> list[Job]:
    with db.transaction(write=False) as s:
        return list(s.scalars(select(Job).order_by(Job.id)))


def enqueue(db: Database, kind: str, key: str, **options: Any) -> None:
    with db.transaction() as s:
        jobs.enqueue(s, kind, {"key": key}, **options)


def later(seconds: float) -> AbstractContextManager[None]:
    """The services' clock ``seconds`` from now (a backoff, a delay or a lease passing, without waiting)."""
    at = datetime.now(UTC) + timedelta(seconds=seconds)
    return clock(lambda: at)


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    _broken.clear()
    _calls.clear()
    yield
    _broken.clear()


# ---------------------------------------------------------------- enqueued with the change that causes them

def test_a_rolled_back_enqueue_never_runs_and_a_committed_one_does(db: Database) -> None:
    woken: list[int] = []
    unsubscribe = service.on_enqueue(lambda: woken.append(1))
    try:
        with pytest.raises(RuntimeError), db.transaction() as s:
            jobs.enqueue(s, "test.write_row", {"key": "rolled-back"})
            raise RuntimeError("the order failed after scheduling its e-mail")
        assert woken == [] and all_jobs(db) == []  # no job, and no embedded worker woken for nothing
        enqueue(db, "test.write_row", "committed")
        assert woken == [1]  # the embedded worker is nudged once the enqueueing transaction commits
    finally:
        unsubscribe()
    assert run_jobs(db) == 1
    assert committed_runs(db, "committed") == 1 and committed_runs(db, "rolled-back") == 0
    assert all_jobs(db) == []  # done work is deleted with the handler's changes
    assert run_jobs(db) == 0  # and never runs again


def test_the_built_in_noop_job_runs_in_any_worker(db: Database) -> None:
    with db.transaction() as s:  # what a deployment's smoke test (and bench/jobs.py) enqueues
        jobs.enqueue(s, "jobs.noop")
    assert run_jobs(db) == 1 and all_jobs(db) == []


def test_a_failing_handler_leaves_nothing_and_the_job_waits_for_its_backoff(db: Database) -> None:
    _broken.add("k")
    enqueue(db, "test.flaky", "k")
    before = utcnow()
    assert run_jobs(db) == 1
    assert committed_runs(db, "k") == 0  # the row written before the raise was rolled back with the run
    [job] = all_jobs(db)
    assert (job.status, job.attempts, job.locked_by) == ("pending", 1, None)
    assert "RuntimeError: downstream outage for k" in job.last_error
    wait = (job.run_at - before).total_seconds()
    assert 30 <= wait <= 30 * 1.25 + 5  # backoff_s, with at most 25% jitter
    assert run_jobs(db) == 0  # not due yet
    _broken.clear()
    with later(wait + 1):
        assert run_jobs(db) == 1
    assert committed_runs(db, "k") == 1 and all_jobs(db) == []


def test_after_max_attempts_the_job_is_failed_until_an_operator_retries_or_discards_it(db: Database) -> None:
    _broken.update({"retried", "discarded"})
    enqueue(db, "test.flaky", "retried")
    enqueue(db, "test.flaky", "discarded")
    for attempt in range(1, 4):  # max_attempts=3; backoffs of about 30 s then 60 s
        with later(attempt * 600):
            assert run_jobs(db) == 2
    assert [(j.status, j.attempts) for j in all_jobs(db)] == [("failed", 3), ("failed", 3)]
    with later(86_400):
        assert run_jobs(db) == 0  # failed work waits for an operator, however long
    retried, discarded = (j.id for j in all_jobs(db))

    with db.transaction() as s:
        with pytest.raises(NotFound):
            service.retry(s, 999_999)
        service.discard(s, discarded)
    _broken.clear()  # the outage is over
    with db.transaction() as s:
        job = service.retry(s, retried)
        assert (job.status, job.attempts) == ("pending", 0)
    assert run_jobs(db) == 1  # due at once: only the retried one is left
    assert committed_runs(db, "retried") == 1 and committed_runs(db, "discarded") == 0
    assert all_jobs(db) == []


def test_retry_of_a_job_that_has_not_failed_is_a_conflict(db: Database) -> None:
    enqueue(db, "test.write_row", "pending")
    [job] = all_jobs(db)
    with db.transaction() as s, pytest.raises(Conflict) as exc:
        service.retry(s, job.id)
    assert exc.value.status == 409 and exc.value.field == "id"
    assert all_jobs(db)[0].attempts == 0


def test_a_unique_key_enqueues_the_same_work_once_while_it_is_not_done(db: Database) -> None:
    enqueue(db, "test.write_row", "first", unique_key="cart:1")
    enqueue(db, "test.write_row", "second", unique_key="cart:1")  # the same work, scheduled again: nothing
    enqueue(db, "test.write_row", "other", unique_key="cart:2")
    with db.transaction() as s:  # twice in one transaction too
        jobs.enqueue(s, "test.write_row", {"key": "third"}, unique_key="cart:3")
        jobs.enqueue(s, "test.write_row", {"key": "fourth"}, unique_key="cart:3")
    assert sorted(j.unique_key for j in all_jobs(db)) == ["cart:1", "cart:2", "cart:3"]
    assert run_jobs(db) == 3
    assert [committed_runs(db, k) for k in ("first", "second", "other", "third", "fourth")] == [1, 0, 1, 1, 0]
    enqueue(db, "test.write_row", "again", unique_key="cart:1")  # done: the key is free for new work
    assert run_jobs(db) == 1 and committed_runs(db, "again") == 1


def test_a_job_due_later_is_not_claimed_before_its_time(db: Database) -> None:
    enqueue(db, "test.write_row", "in-a-minute", delay_s=60)
    enqueue(db, "test.write_row", "in-an-hour", at=utcnow() + timedelta(hours=1))
    assert run_jobs(db) == 0
    with later(30):
        assert run_jobs(db) == 0
    with later(61):
        assert run_jobs(db) == 1
    assert committed_runs(db, "in-a-minute") == 1 and committed_runs(db, "in-an-hour") == 0
    with later(3601):
        assert run_jobs(db) == 1
    assert committed_runs(db, "in-an-hour") == 1


# ---------------------------------------------------------------- leases: a worker that dies mid-job

@pytest.mark.parametrize("late", ["before the rerun", "after the rerun"])
def test_a_dead_workers_job_runs_again_and_its_late_finish_is_rolled_back(db: Database, late: str) -> None:
    enqueue(db, "test.write_row", "leased")
    with db.transaction() as s:  # the worker that will "die": claims, never finishes in time
        [claimed] = service.claim(s, "dead", 10)
    survivor = Worker(db, name="survivor", lease_s=60)
    survivor.housekeeping()
    assert survivor.run_once() == 0  # within the lease the job is the dead worker's

    def late_finish() -> None:  # the dead worker wakes up and completes its run
        with pytest.raises(LeaseLost), db.transaction() as s:
            service.kind(claimed.kind).handler(s, claimed.args)
            service.finish(s, claimed, "dead")

    with later(61):
        survivor.housekeeping()  # the lease lapsed: the job is given back
        [job] = all_jobs(db)
        assert (job.status, job.locked_by, job.last_error) == ("pending", None, "the worker running it stopped")
        if late == "before the rerun":
            late_finish()
        assert survivor.run_once() == 1
        if late == "after the rerun":
            late_finish()
    assert committed_runs(db, "leased") == 1  # at least once, and never two committed runs
    assert all_jobs(db) == []


def test_a_job_that_keeps_killing_its_worker_ends_failed(db: Database) -> None:
    enqueue(db, "test.flaky", "poison")  # max_attempts=3
    survivor = Worker(db, name="survivor", lease_s=60)
    for attempt in range(1, 4):
        with later(attempt * 120):
            survivor.housekeeping()  # the previous victim's lease lapsed
            with db.transaction() as s:  # another worker claims it and dies
                assert len(service.claim(s, f"victim-{attempt}", 10)) == 1
    with later(4 * 120):
        survivor.housekeeping()
        [job] = all_jobs(db)
        assert (job.status, job.attempts, job.locked_by) == ("failed", 3, None)  # for an operator, not a 4th crash
        assert job.last_error == "the worker running it stopped"
        assert survivor.run_once() == 0


def test_a_live_worker_keeps_the_lease_of_jobs_it_holds_however_long_they_take(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: a second worker reclaiming mid-run is a PostgreSQL setup")
    for n in range(3):
        enqueue(db, "test.slow", f"slow-{n}")
    busy = Worker(db, name="busy", batch=10, poll_s=0.05, lease_s=1.0).start()  # claims all 3: 2.4 s of work
    other = Worker(db, name="other", lease_s=1.0)
    try:
        deadline = time.monotonic() + 20
        # busy's thread claims them a moment after it starts (later on a loaded machine): only then may other try
        while not (jobs := all_jobs(db)) or any(j.locked_by != "busy" for j in jobs):
            if committed_runs(db, "slow-0"):
                break
            assert time.monotonic() < deadline, "the busy worker did not claim the jobs"
            time.sleep(0.01)
        while any(committed_runs(db, f"slow-{n}") == 0 for n in range(3)):
            assert time.monotonic() < deadline, "the jobs did not run"
            other.housekeeping()  # would give back the third job, queued 1.6 s, if busy's lease had lapsed
            assert other.run_once() == 0
            time.sleep(0.05)
    finally:
        busy.stop()
    assert _calls == Counter({f"slow-{n}": 1 for n in range(3)})  # none run twice
    assert busy.ran == 3 and all_jobs(db) == []


def test_two_workers_never_claim_the_same_job(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: concurrent claims are a PostgreSQL matter (SKIP LOCKED)")
    with db.transaction() as s:
        for n in range(200):
            jobs.enqueue(s, "test.count", {"key": str(n)})
    workers = [Worker(db, name=f"w{i}", batch=10, lease_s=60) for i in range(2)]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(w: Worker) -> None:
        try:
            start.wait()
            deadline = time.monotonic() + 60
            while w.run_once() and time.monotonic() < deadline:
                pass
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _calls == Counter({str(n): 1 for n in range(200)})  # every job ran, none twice
    assert all(w.ran > 0 for w in workers) and sum(w.ran for w in workers) == 200
    assert all_jobs(db) == []


# ---------------------------------------------------------------- the embedded worker of `omni serve`

class TestEmbeddedWorker:
    @pytest.fixture
    def app(self, db: Database):
        return create_app(db, Settings(database_url="sqlite://", jobs=JobSettings(embedded=True, poll_s=0.05)))

    @staticmethod
    def wait_for_run(db: Database, key: str, timeout_s: float = 3.0) -> None:
        deadline = time.monotonic() + timeout_s
        while committed_runs(db, key) == 0:
            assert time.monotonic() < deadline, f"job {key!r} did not run within {timeout_s} s"
            time.sleep(0.02)

    def test_the_server_runs_jobs_enqueued_from_outside(self, db: Database, live_server: str) -> None:
        assert httpx.get(f"{live_server}/health").status_code == 200
        enqueue(db, "test.write_row", "this-process")  # wakes the worker of this process
        self.wait_for_run(db, "this-process")
        with db.transaction() as s:  # written as another process would: only polling finds it
            s.execute(insert(Job).values(kind="test.write_row", args={"key": "other-process"}, status="pending",
                                         run_at=utcnow(), attempts=0, max_attempts=10, created_at=utcnow()))
        self.wait_for_run(db, "other-process")
        assert all_jobs(db) == []


# ---------------------------------------------------------------- `omni jobs`

def test_omni_jobs_lists_counts_and_failed_jobs_with_their_last_error(cli_database: Database,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # one table row per job
    db = cli_database
    _broken.add("cli")
    enqueue(db, "test.flaky", "cli")
    for attempt in range(1, 4):
        with later(attempt * 600):
            run_jobs(db)
    for n in range(60):  # a backlog due before the failure: failed work is listed first all the same
        enqueue(db, "test.write_row", f"backlog-{n}", at=utcnow() - timedelta(hours=1))
    [failed] = [j for j in all_jobs(db) if j.status == "failed"]

    result = CliRunner().invoke(cli, ["jobs"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("test.write_row" in line and "pending" in line and " 60 " in line for line in lines), result.output
    assert any("test.flaky" in line and "failed" in line and " 1 " in line for line in lines), result.output
    [row] = [line for line in lines if line.strip(" │┃").startswith(f"{failed.id} ")]
    assert "3/3" in row and "RuntimeError: downstream outage for cli" in row

    result = CliRunner().invoke(cli, ["jobs", "retry", str(failed.id)])
    assert result.exit_code == 0, result.output
    assert [j.attempts for j in all_jobs(db) if j.id == failed.id] == [0]
    result = CliRunner().invoke(cli, ["jobs", "discard", str(failed.id)])
    assert result.exit_code == 0, result.output
    assert [j for j in all_jobs(db) if j.id == failed.id] == []

    for command in ("retry", "discard"):
        result = CliRunner().invoke(cli, ["jobs", command, "424242"])
        assert result.exit_code == 1
        assert [line for line in result.output.splitlines() if "424242" in line] == ["error: no job 424242"]
        assert "Traceback" not in result.output


def test_omni_jobs_with_nothing_to_do(cli_database: Database) -> None:
    result = CliRunner().invoke(cli, ["jobs"])
    assert result.exit_code == 0, result.output
    assert "no background work" in result.output
