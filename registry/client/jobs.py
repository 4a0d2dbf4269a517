"""Following a job from a client: poll until it ends, then its error becomes the caller's error."""

from __future__ import annotations

import time
from collections.abc import Callable

from registry.client.interface import RegistryClient
from registry.errors import JobFailed, error_from_problem
from registry.jobspec import JobInfo, JobRequest

POLL_S = 0.25


def submit_and_follow(
    client: RegistryClient,
    request: JobRequest,
    wait: bool = True,
    on_update: Callable[[JobInfo], None] | None = None,
) -> JobInfo:
    """Submit; with `wait`, follow the job to its end (raising its error when it fails). Someone
    must run it: a server's workers, `adapters worker`, or registry.worker.embedded in this process."""
    job = client.submit_job(request)
    if not wait:
        return job
    return raise_for_job(follow(client, job, on_update))


def follow(
    client: RegistryClient, job: JobInfo, on_update: Callable[[JobInfo], None] | None = None
) -> JobInfo:
    """Poll until the job is succeeded, failed or cancelled."""
    while True:
        if on_update is not None:
            on_update(job)
        if job.done:
            return job
        time.sleep(POLL_S)
        job = client.get_job(job.id)


def raise_for_job(job: JobInfo) -> JobInfo:
    """The job if it succeeded; else the RegistryError its error code names (JobFailed for crashes)."""
    if job.status == "succeeded":
        return job
    error = job.error or {"code": "job_failed", "message": f"job {job.id} {job.status}"}
    if error.get("code") in (None, "job_failed", "storage_error"):
        raise JobFailed(f"job {job.id} {job.status}: {error.get('message')}", job=job.id)
    err = error_from_problem({"code": error["code"], "detail": f"job {job.id}: {error.get('message')}"}, 500)
    err.fields["job"] = job.id
    raise err
