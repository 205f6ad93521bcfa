"""Jobs that call another system run with no transaction open (``jobs.handler(..., external=True)``)."""

from __future__ import annotations

from typing import Any

from omnijourney import jobs
from omnijourney.db import Database
from omnijourney.jobs.models import Job
from tests.factories import run_jobs

seen: list[tuple[str, Any]] = []


@jobs.handler("tests.external", external=True, max_attempts=2, backoff_s=0.01)
def _external(db: Database, args: dict[str, Any]) -> None:
    # another writer gets the database while the handler "waits for the provider": no lock of ours is held
    with db.transaction() as session:
        session.add(Job(kind="jobs.noop", args={}, status="failed", run_at=_now(), attempts=0, max_attempts=1,
                        created_at=_now()))
    seen.append((type(db).__name__, args))
    if args.get("fail"):
        raise RuntimeError("the provider is down")


def _now():
    from omnijourney.core.time import utcnow

    return utcnow()


def test_an_external_job_gets_the_database_and_runs_outside_any_transaction(db: Database) -> None:
    seen.clear()
    with db.transaction() as session:
        jobs.enqueue(session, "tests.external", {"n": 1})
    assert run_jobs(db) == 1
    assert seen == [("Database", {"n": 1})]
    with db.transaction() as session:
        kinds = sorted(j.kind for j in session.query(Job))
    assert kinds == ["jobs.noop"]  # the external job is gone, what it wrote meanwhile stays


def test_a_failing_external_job_is_retried_like_any_other(db: Database) -> None:
    seen.clear()
    with db.transaction() as session:
        jobs.enqueue(session, "tests.external", {"fail": True})
    run_jobs(db)
    with db.transaction() as session:
        job = session.query(Job).filter(Job.kind == "tests.external").one()
    assert (job.status, job.attempts) == ("pending", 1)
    assert "the provider is down" in (job.last_error or "")
