"""Jobs with live progress: the page lists them; static/jobs.js polls /ui/jobs.json while one is
queued or running and updates the rows in place (no build step, no inline script)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from registry.bounds import INT32_MAX
from registry.jobspec import JobInfo
from registry.services import jobs
from registry.ui.render import PageRoute, RegistryDep, UiPrincipal, page
from registry.ui.session import CheckedForm

router = APIRouter(prefix="/ui", route_class=PageRoute, include_in_schema=False)
LIMIT = 100
ACTIVE = ("queued", "running")


def _target(job: JobInfo) -> str:
    """What the job works on, from its parameters: the output for a merge, the ref otherwise."""
    p = job.params
    if job.type == "merge":
        inputs = ", ".join(str(i.get("ref")) for i in p.get("inputs", []) if isinstance(i, dict))
        return f"{inputs} \u2192 {p.get('into')}"
    return " on ".join(str(p[k]) for k in ("ref", "base") if p.get(k))


def _row(job: JobInfo) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status,
        "progress": round(job.progress, 4),
        "stage": job.stage or "",
        "error": (job.error or {}).get("message", "") if job.error else "",
    }


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, reg: RegistryDep, principal: UiPrincipal) -> HTMLResponse:
    listed = jobs.list_jobs(reg, None, LIMIT, principal=principal)  # Unauthenticated: log in first
    rows = [{**_row(j), "job": j, "target": _target(j)} for j in listed]
    return page(request, "jobs.html", rows=rows, active=any(j.status in ACTIVE for j in listed))


@router.get("/jobs.json")
def jobs_json(reg: RegistryDep, principal: UiPrincipal) -> JSONResponse:
    """What the jobs page polls: status and progress of the caller's jobs."""
    return JSONResponse([_row(j) for j in jobs.list_jobs(reg, None, LIMIT, principal=principal)])


@router.post("/jobs/{job_id}/cancel")
def cancel_job(
    job_id: Annotated[int, Path(ge=1, le=INT32_MAX)],
    form: CheckedForm,
    reg: RegistryDep,
    principal: UiPrincipal,
) -> RedirectResponse:
    """Cancel a job (the form on the jobs page; CSRF-checked by CheckedForm)."""
    jobs.cancel(reg, job_id, principal=principal)
    return RedirectResponse("/ui/jobs", status_code=303)
