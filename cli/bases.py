"""`adapters base ...` and `adapters fit`."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from cli.output import RichProgress, console, emit_json, handle_errors, json_option
from registry.client import RegistryClient, open_client
from registry.client.args import finite_number, name_equals_number
from registry.client.bases import add_base_config, add_base_folder
from registry.config import Settings
from registry.entities import BaseInfo, FitQuery
from registry.errors import BadRequest


def _client() -> RegistryClient:
    return open_client(Settings())


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
@handle_errors
def base_add(
    path: Path | None,
    config_path: Path | None,
    names: tuple[str, ...],
    revision: str | None,
    upload: bool,
    as_json: bool,
) -> None:
    """Fingerprint the model folder PATH (config.json + *.safetensors) and register it."""
    if (path is None) == (config_path is None):
        raise click.UsageError("give a model folder PATH or --config config.json")
    client = _client()
    try:
        if path is not None:
            info = add_base_folder(client, path, list(names), revision, upload, RichProgress(not as_json))
        else:
            if upload:
                raise BadRequest("--upload needs a model folder, not --config")
            assert config_path is not None
            info = add_base_config(client, config_path, list(names), revision)
    finally:
        client.close()
    if as_json:
        emit_json(info)
        return
    _print_base(info)


@base.command(name="list")
@json_option
@handle_errors
def base_list(as_json: bool) -> None:
    """Registered bases."""
    client = _client()
    try:
        items = client.list_bases()
    finally:
        client.close()
    if as_json:
        emit_json([b.model_dump(mode="json") for b in items])
        return
    table = Table("names", "fingerprint", "architecture", "hidden", "layers", "params", "uploaded")
    for b in items:
        table.add_row(
            ", ".join(n.name for n in b.names) or "-",
            (b.fingerprint or "structure only")[:19],
            ",".join(b.architectures) or (b.model_type or "-"),
            str(b.hidden_size or "-"),
            str(b.num_layers or "-"),
            f"{b.param_count:,}",
            "yes" if b.uploaded else "no",
        )
    console.print(table)


@base.command(name="show")
@click.argument("ref")
@json_option
@handle_errors
def base_show(ref: str, as_json: bool) -> None:
    """One base, by name or fingerprint."""
    client = _client()
    try:
        info = client.get_base(ref)
    finally:
        client.close()
    if as_json:
        emit_json(info)
        return
    _print_base(info)


@base.command(name="pull")
@click.argument("ref")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Target folder.")
@click.option("--force", is_flag=True, help="Replace a non-empty target folder.")
@json_option
@handle_errors
def base_pull(ref: str, output: Path, force: bool, as_json: bool) -> None:
    """Download an uploaded base (or an exported model) into a folder transformers loads."""
    from registry.client.transfer import write_files
    from registry.errors import BaseNotUploaded

    client = _client()
    try:
        info = client.get_base(ref)
        if not info.files:
            raise BaseNotUploaded(f"base {ref!r} was registered without its files", base=ref)
        write_files(client, info.files, output, force=force, progress=RichProgress(not as_json))
    finally:
        client.close()
    if as_json:
        emit_json({"base": ref, "fingerprint": info.fingerprint, "path": str(output)})
        return
    console.print(f"[green]pulled[/green] {ref} {info.fingerprint} -> {output}", highlight=False)


def _print_base(b: BaseInfo) -> None:
    rows = [
        ("names", ", ".join(n.name + (f"@{n.revision}" if n.revision else "") for n in b.names) or "-"),
        ("fingerprint", b.fingerprint or "unknown (structure only)"),
        ("structure", b.structure_signature),
        ("architecture", f"{','.join(b.architectures) or '-'} ({b.model_type})"),
        (
            "shape",
            f"hidden {b.hidden_size}, layers {b.num_layers}, heads {b.num_heads}/{b.num_kv_heads} kv, "
            f"vocab {b.vocab_size}",
        ),
        ("params", f"{b.param_count:,} {b.dtype or ''}"),
        ("modules", str(b.module_count)),
        ("uploaded", "yes" if b.uploaded else "no"),
    ]
    if b.lineage:
        lin = b.lineage
        rows.append(("derived", f"{lin.get('kind')} of {lin.get('adapter')} ({lin.get('adapter_digest')})"))
        rows.append(("from base", str(lin.get("base_fingerprint"))))
    for k, v in rows:
        console.print(f"[bold]{k:>13}[/bold]  {v}", highlight=False)


def _parse_min_scores(items: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for item in items:
        metric, value = name_equals_number(item, "--min-score METRIC=VALUE")
        out[metric] = finite_number(value, item, "--min-score METRIC=VALUE")
    return out


@click.command()
@click.argument("base_ref", metavar="BASE")
@click.option("--task")
@click.option("--peft-type")
@click.option("--min-score", "min_scores", multiple=True, metavar="METRIC=V")
@click.option("--tier", type=click.Choice(["exact", "compatible", "all"]), default="all", show_default=True)
@click.option("--sort", "sort_metric", metavar="METRIC", help="Best first by this eval metric.")
@click.option("--explain", is_flag=True, help="Also list what does not fit, and why.")
@click.option("--qlora-ok", is_flag=True, help="Only adapters whose `check-4bit` verdict is pass or warn.")
@click.option("--limit", default=50, show_default=True)
@json_option
@handle_errors
def fit(
    base_ref: str,
    task: str | None,
    peft_type: str | None,
    min_scores: tuple[str, ...],
    tier: str,
    sort_metric: str | None,
    explain: bool,
    qlora_ok: bool,
    limit: int,
    as_json: bool,
) -> None:
    """Which adapters fit BASE (a name, a fingerprint, or a model folder, fingerprinted on the fly)?"""
    client = _client()
    try:
        if Path(base_ref).is_dir():
            from registry.client.bases import resolve_push_base

            base_ref = resolve_push_base(client, base_ref, RichProgress(not as_json)) or base_ref
        result = client.fit(
            FitQuery(
                base=base_ref,
                task=task,
                peft_type=peft_type,
                min_scores=_parse_min_scores(min_scores),
                tier=tier,
                sort=sort_metric,
                explain=explain,
                limit=limit,
                qlora_ok=qlora_ok,
            )
        )
    finally:
        client.close()
    if as_json:
        emit_json(result)
        return
    label = ", ".join(n.name for n in result.base.names) or result.base.fingerprint or "?"
    table = Table(
        "ref",
        "tier",
        "peft",
        "r",
        "task",
        "trained on",
        *([sort_metric] if sort_metric else []),
        title=f"adapters that fit {label}",
    )
    for it in result.items:
        table.add_row(
            it.ref,
            it.tier,
            it.peft_type,
            str(it.r or ""),
            it.task or "",
            it.base_model or "",
            *([f"{it.score:g}" if it.score is not None else "-"] if sort_metric else []),
        )
    console.print(table)
    for rej in result.rejected or []:
        console.print(f"[red]does not fit[/red] {rej.ref}: " + "; ".join(rej.reasons), highlight=False)
