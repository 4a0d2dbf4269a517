"""`adapters merge`, `export` and `check-4bit`: tensor work submitted as jobs and followed here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cli import render
from cli.app import App, pass_app
from cli.job_options import field_option, job_command
from cli.output import RichProgress, emit, json_option
from cli.params import ALIAS, DTYPE, MERGE_INPUT, RANK, REF, REPO, SIZE, TORCH_DTYPE

if TYPE_CHECKING:
    from registry.client import RegistryClient
    from registry.client.merge import MergeInput
    from registry.jobspec import JobInfo, JobType

no_wait_option = click.option(
    "--no-wait", is_flag=True, help="Print the job id and return; follow with `adapters jobs watch`."
)


def run_job(app: App, job_type: JobType, params: dict[str, Any], no_wait: bool, as_json: bool) -> JobInfo:
    """Submit; print the job and return it with --no-wait, else follow it with a bar until it ends
    (raising its error if it fails). In embedded mode it runs in this process meanwhile."""
    from registry.client.jobs import submit_and_follow
    from registry.jobspec import JobRequest

    request = JobRequest(type=job_type, params=params)
    with app.jobs_running(wait=not no_wait):
        job = submit_and_follow(app.client, request, wait=not no_wait, on_update=render.JobBar(not as_json))
    if no_wait:
        emit(job, as_json, render.job_submitted)
    return job


def base_params(client: RegistryClient, base: str, progress: RichProgress) -> dict[str, Any]:
    """registry.client.bases.job_base_params where BASE may be a folder (a registered base of that
    name wins over a folder in the current directory); anything else goes as it is, for the job to
    refuse (not_found, base_not_uploaded)."""
    from registry.client.bases import job_base_params

    if not Path(base).expanduser().is_dir():
        return {"base": base}
    return job_base_params(client, base, progress)


@job_command("merge")
@click.argument("inputs", type=MERGE_INPUT, nargs=-1, required=True, metavar="REF=WEIGHT...")
@field_option(
    "--into", type=REPO, required=True, help="Repository (ns/name) that receives the merged version."
)
@field_option("--method", show_default=True)
@field_option(
    "--rank",
    type=RANK,
    metavar="R|auto",
    help="Output rank for svd: an integer, or 'auto' (see --energy). Default: the largest input rank.",
)
@field_option(
    "--energy",
    show_default=True,
    help="With --rank auto: keep this fraction of the squared singular values per module.",
)
@field_option(
    "--density", show_default=True, help="ties / dare_* / magnitude_prune: fraction of entries kept."
)
@field_option("--majority-sign", "majority_sign_method", show_default=True)
@field_option("--seed", show_default=True, help="Seed of DARE's random drops (recorded).")
@field_option("--allow-base-mismatch", help="Merge adapters of different bases if shapes agree.")
@field_option("--task")
@field_option("--alias", "aliases", type=ALIAS, multiple=True, default=())
@field_option("-m", "--message")
@no_wait_option
@json_option
@pass_app
def merge(
    app: App,
    inputs: tuple[MergeInput, ...],
    into: str,
    method: str,
    rank: int | str | None,
    energy: float,
    density: float,
    majority_sign_method: str,
    seed: int,
    allow_base_mismatch: bool,
    task: str | None,
    aliases: tuple[str, ...],
    message: str | None,
    no_wait: bool,
    as_json: bool,
) -> None:
    """Merge LoRA adapters with weights (REF=WEIGHT, negative allowed) into a new version of --into.

    Runs as a job on a worker (in this process in embedded mode), followed with a progress bar.
    """
    from registry.jobspec import MergeResult

    params = {
        "inputs": [vars(i) for i in inputs],
        "into": into,
        "method": method,
        "rank": rank,
        "energy": energy,
        "density": density,
        "majority_sign_method": majority_sign_method,
        "seed": seed,
        "allow_base_mismatch": allow_base_mismatch,
        "task": task,
        "aliases": list(aliases),
        "message": message,
    }
    job = run_job(app, "merge", params, no_wait, as_json)
    if no_wait:
        return
    result = job.result_as(MergeResult)
    info = app.client.resolve(result.ref)
    doc = {**result.model_dump(mode="json"), "job": job.id, "info": info}
    emit(doc, as_json, lambda _: render.merged(info, job.id))


@job_command("export")
@click.argument("ref", type=REF)
@click.option(
    "--base",
    required=True,
    help="The base: a registered name or sha256:<fingerprint> whose files were uploaded, or a model folder.",
)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Also write the merged model here.")
@click.option("--force", is_flag=True, help="Replace a non-empty --output folder.")
@field_option("--into", help="Name to register the merged model under (default <repo>-v<N>-merged).")
@field_option("--dtype", type=DTYPE, help="Output dtype (default: the base's).")
@field_option(
    "--max-shard-size",
    type=SIZE,
    default="5GB",
    show_default=True,
    help="Largest output shard, e.g. 2GB, 500MB.",
)
@no_wait_option
@json_option
@pass_app
def export(
    app: App,
    ref: str,
    base: str,
    output: Path | None,
    force: bool,
    into: str | None,
    dtype: str | None,
    max_shard_size: int,
    no_wait: bool,
    as_json: bool,
) -> None:
    """Merge adapter REF into its base and store the result as a derived model (standard sharded
    safetensors that transformers loads), streaming one tensor at a time."""
    from registry.client.transfer import write_files
    from registry.jobspec import ExportResult

    if output is not None and no_wait:
        raise click.UsageError(
            "-o needs the export to finish here; drop --no-wait (or pull it later from `base show`)"
        )
    progress = RichProgress(not as_json)
    params = {
        "ref": ref,
        **base_params(app.client, base, progress),
        "into": into,
        "dtype": dtype,
        "max_shard_size": max_shard_size,
    }
    job = run_job(app, "export", params, no_wait, as_json)
    if no_wait:
        return
    result = job.result_as(ExportResult)
    if output is not None:
        write_files(app.client, result.files, output, force=force, progress=progress)
    doc = {**result.model_dump(mode="json"), "job": job.id, "output": str(output) if output else None}
    emit(doc, as_json, lambda _: render.exported(ref, result, job.id, output))


@job_command("check-4bit", name="check-4bit")
@click.argument("ref", type=REF)
@click.option(
    "--base",
    required=True,
    help="The base: a registered name or fingerprint with uploaded files, or a model folder.",
)
@field_option("--probe", show_default=True, help="Number of probe sequences.")
@field_option("--probe-length", show_default=True, help="Tokens per probe sequence.")
@field_option("--seed", show_default=True, help="Seed of the random probe tokens.")
@field_option("--quant", show_default=True)
@field_option(
    "--no-double-quant",
    "double_quant",
    is_flag=True,
    flag_value=False,
    help="Without double quantization of the block scales.",
)
@field_option(
    "--compute-dtype",
    type=TORCH_DTYPE,
    show_default=True,
    help="The dtype bitsandbytes computes the 4-bit matmuls in.",
)
@no_wait_option
@json_option
@pass_app
def check_4bit(
    app: App,
    ref: str,
    base: str,
    probe: int,
    probe_length: int,
    seed: int,
    quant: str,
    double_quant: bool,
    compute_dtype: str,
    no_wait: bool,
    as_json: bool,
) -> None:
    """Will REF work on a 4-bit (QLoRA-style) bitsandbytes base, NF4 and double-quantized unless told
    otherwise? Records the verdict under the variant checked."""
    from registry.jobspec import Check4bitResult

    params = {
        "ref": ref,
        **base_params(app.client, base, RichProgress(not as_json)),
        "probe": probe,
        "probe_length": probe_length,
        "seed": seed,
        "quant": quant,
        "double_quant": double_quant,
        "compute_dtype": compute_dtype,
    }
    job = run_job(app, "check-4bit", params, no_wait, as_json)
    if no_wait:
        return
    report = job.result_as(Check4bitResult).report
    emit({**report, "job": job.id}, as_json, lambda _: render.report_4bit(report))


COMMANDS = [merge, export, check_4bit]
