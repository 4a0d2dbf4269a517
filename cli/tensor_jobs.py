"""`adapters export` and `adapters check-4bit`: tensor work submitted as jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli.jobs import run_job
from cli.output import RichProgress, console, emit_json, handle_errors, json_option
from registry.client import RegistryClient, open_client
from registry.client.bases import add_base_folder
from registry.client.local import LocalClient
from registry.client.transfer import write_files
from registry.config import Settings
from registry.errors import BadRequest
from registry.jobspec import Check4bitResult, ExportResult, JobRequest, parse_size


def base_params(client: RegistryClient, base: str, progress: RichProgress) -> dict[str, Any]:
    """A model folder stays where it is in embedded mode (the in-process worker reads it); a
    server's workers cannot read our disk, so the folder is uploaded and named by fingerprint."""
    folder = Path(base)
    if not folder.is_dir():
        return {"base": base}
    if isinstance(client, LocalClient):
        return {"base": str(folder.resolve()), "base_path": str(folder.resolve())}
    info = add_base_folder(client, folder, names=[], upload=True, progress=progress)
    assert info.fingerprint is not None
    return {"base": info.fingerprint}


no_wait_option = click.option(
    "--no-wait", is_flag=True, help="Print the job id and return; follow with `adapters jobs watch`."
)


@click.command()
@click.argument("ref")
@click.option(
    "--base",
    required=True,
    help="The base: a registered name or sha256:<fingerprint> whose files were uploaded, or a model folder.",
)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Also write the merged model here.")
@click.option("--force", is_flag=True, help="Replace a non-empty --output folder.")
@click.option("--into", help="Name to register the merged model under (default <repo>-v<N>-merged).")
@click.option(
    "--dtype", type=click.Choice(["bf16", "fp16", "fp32"]), help="Output dtype (default: the base's)."
)
@click.option(
    "--max-shard-size", default="5GB", show_default=True, help="Largest output shard, e.g. 2GB, 500MB."
)
@no_wait_option
@json_option
@handle_errors
def export(
    ref: str,
    base: str,
    output: Path | None,
    force: bool,
    into: str | None,
    dtype: str | None,
    max_shard_size: str,
    no_wait: bool,
    as_json: bool,
) -> None:
    """Merge adapter REF into its base and store the result as a derived model (standard sharded
    safetensors that transformers loads), streaming one tensor at a time."""
    if output is not None and no_wait:
        raise BadRequest(
            "-o needs the export to finish here; drop --no-wait (or pull it later from `base show`)"
        )
    client = open_client(Settings())
    try:
        progress = RichProgress(not as_json)
        params = {
            "ref": ref,
            **base_params(client, base, progress),
            "into": into,
            "dtype": dtype,
            "max_shard_size": parse_size(max_shard_size),
        }
        job = run_job(client, JobRequest(type="export", params=params), no_wait, as_json)
        if no_wait:
            return
        result = job.result_as(ExportResult)
        if output is not None:
            write_files(client, result.files, output, force=force, progress=progress)
    finally:
        client.close()
    if as_json:
        emit_json(
            {**result.model_dump(mode="json"), "job": job.id, "output": str(output) if output else None}
        )
        return
    where = f" -> {output}" if output else ""
    console.print(
        f"[green]exported[/green] {ref} into {', '.join(result.names)} "
        f"{result.fingerprint}{where}  (job {job.id})",
        highlight=False,
    )


@click.command(name="check-4bit")
@click.argument("ref")
@click.option(
    "--base",
    required=True,
    help="The base: a registered name or fingerprint with uploaded files, or a model folder.",
)
@click.option("--probe", default=8, show_default=True, help="Number of probe sequences.")
@click.option("--probe-length", default=32, show_default=True, help="Tokens per probe sequence.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random probe tokens.")
@no_wait_option
@json_option
@handle_errors
def check_4bit(
    ref: str, base: str, probe: int, probe_length: int, seed: int, no_wait: bool, as_json: bool
) -> None:
    """Will REF work on an NF4, double-quantized (QLoRA-style) bitsandbytes base? Records the verdict."""
    client = open_client(Settings())
    try:
        params = {
            "ref": ref,
            **base_params(client, base, RichProgress(not as_json)),
            "probe": probe,
            "probe_length": probe_length,
            "seed": seed,
        }
        job = run_job(client, JobRequest(type="check-4bit", params=params), no_wait, as_json)
    finally:
        client.close()
    if no_wait:
        return
    report = job.result_as(Check4bitResult).report
    if as_json:
        emit_json({**report, "job": job.id})
        return
    print_report(report)


def print_report(r: dict[str, Any]) -> None:
    color = {"pass": "green", "warn": "yellow", "fail": "red"}[r["verdict"]]
    console.print(
        f"[bold {color}]{r['verdict'].upper()}[/bold {color}]  {r['adapter']['ref']} on NF4 "
        f"{', '.join(r['base']['names']) or r['base']['fingerprint']}",
        highlight=False,
    )
    for reason in r["reasons"]:
        console.print(f"  - {reason}", highlight=False)
    s = r["structure"]
    console.print(
        f"quantized to 4 bits: {len(s['quantized'])} target modules; high precision: "
        f"{', '.join(s['high_precision']) or 'none'}",
        highlight=False,
    )
    b = r.get("behaviour")
    if b:
        console.print(
            f"behaviour ({b['probe']} probes x {b['probe_length']} tokens): with adapter KL {b['adapted']['kl']:.3g}, "
            f"top-1 {b['adapted']['top1_agreement']:.1%}; base alone KL {b['base']['kl']:.3g}, top-1 "
            f"{b['base']['top1_agreement']:.1%}; adapter effect KL {b['adapter_effect_kl']:.3g}",
            highlight=False,
        )
    modules = [m for m in r["modules"] if m.get("update_norm") is not None]
    if modules:
        worst = min(modules, key=lambda m: m["update_to_noise"])
        console.print(
            f"update / NF4 noise: lowest {worst['update_to_noise']:.3g} ({worst['module']}); "
            f"{sum(m['drowned'] for m in modules)} of {len(modules)} modules drowned",
            highlight=False,
        )
    m = r["merge"]
    if m["max_rel_error"] is not None:
        verdict = "safe" if m["safe"] else "not safe: keep the adapter unmerged on a 4-bit base"
        console.print(
            f"merge into 4-bit weights: requantizing loses up to {m['max_rel_error']:.1%} of the update ({verdict})",
            highlight=False,
        )
