"""The job queue in the metadata database: submit, claim under a lease, heartbeat, finish, cancel.

Claiming takes the oldest job that is queued, or running with a lapsed lease (its worker died or
stalled), with `SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL, so many workers never take the
same row; on SQLite the claim runs in a `BEGIN IMMEDIATE` transaction, SQLite's single writer.
Every claim bumps `fence`; every later write of the worker is conditioned on it, so a worker whose
lease was taken over can neither beat, nor finish, nor publish.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from registry.access.checks import (
    base_not_found,
    require,
    require_on_base_name,
    require_reader_of,
    require_writer_of,
)
from registry.access.policy import BaseNameRes, JobRes, global_admin, may
from registry.access.principal import Principal
from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.errors import (
    BadRequest,
    Forbidden,
    JobCancelled,
    JobFinished,
    LeaseLost,
    NotFound,
    RegistryError,
    Unauthenticated,
    WorkerLost,
)
from registry.jobspec import TERMINAL, JobInfo, JobParams, JobRequest, parse_params
from registry.refs import parse_ref, parse_repo
from registry.services import audit
from registry.services.bases import find_base
from registry.services.context import Registry
from registry.services.timeutil import now

SCAN_BATCH = 200
"""Jobs read per query when listing through a token narrowed to namespaces."""


@dataclass(frozen=True)
class Claim:
    """What a worker holds while it runs a job."""

    job_id: int
    fence: int
    type: str
    params: dict[str, Any]
    created_by: str
    attempt: int
    user_id: int | None = None
    """The submitter (None: the operator); the job publishes with their rights (access.job_principal)."""
    token_id: int | None = None


def submit(reg: Registry, req: JobRequest, user: str, *, principal: Principal) -> JobInfo:
    """Queue a job for `principal`, who must be allowed to read its inputs and write its output
    (checked again when the job publishes: it runs with the submitter's rights). A `base_path`
    names a folder on the caller's machine: only the operator (embedded mode, whose worker runs on
    that machine) may pass one; a server's workers must not read it."""
    if "base_path" in req.params and not principal.is_operator:
        raise BadRequest(
            "base_path is for embedded mode only; upload the base (`adapters base add PATH --upload`) "
            "and pass its name or fingerprint as base",
            field="params.base_path",
        )
    params = parse_params(req.type, req.params)  # refuse malformed parameters now, not on a worker
    with unit_of_work(reg.sessions) as session:
        check_job_access(session, principal, params)
        job = m.Job(
            type=req.type,
            params=req.params,
            status="queued",
            progress=0.0,
            attempts=0,
            max_attempts=req.max_attempts,
            fence=0,
            cancel_requested=False,
            created_by=user,
            user_id=principal.user_id,
            token_id=principal.token_id,
            created_at=now(),
        )
        session.add(job)
        session.flush()
        audit.record(
            session,
            principal,
            "job.submit",
            f"job:{job.id}",
            {"type": req.type, "params": req.params},
            namespace=_job_namespace(params),
        )
        return job_info(job)


def _stored_job_namespace(job: m.Job) -> str | None:
    try:
        return _job_namespace(parse_params(job.type, job.params))
    except (RegistryError, ValueError):  # parameters of an older version: no namespace
        return None


def _job_namespace(params: JobParams) -> str | None:
    """Where a job's output lands (its namespace's admins read the event)."""
    a = params.access()
    if a.writes_base_name is not None:
        ns, sep, _ = a.writes_base_name.partition("/")
        return ns if sep else None
    return parse_repo(a.writes_repo).namespace if a.writes_repo is not None else None


def job_namespaces(params: JobParams) -> frozenset[str] | None:
    """Every namespace a job reads or writes: its inputs' and its output's, and a base named in a
    namespace. None when it writes a name outside every namespace (an un-namespaced base, a global
    admin's right), so that no token narrowed to namespaces reaches it."""
    a = params.access()
    names = {parse_ref(r).repo.namespace for r in a.reads}
    if a.writes_repo is not None:
        names.add(parse_repo(a.writes_repo).namespace)
    bases = [a.base] if a.base is not None else []
    if a.writes_base_name is not None:
        if BaseNameRes(a.writes_base_name).namespace is None:
            return None
        bases.append(a.writes_base_name)
    return frozenset(names | {ns for b in bases if (ns := BaseNameRes(b).namespace) is not None})


def _job_res(job: m.Job) -> JobRes:
    """The job as the policy sees it: its submitter and its namespaces."""
    try:
        return JobRes(job.user_id, job_namespaces(parse_params(job.type, job.params)))
    except (RegistryError, ValueError):  # parameters of an older version: no narrowed token
        return JobRes(job.user_id, None)


def check_job_access(session: Session, principal: Principal, params: JobParams) -> None:
    """Inputs readable, output writable, as the kind's parameters declare them (JobParams.access):
    a merge writes its `into` repository; an export registers a base (named `into`, by default
    under the adapter's namespace); a 4-bit check records its verdict on the adapter's version (a
    write there)."""
    if principal.is_operator:
        return
    if principal.is_anonymous:
        raise Unauthenticated("submitting a job needs a token")
    if principal.read_only:
        raise Forbidden("a read-only token may not submit jobs", action="write")
    a = params.access()
    for text in a.reads:
        require_reader_of(session, principal, parse_ref(text).repo, text)
    if a.base is not None:
        # Known (to anyone) but to none the submitter may read: unknown to it. Several bases may
        # share a fingerprint; one it may read is the one the job gets.
        if find_base(session, a.base, None) is not None and find_base(session, a.base, principal) is None:
            raise base_not_found(a.base)
    if a.writes_base_name is not None:
        require_on_base_name(session, principal, "write", a.writes_base_name)
    if a.writes_repo is not None:
        require_writer_of(session, principal, parse_repo(a.writes_repo))


def _job_not_found(job_id: int) -> NotFound:
    return NotFound(f"no job {job_id}", job=job_id)


def get(reg: Registry, job_id: int, *, principal: Principal) -> JobInfo:
    """A job, for its submitter or an admin (anyone else: NotFound, as for no such job)."""
    if principal.is_anonymous:
        raise Unauthenticated("jobs need a token")
    with unit_of_work(reg.sessions) as session:
        job = _job(session, job_id)
        require(principal, "read", _job_res(job), lambda: _job_not_found(job_id))
        return job_info(job)


def list_jobs(
    reg: Registry, status: str | None = None, limit: int = 50, *, principal: Principal
) -> list[JobInfo]:
    """Newest first: every job for an admin, else the principal's own (through a token narrowed
    to namespaces, those of its jobs within them)."""
    if principal.is_anonymous:
        raise Unauthenticated("listing jobs needs a token")
    with unit_of_work(reg.sessions) as session:
        stmt = select(m.Job).order_by(m.Job.id.desc())
        if not global_admin(principal, "read"):
            stmt = stmt.where(m.Job.user_id == principal.user_id)
        if status:
            stmt = stmt.where(m.Job.status == status)
        if principal.namespaces is None or global_admin(principal, "read"):
            return [job_info(j) for j in session.scalars(stmt.limit(limit))]
        # A job's namespaces are in its parameters (JSON): the user's own jobs are read in pages,
        # newest first, until `limit` of them are within the token's namespaces.
        out: list[JobInfo] = []
        batch = max(limit, SCAN_BATCH)
        while len(out) < limit:
            rows = session.scalars(stmt.limit(batch)).all()
            out += [job_info(j) for j in rows if may(principal, "read", _job_res(j))]
            if len(rows) < batch:
                break
            stmt = stmt.where(m.Job.id < rows[-1].id)
        return out[:limit]


def cancel(reg: Registry, job_id: int, *, principal: Principal) -> JobInfo:
    """A queued job is cancelled at once; a running one is asked to stop (its worker sees it at the
    next heartbeat, stops, and marks it cancelled; if that worker is dead, the next claim does).
    An anonymous caller is refused before the job is looked up: no existence oracle."""
    if principal.is_anonymous:
        raise Unauthenticated("cancelling a job needs a token")
    with unit_of_work(reg.sessions) as session:
        job = _job(session, job_id, lock=True)
        require(principal, "write", _job_res(job), lambda: _job_not_found(job_id))
        if job.status in TERMINAL:
            raise JobFinished(f"job {job_id} already {job.status}", status=job.status)
        if job.status == "queued":
            _end(job, "cancelled", error={"code": "job_cancelled", "message": "cancelled before it ran"})
        else:
            job.cancel_requested = True
        session.flush()
        audit.record(
            session,
            principal,
            "job.cancel",
            f"job:{job.id}",
            {"type": job.type, "status": job.status},
            namespace=_stored_job_namespace(job),
        )
        return job_info(job)


def claim(reg: Registry, worker: str, lease_s: float) -> Claim | None:
    """Take the oldest claimable job, or None. Lapsed jobs out of attempts are failed on the way."""
    with unit_of_work(reg.sessions) as session:
        while True:
            t = now()
            stmt = (
                select(m.Job)
                .where(
                    or_(
                        m.Job.status == "queued",
                        (m.Job.status == "running") & (m.Job.lease_expires_at < t),
                    )
                )
                .order_by(m.Job.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            job = session.scalars(stmt).one_or_none()
            if job is None:
                return None
            if job.status == "running" and job.cancel_requested:
                _end(job, "cancelled", error={"code": "job_cancelled", "message": "cancelled"})
                session.flush()
                continue
            if job.status == "running" and job.attempts >= job.max_attempts:
                _end(
                    job,
                    "failed",
                    error={
                        "code": WorkerLost.code,
                        "message": f"worker {job.lease_owner} stopped heartbeating; "
                        f"{job.attempts} of {job.max_attempts} attempts used",
                    },
                )
                session.flush()
                continue
            job.status = "running"
            job.attempts += 1
            job.fence += 1
            job.lease_owner = worker[:128]
            job.lease_expires_at = t + timedelta(seconds=lease_s)
            job.started_at = job.started_at or t
            job.stage = "claimed" if job.attempts == 1 else f"claimed again (attempt {job.attempts})"
            session.flush()
            return Claim(
                job.id,
                job.fence,
                job.type,
                job.params,
                job.created_by,
                job.attempts,
                job.user_id,
                job.token_id,
            )


def heartbeat(
    reg: Registry, claim_: Claim, lease_s: float, progress: float | None, stage: str | None
) -> bool:
    """Extend the lease and record progress. Returns True when cancellation was requested;
    raises LeaseLost when the job is no longer ours."""
    with unit_of_work(reg.sessions) as session:
        job = _owned(session, claim_)
        job.lease_expires_at = now() + timedelta(seconds=lease_s)
        if progress is not None:
            job.progress = max(0.0, min(1.0, progress))
        if stage is not None:
            job.stage = stage[:256]
        return job.cancel_requested


def _owned(session: Session, claim_: Claim) -> m.Job:
    job = _job(session, claim_.job_id, lock=True)
    if job.fence != claim_.fence or job.status != "running":
        raise LeaseLost(
            f"job {claim_.job_id}: lease lost (fence {claim_.fence}, now {job.fence}, {job.status})"
        )
    return job


def fenced(session: Session, claim_: Claim) -> m.Job:
    """The job row, locked, if this claim still owns it and it is not being cancelled; else
    LeaseLost or JobCancelled (which roll back the caller's transaction: nothing is published)."""
    job = _owned(session, claim_)
    if job.cancel_requested:
        raise JobCancelled(f"job {claim_.job_id} was cancelled")
    return job


def succeed(session: Session, claim_: Claim, result: dict[str, Any]) -> None:
    """Mark the job done inside the caller's transaction, the one that publishes its output."""
    job = fenced(session, claim_)
    job.result = result
    job.progress = 1.0
    _end(job, "succeeded", stage="done")


def finish_failed(reg: Registry, claim_: Claim, code: str, message: str, retry: bool) -> JobInfo | None:
    """Record a failed run: queued again while attempts remain and `retry`, else failed.
    Cancellation wins over failure. None when the claim is no longer ours."""
    with unit_of_work(reg.sessions) as session:
        job = _job(session, claim_.job_id, lock=True)
        if job.fence != claim_.fence or job.status != "running":
            return None
        if job.cancel_requested:
            _end(job, "cancelled", error={"code": "job_cancelled", "message": "cancelled while running"})
        elif retry and job.attempts < job.max_attempts:
            job.status = "queued"
            job.lease_owner = None
            job.lease_expires_at = None
            job.stage = f"attempt {job.attempts} failed ({code}); queued again"
            job.error = {"code": code, "message": message[:4000]}
        else:
            _end(job, "failed", error={"code": code, "message": message[:4000]})
        session.flush()
        return job_info(job)


def _end(job: m.Job, status: str, *, stage: str | None = None, error: dict[str, Any] | None = None) -> None:
    job.status = status
    job.finished_at = now()
    job.lease_owner = None
    job.lease_expires_at = None
    job.stage = stage or status
    if error is not None:
        job.error = error


def _job(session: Session, job_id: int, lock: bool = False) -> m.Job:
    stmt = select(m.Job).where(m.Job.id == job_id)
    if lock:
        stmt = stmt.with_for_update()
    job = session.scalars(stmt).one_or_none()
    if job is None:
        raise NotFound(f"no job {job_id}", job=job_id)
    return job


def job_info(job: m.Job) -> JobInfo:
    return JobInfo.model_validate(job)
