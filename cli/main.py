"""`adapters`: the root group (global options, the invocation's App on ctx.obj) and its commands,
grouped by noun in cli/adapters.py, aliases.py, bases.py, jobs.py, tensor_jobs.py, server.py."""

from __future__ import annotations

import click

from cli import (
    access,
    adapters,
    aliases,
    bases,
    evals,
    jobs,
    lifecycle,
    plan,
    quiet,
    server,
    serving,
    sync,
    tensor_jobs,
    ui,
)
from cli.app import App


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="adapter-registry")
@click.option(
    "--no-worker",
    is_flag=True,
    help="Embedded mode: do not run jobs in this process; leave them to `adapters worker`.",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Show the libraries' warnings and logs (transformers, PEFT, bitsandbytes); also ADAPTERS_DEBUG=1.",
)
@click.pass_context
def cli(ctx: click.Context, no_worker: bool, verbose: bool) -> None:
    """A registry for LoRA/PEFT adapters. Embedded (SQLite + local blobs) unless ADAPTERS_URL is set."""
    if not quiet.wanted(verbose):
        ctx.call_on_close(quiet.quiet_libraries())
    app = ctx.obj = App(jobs_here=not no_worker)
    ctx.call_on_close(app.close)


for module in (
    adapters,
    aliases,
    evals,
    tensor_jobs,
    bases,
    jobs,
    server,
    sync,
    access,
    lifecycle,
    ui,
    serving,
    plan,
):
    for command in module.COMMANDS:
        cli.add_command(command)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
