"""`adapters jobs list|show|watch|cancel` and `adapters worker`."""

from __future__ import annotations

import logging
import logging.config
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

import click

from cli import render
from cli.app import App, pass_app, with_client
from cli.output import emit, err_console, json_option, say

if TYPE_CHECKING:
    from registry.client import RegistryClient


@click.group()
def jobs() -> None:
    """Follow and cancel jobs (merges, exports, 4-bit checks)."""


@jobs.command(name="list")
@click.option(
    "--status", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]), default=None
)
@click.option("--limit", default=50, show_default=True)
@json_option
@with_client
def jobs_list(client: RegistryClient, status: str | None, limit: int, as_json: bool) -> None:
    """The newest jobs first."""
    emit(client.list_jobs(status, limit), as_json, render.job_table)


@jobs.command(name="show")
@click.argument("job_id", type=int)
@json_option
@with_client
def jobs_show(client: RegistryClient, job_id: int, as_json: bool) -> None:
    """One job: parameters, status, progress, lease, result or error."""
    emit(client.get_job(job_id), as_json, render.job)


@jobs.command(name="watch")
@click.argument("job_id", type=int)
@json_option
@pass_app
def jobs_watch(app: App, job_id: int, as_json: bool) -> None:
    """Follow a job with a progress bar until it ends; exit 1 if it fails or is cancelled."""
    from registry.client.jobs import follow, raise_for_job

    job = app.client.get_job(job_id)
    with app.jobs_running(wait=not job.done):
        job = follow(app.client, job, render.JobBar(not as_json))
    if job.status != "succeeded":
        if not as_json:
            render.job(job)
        raise_for_job(job)  # one line on stderr (one JSON error document with --json), exit 1
    emit(job, as_json, render.job)


@jobs.command(name="cancel")
@click.argument("job_id", type=int)
@json_option
@with_client
def jobs_cancel(client: RegistryClient, job_id: int, as_json: bool) -> None:
    """Cancel a queued job, or stop a running one at its worker's next heartbeat."""
    emit(client.cancel_job(job_id), as_json, render.job_cancelled)


@click.group(invoke_without_command=True)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where tensor work runs; auto takes a GPU when torch sees one.",
)
@click.option("--once", is_flag=True, help="Run the jobs queued now, then exit.")
@click.option("--name", help="Worker name recorded in job leases (default host:pid:random).")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (0: a free port, printed).",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address of --metrics-port.")
@json_option
@pass_app
def worker(
    app: App,
    device: str,
    once: bool,
    name: str | None,
    metrics_port: int | None,
    metrics_host: str,
    as_json: bool,
) -> None:
    """Run jobs from the registry's database (many workers may share one PostgreSQL and blob store)."""
    if click.get_current_context().invoked_subcommand is not None:
        return
    from registry.errors import BadRequest
    from registry.observability.http import MetricsServer
    from registry.observability.logs import logging_config
    from registry.observability.metrics import JobQueueCollector, process_metrics
    from registry.services.context import Registry
    from registry.startup import refuse_example_credentials
    from registry.worker import Worker
    from registry.worker.settings import WorkerSettings

    settings = app.settings
    if settings.url:
        raise BadRequest(
            "ADAPTERS_URL is set: a worker connects to the database and blob store itself; set "
            "ADAPTERS_DATABASE_URL and ADAPTERS_BLOB_URL (and unset ADAPTERS_URL)"
        )
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise BadRequest("--device cuda: torch sees no CUDA device")
    refuse_example_credentials(settings)
    logging.config.dictConfig(logging_config(settings.log_format))
    reg = Registry.from_settings(settings, migrate=True)
    w = Worker(reg, WorkerSettings.from_settings(settings, device=device, name=name))
    exporter = None
    if metrics_port is not None:
        token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        collectors = [JobQueueCollector(reg)]
        exporter = MetricsServer(
            metrics_host, metrics_port, process_metrics().install(), collectors, token
        ).start()
        err_console.print(f"worker {w.name}: metrics at http://{metrics_host}:{exporter.port}/metrics")
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
        if exporter is not None:
            exporter.stop()
        reg.close()
    emit({"worker": w.name, "jobs_run": ran}, as_json, lambda _: say(f"worker {w.name} ran {ran} job(s)"))


COMMANDS = [jobs, worker]


@worker.command(name="key")
@json_option
@pass_app
def worker_key_cmd(app: App, as_json: bool) -> None:
    """The public key with which this home's workers sign provenance (ADAPTERS_WORKER_SIGNING_KEY[_FILE],
    else made once in $ADAPTERS_HOME): give it to consumers as `adapters verify --provenance REF --trust-key`."""
    from registry.formats.signing import key_fingerprint
    from registry.worker.provenance import public_pem, worker_key

    key = worker_key(app.settings)
    doc = {"fingerprint": key_fingerprint(key.public_key()), "public_key": public_pem(key)}
    if as_json:
        emit(doc, True, lambda d: None)
    else:
        click.echo(doc["public_key"], nl=False)
