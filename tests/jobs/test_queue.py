"""The job queue on SQLite and PostgreSQL: exclusive claims, leases, fencing, retries, cancel."""

from __future__ import annotations

import threading
import time

import pytest

from registry.access.principal import OPERATOR
from registry.errors import BadRequest, JobCancelled, JobFinished, LeaseLost, NotFound
from registry.jobspec import JobRequest
from registry.services import jobs
from registry.services.context import Registry

MERGE = {"inputs": [{"ref": "acme/a", "weight": 1.0}], "into": "acme/out"}


def submit(reg: Registry, max_attempts: int = 3) -> int:
    return jobs.submit(
        reg, JobRequest(type="merge", params=MERGE, max_attempts=max_attempts), "tester", principal=OPERATOR
    ).id


def test_concurrent_workers_claim_each_job_exactly_once(job_registry: Registry) -> None:
    ids = {submit(job_registry) for _ in range(24)}
    claimed: list[int] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        while (c := jobs.claim(job_registry, f"w{n}", lease_s=60)) is not None:
            with lock:
                claimed.append(c.job_id)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)  # every job once, none twice
    assert {j.status for j in jobs.list_jobs(job_registry, limit=100, principal=OPERATOR)} == {"running"}


def test_a_lapsed_lease_is_taken_over_and_the_old_claim_is_fenced_off(job_registry: Registry) -> None:
    job_id = submit(job_registry)
    first = jobs.claim(job_registry, "stalled", lease_s=0.2)
    assert first is not None and first.fence == 1
    assert jobs.claim(job_registry, "other", lease_s=30) is None  # lease still held
    time.sleep(0.4)
    second = jobs.claim(job_registry, "other", lease_s=30)
    assert second is not None and second.job_id == job_id and second.fence == 2 and second.attempt == 2
    with pytest.raises(LeaseLost):
        jobs.heartbeat(job_registry, first, 30, 0.5, "late beat")
    with pytest.raises(LeaseLost):
        with job_registry.sessions.begin() as session:
            jobs.succeed(session, first, {"ref": "stale"})
    assert jobs.finish_failed(job_registry, first, "boom", "stale failure", retry=True) is None
    with job_registry.sessions.begin() as session:  # how publication marks it: worker/publish.py
        jobs.succeed(session, second, {"ref": "acme/out:1"})
    done = jobs.get(job_registry, job_id, principal=OPERATOR)
    assert (done.status, done.result, done.fence, done.attempts) == ("succeeded", {"ref": "acme/out:1"}, 2, 2)


def test_a_job_whose_workers_keep_dying_fails_after_max_attempts(job_registry: Registry) -> None:
    job_id = submit(job_registry, max_attempts=2)
    for _ in range(2):
        assert jobs.claim(job_registry, "dies", lease_s=0.1) is not None
        time.sleep(0.25)
    assert jobs.claim(job_registry, "next", lease_s=30) is None
    info = jobs.get(job_registry, job_id, principal=OPERATOR)
    assert info.status == "failed" and info.error is not None and info.error["code"] == "worker_lost"
    assert info.attempts == 2


def test_failures_retry_while_attempts_remain_unless_final(job_registry: Registry) -> None:
    job_id = submit(job_registry, max_attempts=2)
    c1 = jobs.claim(job_registry, "w", 30)
    assert c1 is not None
    retried = jobs.finish_failed(job_registry, c1, "storage_error", "S3 hiccup", retry=True)
    assert retried is not None and retried.status == "queued" and retried.attempts == 1
    c2 = jobs.claim(job_registry, "w", 30)
    assert c2 is not None and c2.attempt == 2
    final = jobs.finish_failed(job_registry, c2, "storage_error", "again", retry=True)
    assert (
        final is not None
        and final.status == "failed"
        and final.error
        == {
            "code": "storage_error",
            "message": "again",
        }
    )
    c3_id = submit(job_registry)
    c3 = jobs.claim(job_registry, "w", 30)
    assert c3 is not None and c3.job_id == c3_id
    bad = jobs.finish_failed(job_registry, c3, "not_found", "no acme/a", retry=False)
    assert bad is not None and bad.status == "failed" and bad.attempts == 1
    assert jobs.get(job_registry, job_id, principal=OPERATOR).status == "failed"


def test_cancel_queued_running_and_finished_jobs(job_registry: Registry) -> None:
    queued = submit(job_registry)
    assert jobs.cancel(job_registry, queued, principal=OPERATOR).status == "cancelled"
    assert jobs.claim(job_registry, "w", 30) is None  # a cancelled job is never claimed

    running = submit(job_registry)
    c = jobs.claim(job_registry, "w", 30)
    assert c is not None
    asked = jobs.cancel(job_registry, running, principal=OPERATOR)
    assert asked.status == "running" and asked.cancel_requested
    assert jobs.heartbeat(job_registry, c, 30, 0.3, "working") is True  # the worker learns of it
    with pytest.raises(JobCancelled):  # and cannot publish any more
        with job_registry.sessions.begin() as session:
            jobs.succeed(session, c, {})
    ended = jobs.finish_failed(job_registry, c, "job_cancelled", "stopped", retry=False)
    assert ended is not None and ended.status == "cancelled"
    with pytest.raises(JobFinished):
        jobs.cancel(job_registry, running, principal=OPERATOR)
    with pytest.raises(NotFound):
        jobs.cancel(job_registry, 10_000, principal=OPERATOR)


def test_a_running_job_cancelled_after_its_worker_died_ends_cancelled(job_registry: Registry) -> None:
    job_id = submit(job_registry)
    assert jobs.claim(job_registry, "dies", lease_s=0.1) is not None
    jobs.cancel(job_registry, job_id, principal=OPERATOR)
    time.sleep(0.25)
    assert jobs.claim(job_registry, "next", 30) is None
    assert jobs.get(job_registry, job_id, principal=OPERATOR).status == "cancelled"


def test_malformed_jobs_are_refused_at_submit(job_registry: Registry) -> None:
    with pytest.raises(BadRequest, match="inputs"):
        jobs.submit(
            job_registry, JobRequest(type="merge", params={"into": "acme/x"}), "t", principal=OPERATOR
        )
    with pytest.raises(BadRequest, match="density"):
        jobs.submit(
            job_registry, JobRequest(type="merge", params={**MERGE, "density": 3}), "t", principal=OPERATOR
        )
    with pytest.raises(BadRequest, match="dtype"):
        jobs.submit(
            job_registry,
            JobRequest(type="export", params={"ref": "a/b", "base": "x", "dtype": "int3"}),
            "t",
            principal=OPERATOR,
        )
    assert jobs.list_jobs(job_registry, principal=OPERATOR) == []
