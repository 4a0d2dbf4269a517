"""Jobs: submit tensor work (merge, export, check-4bit), follow it, cancel it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from registry.api.bodies import ApiRoute
from registry.api.deps import PrincipalDep, RegistryDep
from registry.bounds import INT32_MAX
from registry.jobspec import JobInfo, JobRequest, JobStatus
from registry.services import jobs

router = APIRouter(prefix="/v1", tags=["jobs"], route_class=ApiRoute)
JobId = Annotated[int, Path(ge=1, le=INT32_MAX)]


@router.post("/jobs", status_code=202)
def submit_job(body: JobRequest, reg: RegistryDep, principal: PrincipalDep) -> JobInfo:
    """Queue a job; a worker takes it, with the submitter's rights. Follow it with GET /v1/jobs/{id}."""
    return jobs.submit(reg, body, principal.name, principal=principal)


@router.get("/jobs")
def list_jobs(
    reg: RegistryDep,
    principal: PrincipalDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[JobInfo]:
    return jobs.list_jobs(reg, status, limit, principal=principal)


@router.get("/jobs/{job_id}")
def get_job(job_id: JobId, reg: RegistryDep, principal: PrincipalDep) -> JobInfo:
    return jobs.get(reg, job_id, principal=principal)


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: JobId, reg: RegistryDep, principal: PrincipalDep) -> JobInfo:
    """Cancel a queued job now, or ask the worker of a running one to stop."""
    return jobs.cancel(reg, job_id, principal=principal)
