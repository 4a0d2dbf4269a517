"""`adapters base add|list|show|pull` and `adapters fit`: base models and what fits them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from cli import render
from cli.app import App, pass_app, with_client
from cli.output import RichProgress, emit, json_option
from cli.params import MIN_SCORE

if TYPE_CHECKING:
    from registry.client import RegistryClient


@click.group()
def base() -> None:
    """Register base models by the content of their weights."""


@base.command(name="add")
@click.argument("path", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Register from config.json alone: structure only, fingerprint unknown.",
)
@click.option("--name", "names", multiple=True, required=True, help="A name for this base; repeatable.")
@click.option("--revision")
@click.option("--upload", is_flag=True, help="Also store its files in the blob store (deduplicated).")
@json_option
@pass_app
def base_add(
    app: App,
    path: Path | None,
    config_path: Path | None,
    names: tuple[str, ...],
    revision: str | None,
    upload: bool,
    as_json: bool,
) -> None:
    """Fingerprint the model folder PATH (config.json + *.safetensors) and register it."""
    from registry.client.bases import add_base_config, add_base_folder

    if (path is None) == (config_path is None):
        raise click.UsageError("give a model folder PATH or --config config.json")
    if config_path is not None:
        if upload:
            raise click.UsageError("--upload needs a model folder, not --config")
        info = add_base_config(app.client, config_path, list(names), revision)
    else:
        assert path is not None
        info = add_base_folder(app.client, path, list(names), revision, upload, RichProgress(not as_json))
    emit(info, as_json, render.base)


@base.command(name="list")
@json_option
@with_client
def base_list(client: RegistryClient, as_json: bool) -> None:
    """Registered bases."""
    emit(client.list_bases(), as_json, render.base_table)


@base.command(name="show")
@click.argument("ref")
@json_option
@with_client
def base_show(client: RegistryClient, ref: str, as_json: bool) -> None:
    """One base, by name or fingerprint."""
    emit(client.get_base(ref), as_json, render.base)


@base.command(name="pull")
@click.argument("ref")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Target folder.")
@click.option("--force", is_flag=True, help="Replace a non-empty target folder.")
@json_option
@with_client
def base_pull(client: RegistryClient, ref: str, output: Path, force: bool, as_json: bool) -> None:
    """Download an uploaded base (or an exported model) into a folder transformers loads."""
    from registry.client.transfer import write_files
    from registry.errors import BaseNotUploaded

    info = client.get_base(ref)
    if not info.files:
        raise BaseNotUploaded(f"base {ref!r} was registered without its files", base=ref)
    write_files(client, info.files, output, force=force, progress=RichProgress(not as_json))
    doc = {"base": ref, "fingerprint": info.fingerprint, "path": str(output)}
    emit(doc, as_json, lambda _: render.base_pulled(ref, info, output))


@click.command()
@click.argument("base_ref", metavar="BASE")
@click.option("--task")
@click.option("--peft-type")
@click.option("--min-score", "min_scores", type=MIN_SCORE, multiple=True, metavar="METRIC=V")
@click.option("--tier", type=click.Choice(["exact", "compatible", "all"]), default="all", show_default=True)
@click.option("--sort", "sort_metric", metavar="METRIC", help="Best first by this eval metric.")
@click.option("--explain", is_flag=True, help="Also list what does not fit, and why.")
@click.option(
    "--qlora-ok",
    is_flag=True,
    help="Only adapters whose `check-4bit` verdict (NF4, double-quantized, any compute dtype) is pass or warn.",
)
@click.option(
    "--qlora-variant",
    metavar="VARIANT",
    help="As --qlora-ok, for this 4-bit variant: nf4|fp4, then -nodq, then -float32|-bfloat16|-float16 "
    "(e.g. fp4-nodq, nf4-bfloat16).",
)
@click.option("--limit", default=50, show_default=True)
@json_option
@with_client
def fit(
    client: RegistryClient,
    base_ref: str,
    task: str | None,
    peft_type: str | None,
    min_scores: tuple[tuple[str, float], ...],
    tier: str,
    sort_metric: str | None,
    explain: bool,
    qlora_ok: bool,
    qlora_variant: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Which adapters fit BASE (a name, a fingerprint, or a model folder, fingerprinted on the fly)?"""
    from registry.client.bases import resolve_push_base
    from registry.entities import FitQuery

    if Path(base_ref).expanduser().is_dir():  # a registered base of that name wins (choose_base)
        base_ref = resolve_push_base(client, base_ref, RichProgress(not as_json)) or base_ref
    query = FitQuery(
        base=base_ref,
        task=task,
        peft_type=peft_type,
        min_scores=dict(min_scores),
        tier=tier,
        sort=sort_metric,
        explain=explain,
        limit=limit,
        qlora_ok=qlora_ok,
        qlora_variant=qlora_variant,
    )
    emit(client.fit(query), as_json, lambda result: render.fit(result, sort_metric))


COMMANDS = [base, fit]
