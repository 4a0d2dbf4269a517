"""`adapters jobs ...` and `adapters worker`, and how job-running commands follow their job."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

import click
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.output import console, emit_json, err_console, handle_errors, json_option
from registry.client import RegistryClient, open_client
from registry.client.jobs import follow, raise_for_job, submit_and_follow
from registry.config import Settings
from registry.errors import BadRequest
from registry.jobspec import JobInfo, JobRequest
from registry.worker.embedded import jobs_run_here
from registry.worker.settings import WorkerSettings


def in_process_worker() -> bool:
    """False under `adapters --no-worker ...`: jobs then wait for a separate `adapters worker`."""
    return not click.get_current_context().find_root().params.get("no_worker", False)


class JobBar:
    """A job's progress as a bar with its stage on stderr; silent when stderr is not a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and err_console.is_terminal
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def __call__(self, job: JobInfo) -> None:
        if not self.enabled:
            return
        if self.progress is None:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                console=err_console,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("", total=100)
        assert self.task is not None
        desc = f"job {job.id} {job.type}: {job.stage or job.status}"
        self.progress.update(self.task, completed=job.progress * 100, description=desc)
        if job.done:
            self.progress.stop()


def run_job(client: RegistryClient, request: JobRequest, no_wait: bool, as_json: bool) -> JobInfo:
    """Submit; print the id and return with --no-wait, else follow with a bar until it ends."""
    with jobs_run_here(client, WorkerSettings.from_settings(Settings()), not no_wait and in_process_worker()):
        job = submit_and_follow(client, request, wait=not no_wait, on_update=JobBar(not as_json))
    if no_wait:
        if as_json:
            emit_json(job)
        else:
            console.print(
                f"submitted job {job.id} ({job.type}); follow it with `adapters jobs watch {job.id}`"
            )
    return job


@click.group()
def jobs() -> None:
    """Follow and cancel jobs (merges, exports, 4-bit checks)."""


@jobs.command(name="list")
@click.option(
    "--status", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]), default=None
)
@click.option("--limit", default=50, show_default=True)
@json_option
@handle_errors
def jobs_list(status: str | None, limit: int, as_json: bool) -> None:
    """The newest jobs first."""
    client = open_client(Settings())
    try:
        found = client.list_jobs(status, limit)
    finally:
        client.close()
    if as_json:
        emit_json([j.model_dump(mode="json") for j in found])
        return
    table = Table("id", "type", "status", "progress", "stage", "attempts", "by", "created")
    for j in found:
        table.add_row(
            str(j.id),
            j.type,
            j.status,
            f"{j.progress:.0%}",
            j.stage or "",
            f"{j.attempts}/{j.max_attempts}",
            j.created_by,
            j.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)


@jobs.command(name="show")
@click.argument("job_id", type=int)
@json_option
@handle_errors
def jobs_show(job_id: int, as_json: bool) -> None:
    """One job: parameters, status, progress, lease, result or error."""
    client = open_client(Settings())
    try:
        job = client.get_job(job_id)
    finally:
        client.close()
    if as_json:
        emit_json(job)
        return
    print_job(job)


@jobs.command(name="watch")
@click.argument("job_id", type=int)
@json_option
@handle_errors
def jobs_watch(job_id: int, as_json: bool) -> None:
    """Follow a job with a progress bar until it ends; exit 1 if it fails or is cancelled."""
    client = open_client(Settings())
    try:
        job = client.get_job(job_id)
        with jobs_run_here(
            client, WorkerSettings.from_settings(Settings()), not job.done and in_process_worker()
        ):
            job = follow(client, job, JobBar(not as_json))
    finally:
        client.close()
    if job.status != "succeeded":
        if not as_json:
            print_job(job)
        raise_for_job(job)  # one line on stderr (one JSON error document with --json), exit 1
    if as_json:
        emit_json(job)
    else:
        print_job(job)


@jobs.command(name="cancel")
@click.argument("job_id", type=int)
@json_option
@handle_errors
def jobs_cancel(job_id: int, as_json: bool) -> None:
    """Cancel a queued job, or stop a running one at its worker's next heartbeat."""
    client = open_client(Settings())
    try:
        job = client.cancel_job(job_id)
    finally:
        client.close()
    if as_json:
        emit_json(job)
        return
    what = "cancelled" if job.status == "cancelled" else "cancellation requested for"
    console.print(f"{what} job {job.id} ({job.type})", highlight=False)


def print_job(j: JobInfo) -> None:
    rows: list[tuple[str, Any]] = [
        ("job", f"{j.id} ({j.type})"),
        ("status", j.status + (" (cancel requested)" if j.cancel_requested and not j.done else "")),
        ("progress", f"{j.progress:.0%}  {j.stage or ''}"),
        ("attempts", f"{j.attempts} of {j.max_attempts}"),
        ("lease", f"{j.lease_owner} until {j.lease_expires_at:%H:%M:%S}" if j.lease_expires_at else "-"),
        ("submitted", f"{j.created_at:%Y-%m-%d %H:%M:%S} by {j.created_by}"),
        ("params", j.params),
    ]
    if j.result:
        rows.append(("result", j.result.get("ref") or j.result))
    if j.error:
        rows.append(("error", f"({j.error.get('code')}) {j.error.get('message')}"))
    for k, v in rows:
        console.print(f"[bold]{k:>10}[/bold]  {v}", highlight=False)


@click.command()
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where tensor work runs; auto takes a GPU when torch sees one.",
)
@click.option("--once", is_flag=True, help="Run the jobs queued now, then exit.")
@click.option("--name", help="Worker name recorded in job leases (default host:pid:random).")
@json_option
@handle_errors
def worker(device: str, once: bool, name: str | None, as_json: bool) -> None:
    """Run jobs from the registry's database (many workers may share one PostgreSQL and blob store)."""
    from registry.services.context import Registry
    from registry.worker import Worker

    settings = Settings()
    if settings.url:
        raise BadRequest(
            "ADAPTERS_URL is set: a worker connects to the database and blob store itself; set "
            "ADAPTERS_DATABASE_URL and ADAPTERS_BLOB_URL (and unset ADAPTERS_URL)"
        )
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise BadRequest("--device cuda: torch sees no CUDA device")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    reg = Registry.from_settings(settings, migrate=True)
    w = Worker(reg, WorkerSettings.from_settings(settings, device=device, name=name))
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        err_console.print(f"worker {w.name}: stopping after the current job (signal {signum})")
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    if not as_json:
        err_console.print(
            f"worker {w.name} on {device}, database {settings.effective_database_url.split('@')[-1]}"
        )
    try:
        ran = w.run(stop, once=once)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        reg.close()
    if as_json:
        emit_json({"worker": w.name, "jobs_run": ran})
    else:
        console.print(f"worker {w.name} ran {ran} job(s)", highlight=False)
