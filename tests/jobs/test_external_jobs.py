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


during: list[list[str]] = []


@jobs.handler("tests.external_completes", external=True, max_attempts=2, backoff_s=0.01)
def _completes(db: Database, args: dict[str, Any]) -> None:
    from omnijourney.jobs.service import complete

    with db.transaction() as session:  # the provider's answer recorded, and the job ended with it
        session.add(Job(kind="jobs.noop", args={"recorded": True}, status="failed", run_at=_now(), attempts=0,
                        max_attempts=1, created_at=_now()))
        complete(session)
        if args.get("fail"):
            raise RuntimeError("recording the answer failed")
    with db.transaction() as session:  # what another process sees the moment that transaction committed
        during.append(sorted(j.kind for j in session.query(Job)))


def test_an_external_job_can_end_in_the_transaction_that_records_its_effect(db: Database) -> None:
    during.clear()
    with db.transaction() as session:
        jobs.enqueue(session, "tests.external_completes")
    assert run_jobs(db) == 1
    assert during == [["jobs.noop"]]  # gone together with the effect: no moment with the effect and the job both
    with db.transaction() as session:
        assert [j.kind for j in session.query(Job)] == ["jobs.noop"]


def test_an_external_job_whose_last_transaction_rolls_back_is_retried(db: Database) -> None:
    during.clear()
    with db.transaction() as session:
        jobs.enqueue(session, "tests.external_completes", {"fail": True})
    run_jobs(db)
    with db.transaction() as session:
        [job] = session.query(Job).all()  # the effect rolled back with the job's end
    assert (job.kind, job.status, job.attempts) == ("tests.external_completes", "pending", 1)
    assert "recording the answer failed" in (job.last_error or "")
