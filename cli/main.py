"""`adapters`: push, pull, list, show, alias, serve, db."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from cli.bases import base, fit
from cli.jobs import in_process_worker, jobs, run_job, worker
from cli.output import RichProgress, console, emit_json, handle_errors, human_bytes, json_option
from cli.tensor_jobs import check_4bit, export
from registry.client import RegistryClient, open_client
from registry.client.transfer import parse_eval, pull, push_folder
from registry.config import Settings
from registry.entities import VersionFilter, VersionInfo
from registry.errors import BadRequest
from registry.jobspec import JobRequest, MergeResult


def _client() -> RegistryClient:
    return open_client(Settings())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="adapter-registry")
@click.option(
    "--no-worker",
    is_flag=True,
    help="Embedded mode: do not run jobs in this process; leave them to `adapters worker`.",
)
def cli(no_worker: bool) -> None:
    """A registry for LoRA/PEFT adapters. Embedded (SQLite + local blobs) unless ADAPTERS_URL is set."""


@cli.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("repo")
@click.option(
    "--base",
    help="Base model: a registered name, sha256:<fingerprint> or a model folder (fingerprinted on the fly). "
    "Default: adapter_config's base_model_name_or_path.",
)
@click.option("--task", help="Task this adapter is for, e.g. legal-qa.")
@click.option(
    "--eval",
    "evals",
    multiple=True,
    metavar="METRIC=VALUE[@DATASET[:SPLIT]]",
    help="An eval score; repeatable.",
)
@click.option("--alias", "aliases", multiple=True, help="Point this alias at the pushed version; repeatable.")
@click.option("-m", "--message", help="What changed.")
@click.option(
    "--force", is_flag=True, help="Push even if the adapter does not fit its known base (recorded)."
)
@json_option
@handle_errors
def push(
    folder: Path,
    repo: str,
    base: str | None,
    task: str | None,
    evals: tuple[str, ...],
    aliases: tuple[str, ...],
    message: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Validate FOLDER (a PEFT adapter) and push it as a new version of REPO (namespace/name)."""
    client = _client()
    try:
        from registry.client.bases import resolve_push_base

        progress = RichProgress(not as_json)
        result = push_folder(
            client,
            folder,
            repo,
            base=resolve_push_base(client, base, progress),
            force=force,
            task=task,
            evals=[parse_eval(e) for e in evals],
            aliases=list(aliases),
            message=message,
            progress=progress,
        )
    finally:
        client.close()
    if as_json:
        emit_json(result)
        return
    mark = "[green]pushed[/green]" if result.created else "[yellow]unchanged[/yellow]"
    console.print(
        f"{mark} {result.repo}:{result.version} {result.digest}  ({result.detail})", highlight=False
    )


@cli.command(name="pull")
@click.argument("ref")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Target folder (default ./NAME); may be '.'."
)
@click.option(
    "--force",
    is_flag=True,
    help="Write into a non-empty folder: the adapter's files replace those of the same name, "
    "every other file is kept.",
)
@json_option
@handle_errors
def pull_cmd(ref: str, output: Path | None, force: bool, as_json: bool) -> None:
    """Download REF (ns/name, ns/name:3, ns/name@alias, ns/name@sha256:...) into a folder.

    Every file is verified before it is written; nothing the registry did not write is deleted.
    """
    client = _client()
    try:
        info, out = pull(client, ref, output, force=force, progress=RichProgress(not as_json))
    finally:
        client.close()
    if as_json:
        emit_json(
            {
                "repo": info.repo,
                "version": info.version,
                "digest": info.digest,
                "path": str(out),
                "files": [f.model_dump() for f in info.files],
            }
        )
        return
    console.print(f"[green]pulled[/green] {info.ref} {info.digest} -> {out}", highlight=False)


@cli.command(name="list")
@click.option("--task")
@click.option("--base", help="Base model name.")
@click.option("--peft-type", help="LORA, IA3, PREFIX_TUNING, ...")
@click.option("--repo", help="Only versions of this repository.")
@click.option(
    "--all-versions",
    is_flag=True,
    help="Every version. Without filters, only each repository's latest is listed.",
)
@click.option("--limit", default=50, show_default=True)
@click.option("--cursor", help="Continue from a previous page's next_cursor.")
@json_option
@handle_errors
def list_cmd(
    task: str | None,
    base: str | None,
    peft_type: str | None,
    repo: str | None,
    all_versions: bool,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List adapters, newest first: each repository's latest, or every version matching the filters."""
    client = _client()
    try:
        flt = VersionFilter(
            repo=repo,
            task=task,
            peft_type=peft_type,
            base=base,
            latest_only=not (all_versions or repo or task or base or peft_type),
        )
        page = client.list_versions(flt, limit, cursor)
    finally:
        client.close()
    if as_json:
        emit_json(page)
        return
    table = Table("ref", "peft", "r", "task", "base", "params", "aliases", "created")
    for v in page.items:
        table.add_row(
            v.ref,
            v.peft_type,
            str(v.r or ""),
            v.task or "",
            v.base_model.name or "",
            f"{v.trainable_params:,}",
            ",".join(v.aliases),
            v.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}")


@cli.command()
@click.argument("ref")
@json_option
@handle_errors
def show(ref: str, as_json: bool) -> None:
    """Show one version: config, files, evals, aliases."""
    client = _client()
    try:
        info = client.resolve(ref)
    finally:
        client.close()
    if as_json:
        emit_json(info)
        return
    _print_version(info)


def _print_version(v: VersionInfo) -> None:
    rows = [
        ("ref", v.ref),
        ("digest", v.digest),
        ("aliases", ", ".join(v.aliases) or "-"),
        ("peft_type", v.peft_type),
        ("task_type", v.task_type or "-"),
        ("task", v.task or "-"),
        ("r / alpha", f"{v.r} / {v.lora_alpha}" if v.r else "-"),
        ("target_modules", str(v.target_modules)),
        ("rslora / dora", f"{v.use_rslora} / {v.use_dora}"),
        (
            "base",
            f"{v.base_model.name or '-'}" + (f" @ {v.base_model.revision}" if v.base_model.revision else ""),
        ),
        ("params", f"{v.trainable_params:,} ({human_bytes(v.adapter_bytes)})"),
        ("pushed", f"{v.created_at:%Y-%m-%d %H:%M:%S} by {v.pushed_by}"),
        ("message", v.message or "-"),
    ]
    for k, val in rows:
        console.print(f"[bold]{k:>15}[/bold]  {val}", highlight=False)
    for e in v.evals:
        where = f" ({e.dataset}{':' + e.split if e.split else ''})" if e.dataset else ""
        console.print(f"[bold]{'eval':>15}[/bold]  {e.metric} = {e.value}{where}", highlight=False)
    if v.lineage:
        lin = v.lineage
        console.print(
            f"[bold]{'derived':>15}[/bold]  {lin.get('kind')} by {lin.get('method')} "
            f"{lin.get('parameters', {})}",
            highlight=False,
        )
        for p in lin.get("parents", []):
            console.print(
                f"[bold]{'parent':>15}[/bold]  {p['ref']} x {p['weight']:g}  {p['digest']}", highlight=False
            )
        err = lin.get("error", {})
        if err:
            console.print(
                f"[bold]{'merge error':>15}[/bold]  max {err['max']:.3g}, mean {err['mean']:.3g} "
                "(relative Frobenius, per module)",
                highlight=False,
            )
    for c in v.qlora_checks:
        why = f" ({'; '.join(c.reasons)})" if c.reasons else ""
        console.print(
            f"[bold]{'4-bit check':>15}[/bold]  {c.verdict} on {c.base} ({c.checked_at:%Y-%m-%d %H:%M}){why}",
            highlight=False,
        )
    for f in v.files:
        console.print(
            f"[bold]{'file':>15}[/bold]  {f.path}  {human_bytes(f.size)}  {f.sha256[:19]}", highlight=False
        )


@cli.command()
@click.argument("inputs", nargs=-1, required=True, metavar="REF=WEIGHT...")
@click.option("--into", required=True, help="Repository (ns/name) that receives the merged version.")
@click.option(
    "--method",
    type=click.Choice(["svd", "cat", "linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"]),
    default="svd",
    show_default=True,
)
@click.option(
    "--rank",
    help="Output rank for svd: an integer, or 'auto' (see --energy). Default: the largest input rank.",
)
@click.option(
    "--energy",
    type=float,
    default=0.99,
    show_default=True,
    help="With --rank auto: keep this fraction of the squared singular values per module.",
)
@click.option(
    "--density",
    type=float,
    default=1.0,
    show_default=True,
    help="ties / dare_* / magnitude_prune: fraction of entries kept.",
)
@click.option(
    "--majority-sign", type=click.Choice(["total", "frequency"]), default="total", show_default=True
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of DARE's random drops (recorded)."
)
@click.option(
    "--allow-base-mismatch", is_flag=True, help="Merge adapters of different bases if shapes agree."
)
@click.option("--task")
@click.option("--alias", "aliases", multiple=True)
@click.option("-m", "--message")
@click.option(
    "--no-wait", is_flag=True, help="Print the job id and return; follow with `adapters jobs watch`."
)
@json_option
@handle_errors
def merge(
    inputs: tuple[str, ...],
    into: str,
    method: str,
    rank: str | None,
    energy: float,
    density: float,
    majority_sign: str,
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
    from registry.client.merge import parse_merge_input

    parsed_rank: int | str | None = rank
    if rank is not None and rank != "auto":
        if not rank.isdigit() or int(rank) < 1:
            raise BadRequest(f"--rank must be a positive integer or 'auto', got {rank!r}")
        parsed_rank = int(rank)
    params = {
        "inputs": [vars(parse_merge_input(i)) for i in inputs],
        "into": into,
        "method": method,
        "rank": parsed_rank,
        "energy": energy,
        "density": density,
        "majority_sign_method": majority_sign,
        "seed": seed,
        "allow_base_mismatch": allow_base_mismatch,
        "task": task,
        "aliases": list(aliases),
        "message": message,
    }
    client = _client()
    try:
        job = run_job(client, JobRequest(type="merge", params=params), no_wait, as_json)
        if no_wait:
            return
        result = job.result_as(MergeResult)
        info = client.resolve(result.ref)
    finally:
        client.close()
    if as_json:
        emit_json({**result.model_dump(mode="json"), "job": job.id, "info": info.model_dump(mode="json")})
        return
    err = (info.lineage or {}).get("error", {})
    console.print(
        f"[green]merged[/green] {info.ref} {info.digest}  (job {job.id}; "
        f"max relative error {err.get('max', 0):.3g}, mean {err.get('mean', 0):.3g})",
        highlight=False,
    )


@cli.group()
def alias() -> None:
    """Move or remove aliases (production, staging, ...)."""


@alias.command(name="set")
@click.argument("ref")
@click.argument("name")
@json_option
@handle_errors
def alias_set(ref: str, name: str, as_json: bool) -> None:
    """Point alias NAME at REF."""
    client = _client()
    try:
        info = client.set_alias(ref, name)
    finally:
        client.close()
    if as_json:
        emit_json(info)
        return
    console.print(f"{info.repo}@{info.alias} -> {info.repo}:{info.version}", highlight=False)


@alias.command(name="rm")
@click.argument("repo")
@click.argument("name")
@json_option
@handle_errors
def alias_rm(repo: str, name: str, as_json: bool) -> None:
    """Remove alias NAME from REPO."""
    client = _client()
    try:
        info = client.delete_alias(repo, name)
    finally:
        client.close()
    if as_json:
        emit_json(info)
        return
    console.print(f"removed {info.repo}@{info.alias} (was {info.repo}:{info.version})", highlight=False)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-worker", is_flag=True, help="Run no job worker in the server process.")
@json_option
@handle_errors
def serve(host: str, port: int, no_worker: bool, as_json: bool) -> None:
    """Run the REST API (migrating the database first) with one job worker thread beside it.
    OpenAPI docs at /docs."""
    import uvicorn

    from registry.api import create_app
    from registry.services.context import Registry

    settings = Settings()
    if settings.url:
        raise BadRequest("ADAPTERS_URL is set: `serve` runs a server, it does not talk to one; unset it")
    reg = Registry.from_settings(settings, migrate=True)
    if as_json:
        emit_json(
            {
                "url": f"http://{host}:{port}",
                "database": settings.effective_database_url.split("@")[-1],
                "blobs": reg.store.url,
            }
        )
    worker = not (no_worker or not in_process_worker())
    uvicorn.run(create_app(settings, reg, worker=worker), host=host, port=port, log_level="info")


@cli.group()
def db() -> None:
    """Database schema management."""


@db.command()
@json_option
@handle_errors
def upgrade(as_json: bool) -> None:
    """Apply every pending Alembic migration to ADAPTERS_DATABASE_URL."""
    from registry.db.engine import current_revision, make_engine
    from registry.db.engine import upgrade as run_upgrade

    settings = Settings()
    engine = make_engine(settings.effective_database_url)
    try:
        before = current_revision(engine)
        run_upgrade(engine)
        after = current_revision(engine)
    finally:
        engine.dispose()
    if as_json:
        emit_json({"from": before, "to": after})
        return
    console.print(f"database at revision {after} (was {before or 'empty'})", highlight=False)


cli.add_command(base)
cli.add_command(fit)
cli.add_command(jobs)
cli.add_command(worker)
cli.add_command(export)
cli.add_command(check_4bit)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
