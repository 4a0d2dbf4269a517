"""`adapters sync DIR`: keep a directory of adapter folders (one per name) in step with the registry
for filesystem loaders (vLLM, LoRAX, SGLang). The logic is registry/integrations/sync.py."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cli.app import current_app, with_client
from cli.output import emit, err_console, json_option, say
from cli.params import ALIAS, REPO, trust_key_option

if TYPE_CHECKING:
    from registry.client import RegistryClient
    from registry.integrations.sync import SyncReport


def render_report(report: SyncReport) -> None:
    if report.error:
        err_console.print(f"[red]error[/red] ({report.error})", highlight=False)
        return
    for skip in report.skipped:
        err_console.print(f"[yellow]skipped[/yellow] {skip.ref}: {skip.reason}", highlight=False)
    for e in report.changed:
        short = (e.digest or e.previous or "")[:19]
        what = "removed" if e.action == "removed" else f"{e.action} -> {e.repo}:{e.version}"
        say(f"{e.name}  {what}  {short}…")
    for key in report.pruned:
        say(f"pruned .versions/{key[:12]}…")
    if not report.changed and not report.pruned:
        say(f"{len(report.entries)} names up to date in {report.dir}")


@click.command()
@click.argument("folder", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--repo", "repos", type=REPO, multiple=True, help="Follow this repository (repeatable; default: all)."
)
@click.option(
    "--alias",
    "aliases",
    type=ALIAS,
    multiple=True,
    help="Follow only this alias of each repository (repeatable; default: latest and every alias).",
)
@click.option(
    "--layout",
    type=click.Choice(["ref", "flat"]),
    default="ref",
    show_default=True,
    help="ref: DIR/ns/name@alias (the name vLLM's filesystem resolver is asked for); flat: DIR/ns--name@alias "
    "(DIR/ns+name@alias where the namespace holds '--').",
)
@click.option(
    "--base-model-name",
    metavar="NAME",
    help="Write NAME into each synced adapter_config.json's base_model_name_or_path "
    "(vLLM's filesystem resolver requires it to equal the model vLLM serves).",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Sync only versions whose signature checks against keys trusted here (--trust-key); a "
    "name whose new version does not stays where it was, and the pass reports it.",
)
@trust_key_option
@click.option("--watch", is_flag=True, help="Keep following alias moves: a pass every --interval seconds.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds between passes.",
)
@click.option(
    "--passes", type=click.IntRange(min=1), help="With --watch: stop after N passes (default: never)."
)
@json_option
@with_client
def sync(
    client: RegistryClient,
    folder: Path,
    repos: tuple[str, ...],
    aliases: tuple[str, ...],
    layout: str,
    base_model_name: str | None,
    verify: bool,
    trust_key: tuple[Path, ...],
    watch: bool,
    interval: float,
    passes: int | None,
    as_json: bool,
) -> None:
    """Materialise versions into DIR, one folder (a symlink, swapped atomically) per name."""
    from registry.integrations.sync import SyncSpec, sync_once
    from registry.integrations.sync import watch as watch_loop

    trusted: tuple[Any, ...] = ()
    if verify:
        from registry.client.verify import trusted_keys

        trusted = tuple(trusted_keys(trust_key, current_app().settings.config_dir))
    spec = SyncSpec(
        repos=repos,
        aliases=aliases,
        layout=layout,  # type: ignore[arg-type]
        base_model_name=base_model_name,
        trusted=trusted,
    )
    if not watch:
        emit(sync_once(client, folder, spec), as_json, render_report)
        return

    def on_report(report: SyncReport) -> None:
        if as_json:  # one JSON document per pass (JSON lines)
            click.echo(report.model_dump_json())
        elif report.changed or report.pruned or report.skipped or report.error:
            render_report(report)

    watch_loop(client, folder, spec, interval, on_report, passes=passes)


COMMANDS = [sync]
